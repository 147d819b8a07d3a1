"""The micro-turn layout (SPEC §3): which slot sits where in the flattened token sequence.

Micro-turn t occupies `turn_len` consecutive positions of the temporal sequence:

  input segment:  [boundary] [text_in x K_ti] [video x K_v] [audio_in x K_ai] [bg x K_bg]
  output segment: [user_transcript x K_ut] [text_out x K_to] [audio_out x K_ao]

A batch of B windows of N micro-turns is stored per slot group (static shapes; below, the
shapes of one window, a batch adds a leading B):

  turn             int32 [N]                 absolute micro-turn index t (boundary time embedding)
  turn_mask        bool  [N]                 True where the micro-turn lies inside the episode
  text_in          int32 [N, K_ti]           typed user text token ids, `<pad>` when empty
  video            uint8 [N, K_v, P, P, 3]   40x40 RGB patches of the frame of micro-turn t
  video_mask       bool  [N]                 True where a frame exists for micro-turn t
  audio_in         uint8 [N, K_ai, k, M]     user audio dMel bins, k frames of M channels a token
  bg               int32 [N, K_bg]           background-result tokens, `<pad>` when empty
  user_transcript  int32 [N, K_ut]           streaming transcript of the user, `<sil>` when empty
  text_out         int32 [N, K_to]           model text (inner monologue), `<sil>` when empty
  audio_out        uint8 [N, K_ao, k, M]     model audio dMel bins (silence-mel when quiet)

The output groups are both what the model generates (targets) and what is fed back into the
temporal model at their positions; input groups are never targets.
"""

from __future__ import annotations

import dataclasses
import enum

import numpy as np

from jax_interact.streams import tokenizer
from jax_interact.streams.dmel import SILENCE_BIN


class SlotKind(enum.IntEnum):
  BOUNDARY = 0
  TEXT_IN = 1
  VIDEO = 2
  AUDIO_IN = 3
  BG = 4
  USER_TRANSCRIPT = 5
  TEXT_OUT = 6
  AUDIO_OUT = 7


INPUT_KINDS = (SlotKind.BOUNDARY, SlotKind.TEXT_IN, SlotKind.VIDEO, SlotKind.AUDIO_IN,
               SlotKind.BG)
OUTPUT_KINDS = (SlotKind.USER_TRANSCRIPT, SlotKind.TEXT_OUT, SlotKind.AUDIO_OUT)
TEXT_OUTPUT_KINDS = (SlotKind.USER_TRANSCRIPT, SlotKind.TEXT_OUT)

# Batch key of each slot group (the boundary slot is built from `turn`).
GROUP_KEYS = {
    SlotKind.TEXT_IN: "text_in",
    SlotKind.VIDEO: "video",
    SlotKind.AUDIO_IN: "audio_in",
    SlotKind.BG: "bg",
    SlotKind.USER_TRANSCRIPT: "user_transcript",
    SlotKind.TEXT_OUT: "text_out",
    SlotKind.AUDIO_OUT: "audio_out",
}

# Keys of one micro-turn's input segment (what a step reads) and output segment (what it writes).
INPUT_KEYS = tuple(GROUP_KEYS[k] for k in INPUT_KINDS if k in GROUP_KEYS) + ("video_mask",)
OUTPUT_KEYS = tuple(GROUP_KEYS[k] for k in OUTPUT_KINDS)


