"""The live input of a streaming session, one engine Chunk per micro-turn: from a recorded
episode (its user audio, video frames and typed text) or from audio and video files."""

from __future__ import annotations

import numpy as np

from jax_interact.errors import InputError
from jax_interact.inference import engine as engine_lib
from jax_interact.streams import audio as audio_lib, timing, video
from jax_interact.streams.episode import Episode
from jax_interact.streams.layout import Layout
from jax_interact.streams.tokenizer import Tokenizer


def episode_chunks(episode: Episode, layout: Layout,
                   tokenizer: Tokenizer) -> list[engine_lib.Chunk]:
  """The live input of a recorded episode, one Chunk per micro-turn."""
  user = audio_lib.from_int16(episode.user_audio)
  n_turns = episode.num_turns(layout.chunk_ms)
  typed = {}
  for event in episode.typed_text():
    typed.setdefault(timing.input_turn(event["time_s"], layout.chunk_ms), []).extend(
        tokenizer.encode(event["text"]))
  return _chunks(user, episode.video, episode.video_times_s, n_turns, layout, typed)


def file_chunks(samples_CS: np.ndarray, rate: int, video_path: str | None,
                layout: Layout) -> list[engine_lib.Chunk]:
  """The live input of audio samples (any rate or channels: mixed to 16 kHz mono) and video."""
  user = audio_lib.to_mono_16k(samples_CS, rate)
  n_turns = -(-len(user) // layout.chunk_samples)
  frames, times = (read_video(video_path) if video_path
                   else (np.zeros((0, 1, 1, 3), np.uint8), np.zeros(0, np.float32)))
  return _chunks(user, frames, times, n_turns, layout, {})


def _chunks(user: np.ndarray, frames: np.ndarray, times: np.ndarray, n_turns: int, layout: Layout,
            typed: dict[int, list[int]]) -> list[engine_lib.Chunk]:
  audio_TS = audio_lib.chunk(user, layout)
  index, present = video.frame_indices(times, n_turns, layout.chunk_ms)
  return [engine_lib.Chunk(audio=audio_TS[t], frame=frames[index[t]] if present[t] else None,
                           text_ids=tuple(typed.get(t, ())))
          for t in range(n_turns)]


def read_video(path: str) -> tuple[np.ndarray, np.ndarray]:
  """(uint8 [F, H, W, 3], float32 [F] seconds) of a video file, via PyAV (the `video` extra)."""
  try:
    import av
  except ImportError:
    raise InputError("--video", "reading video needs PyAV: pip install 'jax_interact[video]'") \
        from None
  try:
    with av.open(path) as container:
      decoded = [(f.to_ndarray(format="rgb24"), float(f.time or 0.0))
                 for f in container.decode(video=0)]
  except (av.error.FFmpegError, OSError, ValueError) as e:
    raise InputError(path, f"not a readable video file ({e})") from None
  if not decoded:
    raise InputError(path, "holds no video frames")
  return np.stack([f for f, _ in decoded]), np.array([t for _, t in decoded], np.float32)
