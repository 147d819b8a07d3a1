"""Video in the stream (SPEC §3): one frame per micro-turn, resized, cut into 40x40 patches
(beside the previous micro-turn's patches with `stream.video_motion`).

Micro-turn t sees the latest frame whose timestamp falls in an input window up to and including
its own, [0, (t+1)T) (timing.input_turn): never a frame from the future.
"""

from __future__ import annotations

import numpy as np

from jax_interact.streams import timing
from jax_interact.streams.layout import Layout


def _resize_matrix(n_in: int, n_out: int) -> np.ndarray:
  """float32 [n_out, n_in] weights: area averaging when shrinking, bilinear when growing."""
  out = np.arange(n_out)
  if n_out <= n_in:
    scale = n_in / n_out
    lo, hi = out * scale, (out + 1) * scale
    pixel = np.arange(n_in)
    overlap = np.clip(np.minimum(hi[:, None], pixel + 1) - np.maximum(lo[:, None], pixel), 0, None)
    return (overlap / scale).astype(np.float32)
  centre = np.clip((out + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
  left = np.floor(centre).astype(int)
  right = np.minimum(left + 1, n_in - 1)
  frac = centre - left
  weights = np.zeros((n_out, n_in), np.float32)
  np.add.at(weights, (out, left), 1 - frac)
  np.add.at(weights, (out, right), frac)
  return weights


def _resize_axis(x: np.ndarray, axis: int, n_out: int) -> np.ndarray:
  """Resizes float `x` along `axis`, as a sum over each output pixel's few input taps."""
  weights = _resize_matrix(x.shape[axis], n_out)
  taps = int((weights > 0).sum(axis=1).max())
  index = np.argsort(-weights, axis=1, kind="stable")[:, :taps]
  tap_weights = np.take_along_axis(weights, index, axis=1)
  shape = [1] * x.ndim
  shape[axis] = n_out
  return sum(np.take(x, index[:, j], axis=axis) * tap_weights[:, j].reshape(shape)
             for j in range(taps))


def resize(frames: np.ndarray, height: int, width: int) -> np.ndarray:
  """uint8 [..., height, width, 3] from uint8 [..., H, W, 3] (separable area/bilinear)."""
  if frames.shape[-3:-1] == (height, width):
    return frames
  x = _resize_axis(frames.astype(np.float32), frames.ndim - 3, height)
  x = _resize_axis(x, frames.ndim - 2, width)
  return np.clip(np.round(x), 0, 255).astype(np.uint8)


def patchify(frame: np.ndarray, patch: int) -> np.ndarray:
  """[K_v, patch, patch, C] from [..., H, W, C] (H, W multiples of patch), row-major patches."""
  *lead, h, w, c = frame.shape
  grid = frame.reshape(*lead, h // patch, patch, w // patch, patch, c)
  grid = np.moveaxis(grid, -4, -3)  # [..., H/p, W/p, p, p, C]
  return grid.reshape(*lead, (h // patch) * (w // patch), patch, patch, c)


def frame_indices(video_times_s: np.ndarray, n_turns: int,
                  chunk_ms: int) -> tuple[np.ndarray, np.ndarray]:
  """(int32 [n_turns] frame index, bool [n_turns] mask) of the frame each micro-turn sees.

  Micro-turn t takes the latest frame heard in a micro-turn <= t; mask is False (index 0)
  before the first frame.
  """
  times_ms = np.array([timing.to_ms(float(s)) for s in video_times_s], np.int64)
  order = np.argsort(times_ms, kind="stable")  # equal times keep file order: the later wins
  turns = np.array([timing.input_turn(float(s), chunk_ms) for s in video_times_s], np.int64)
  # For each micro-turn, the number of frames heard by its end; the last of them is the newest.
  heard = np.searchsorted(turns[order], np.arange(n_turns), side="right")
  mask = heard > 0
  index = np.where(mask, order[np.maximum(heard - 1, 0)] if len(order) else 0, 0)
  return index.astype(np.int32), mask


def event_turns(event_times_s, video_times_s: np.ndarray, n_turns: int,
                chunk_ms: int) -> np.ndarray:
  """bool [n_turns]: True at the first micro-turn whose frame (`frame_indices`) was taken at or
  after each event time; events no micro-turn's frame follows are left out."""
  index, mask = frame_indices(video_times_s, n_turns, chunk_ms)
  seen_s = np.full(n_turns, -np.inf)
  seen_s[mask] = np.asarray(video_times_s, np.float64)[index[mask]]
  flags = np.zeros(n_turns, bool)
  for time_s in event_times_s:
    after = np.flatnonzero(seen_s >= time_s)
    if len(after):
      flags[after[0]] = True
  return flags


def frame_per_turn(video: np.ndarray, video_times_s: np.ndarray, n_turns: int,
                   chunk_ms: int) -> tuple[np.ndarray, np.ndarray]:
  """(uint8 [n_turns, H, W, 3] frames, bool [n_turns] mask); zeros where mask is False."""
  index, mask = frame_indices(video_times_s, n_turns, chunk_ms)
  if len(video) == 0:
    return np.zeros((n_turns, *video.shape[1:]), np.uint8), mask
  return np.where(mask[:, None, None, None], video[index], 0).astype(np.uint8), mask


def slot_patches(frames: np.ndarray, previous: np.ndarray, layout: Layout) -> np.ndarray:
  """uint8 [..., K_v, P, P, C]: the video slots of micro-turns that see `frames` [..., H, W, 3]
  (resized to the layout's frame size) after micro-turns that saw `previous` (the same frames
  where there was none), which the slots hold too with `stream.video_motion` (C = 6)."""
  if layout.video_motion:
    frames = np.concatenate([frames, previous], axis=-1)
  return patchify(frames, layout.patch)


def turn_patches(video: np.ndarray, video_times_s: np.ndarray, n_turns: int,
                 layout: Layout) -> tuple[np.ndarray, np.ndarray]:
  """(uint8 [n_turns, K_v, P, P, C] patches, bool [n_turns] mask): the video slots."""
  size = (layout.video_height, layout.video_width)
  frames, mask = frame_per_turn(video, video_times_s, n_turns, layout.chunk_ms)
  if len(video) == 0:  # no frames, so no frame size either
    frames = np.zeros((n_turns, *size, 3), np.uint8)
  frames = resize(frames, *size)
  saw_one = np.concatenate([[False], mask[:-1]])[:, None, None, None]
  previous = np.where(saw_one, np.roll(frames, 1, axis=0), frames)
  return slot_patches(frames, previous, layout), mask