@dataclasses.dataclass(frozen=True)
class Layout:
  """Slot counts of one micro-turn, derived from `config.stream`."""

  chunk_ms: int
  sample_rate: int
  hop_ms: int
  frames_per_token: int  # k
  n_mels: int  # M
  patch: int  # P
  video_height: int
  video_width: int
  counts: tuple[tuple[SlotKind, int], ...]  # (kind, slots) in sequence order

  @classmethod
  def from_config(cls, stream) -> "Layout":
    audio_tokens = stream.chunk_ms // (stream.hop_ms * stream.frames_per_token)
    video_patches = (stream.video_height // stream.patch) * (stream.video_width // stream.patch)
    counts = (
        (SlotKind.BOUNDARY, 1),
        (SlotKind.TEXT_IN, stream.text_in_slots),
        (SlotKind.VIDEO, video_patches),
        (SlotKind.AUDIO_IN, audio_tokens),
        (SlotKind.BG, stream.bg_slots),
        (SlotKind.USER_TRANSCRIPT, stream.user_transcript_slots),
        (SlotKind.TEXT_OUT, stream.text_out_slots),
        (SlotKind.AUDIO_OUT, audio_tokens),
    )
    return cls(chunk_ms=stream.chunk_ms, sample_rate=stream.sample_rate, hop_ms=stream.hop_ms,
               frames_per_token=stream.frames_per_token, n_mels=stream.n_mels,
               patch=stream.patch, video_height=stream.video_height,
               video_width=stream.video_width, counts=counts)

  def count(self, kind: SlotKind) -> int:
    return dict(self.counts)[kind]

  def offset(self, kind: SlotKind) -> int:
    """Position of the first slot of `kind` within a micro-turn."""
    start = 0
    for k, n in self.counts:
      if k == kind:
        return start
      start += n
    raise KeyError(kind)

  @property
  def input_len(self) -> int:
    return sum(n for k, n in self.counts if k in INPUT_KINDS)

  @property
  def output_len(self) -> int:
    return sum(n for k, n in self.counts if k in OUTPUT_KINDS)

  @property
  def turn_len(self) -> int:
    return self.input_len + self.output_len

  @property
  def last_input(self) -> int:
    """Position within a micro-turn whose temporal hidden state conditions the local decoder."""
    return self.input_len - 1

  @property
  def chunk_samples(self) -> int:
    return self.sample_rate * self.chunk_ms // 1000

  @property
  def frames_per_turn(self) -> int:
    return self.chunk_ms // self.hop_ms

  def kinds(self) -> np.ndarray:
    """int32 [turn_len]: the SlotKind of every position of a micro-turn."""
    return np.concatenate([np.full(n, k, np.int32) for k, n in self.counts])

  def output_slots(self, kinds) -> np.ndarray:
    """int [n]: indices within the output segment of the slots whose kind is in `kinds`."""
    return np.flatnonzero(np.isin(self.kinds()[self.input_len:], list(kinds)))

  def positions(self, n_turns: int, first_turn: int = 0) -> np.ndarray:
    """int32 [n_turns * turn_len]: absolute sequence positions of a window's tokens."""
    return np.arange(first_turn * self.turn_len, (first_turn + n_turns) * self.turn_len,
                     dtype=np.int32)


def empty_outputs(layout: Layout, batch: int) -> dict[str, np.ndarray]:
  """An output segment of silence: `<sil>` text and silence-mel audio."""
  k, m = layout.frames_per_token, layout.n_mels
  return {
      "user_transcript": np.full((batch, layout.count(SlotKind.USER_TRANSCRIPT)), tokenizer.SIL,
                                 np.int32),
      "text_out": np.full((batch, layout.count(SlotKind.TEXT_OUT)), tokenizer.SIL, np.int32),
      "audio_out": np.full((batch, layout.count(SlotKind.AUDIO_OUT), k, m), SILENCE_BIN,
                           np.uint8),
  }


def empty_inputs(layout: Layout, batch: int) -> dict[str, np.ndarray]:
  """An input segment with nothing in it: what a missing or late chunk is replaced by."""
  k, m, p = layout.frames_per_token, layout.n_mels, layout.patch
  return {
      "text_in": np.full((batch, layout.count(SlotKind.TEXT_IN)), tokenizer.PAD, np.int32),
      "video": np.zeros((batch, layout.count(SlotKind.VIDEO), p, p, 3), np.uint8),
      "audio_in": np.full((batch, layout.count(SlotKind.AUDIO_IN), k, m), SILENCE_BIN, np.uint8),
      "bg": np.full((batch, layout.count(SlotKind.BG)), tokenizer.PAD, np.int32),
      "video_mask": np.zeros((batch,), bool),
  }


def random_batch(layout: Layout, batch_size: int, n_turns: int, vocab_size: int,
                 dmel_bins: int, seed: int = 0) -> dict[str, np.ndarray]:
  """A batch of the window format above filled with random values (benchmarks, tests)."""
  rng = np.random.default_rng(seed)
  b, n = batch_size, n_turns

  def ids(kind):
    return rng.integers(0, vocab_size, (b, n, layout.count(kind)), dtype=np.int32)

  def dmel(kind):
    shape = (b, n, layout.count(kind), layout.frames_per_token, layout.n_mels)
    return rng.integers(0, dmel_bins, shape, dtype=np.uint8)

  p = layout.patch
  return {
      "turn": np.broadcast_to(np.arange(n, dtype=np.int32), (b, n)).copy(),
      "turn_mask": np.ones((b, n), bool),
      "text_in": ids(SlotKind.TEXT_IN),
      "video": rng.integers(0, 256, (b, n, layout.count(SlotKind.VIDEO), p, p, 3), np.uint8),
      "video_mask": np.ones((b, n), bool),
      "audio_in": dmel(SlotKind.AUDIO_IN),
      "bg": ids(SlotKind.BG),
      "user_transcript": ids(SlotKind.USER_TRANSCRIPT),
      "text_out": ids(SlotKind.TEXT_OUT),
      "audio_out": dmel(SlotKind.AUDIO_OUT),
  }
