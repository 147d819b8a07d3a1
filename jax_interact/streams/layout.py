"""The micro-turn format (SPEC §3): the table of slot groups, and the layout derived from it.

Micro-turn t occupies `turn_len` consecutive positions of the temporal sequence:

  input segment:  [boundary] [text_in x K_ti] [video x K_v] [audio_in x K_ai] [bg x K_bg]
  output segment: [user_transcript x K_ut] [text_out x K_to] [audio_out x K_ao]

`SLOT_GROUPS` is the one statement of these groups: for each its kind, batch key, segment,
what one slot holds (`Token`: per-slot shape and dtype), slot count, empty value, and the loss
stream its slots are targets of. Empty segments, random batches, featurization's fill values,
the session's output splitting and the loss targets are derived from it (through `Layout`).

A batch of B windows of N micro-turns is stored per slot group (static shapes; below, the
shapes of one window, a batch adds a leading B):

  turn             int32 [N]                 absolute micro-turn index t (boundary time embedding)
  turn_mask        bool  [N]                 True where the micro-turn lies inside the episode
  text_in          int32 [N, K_ti]           typed user text token ids, `<pad>` when empty
  video            uint8 [N, K_v, P, P, C]   40x40 RGB patches of the frame of micro-turn t
                                             (C = 3), then of micro-turn t - 1's (C = 6,
                                             stream.video_motion)
  video_mask       bool  [N]                 True where a frame exists for micro-turn t
  audio_in         uint8 [N, K_ai, k, M]     user audio dMel bins, k frames of M channels a token
  bg               int32 [N, K_bg]           background-result tokens, `<pad>` when empty
  user_transcript  int32 [N, K_ut]           streaming transcript of the user, `<sil>` when empty
  text_out         int32 [N, K_to]           model text (inner monologue), `<sil>` when empty
  audio_out        uint8 [N, K_ao, k, M]     model audio dMel bins (silence-mel when quiet)
  scene_event      bool  [N]                 True where micro-turn t's frame is the first to show
                                             a scene event (Episode.task_events: a bounce, a
                                             colour change, motion starting or stopping); a
                                             training target only (loss.scene_event_weight)
  quiet            bool  [N]                 True where micro-turn t's output window overlaps one
                                             of the episode's quiet intervals (annotations
                                             `quiet_s`: where the model must not speak); a
                                             training weight only (loss.quiet_scale)

The output groups are both what the model generates (targets) and what is fed back into the
temporal model at their positions; input groups are never targets.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from operator import attrgetter
from typing import Any

import numpy as np

from jax_interact.streams import tokenizer
from jax_interact.streams.dmel import SILENCE_BIN


class SlotKind(enum.IntEnum):
  """A slot group's identity in the sequence (the model's kind embedding row)."""

  BOUNDARY = 0
  TEXT_IN = 1
  VIDEO = 2
  AUDIO_IN = 3
  BG = 4
  USER_TRANSCRIPT = 5
  TEXT_OUT = 6
  AUDIO_OUT = 7


class Segment(enum.Enum):
  INPUT = "input"
  OUTPUT = "output"


class Token(enum.Enum):
  """What one slot holds, which fixes its shape and dtype."""

  TIME = "time"  # the boundary: embedded from the micro-turn index `turn`, stores nothing
  TEXT = "text"  # a token id
  PATCH = "patch"  # a P x P RGB patch of the micro-turn's video frame (and the previous one's)
  DMEL = "dmel"  # k frames of M dMel bins (one audio token)

  def shape(self, layout: Layout) -> tuple[int, ...]:
    return {Token.TEXT: (), Token.PATCH: (layout.patch, layout.patch, layout.patch_channels),
            Token.DMEL: (layout.frames_per_token, layout.n_mels)}[self]

  @property
  def dtype(self) -> type:
    return np.int32 if self is Token.TEXT else np.uint8


class Target(enum.Enum):
  """The loss stream whose targets a group's slots are (models/losses.py)."""

  TRANSCRIPT = "transcript"  # text cross-entropy, `loss.transcript_weight`
  TEXT = "text"  # text cross-entropy, `loss.text_weight`
  AUDIO = "audio"  # voicing cross-entropy and flow matching


@dataclasses.dataclass(frozen=True)
class SlotGroup:
  """One row of the micro-turn format: a group of consecutive slots of one kind."""

  kind: int  # the model's kind-embedding row; a SlotKind for the standard groups
  key: str | None  # batch key; None for the boundary
  segment: Segment
  token: Token
  # Slot count from `config.stream`; a layout holds the counts, so it is not compared.
  slots: Callable[[Any], int] = dataclasses.field(compare=False)
  empty: int  # value of an empty slot
  target: Target | None = None  # None: never a loss target
  mask: str | None = None  # batch key of a bool [N]: False where the group has no content


# Slot counts from `config.stream`: named functions and attrgetters, so a Layout pickles.
def _one(stream) -> int:
  return 1


def _audio_tokens(stream) -> int:
  return stream.chunk_ms // (stream.hop_ms * stream.frames_per_token)


def _video_patches(stream) -> int:
  return (stream.video_height // stream.patch) * (stream.video_width // stream.patch)


IN, OUT = Segment.INPUT, Segment.OUTPUT
# The micro-turn format: its slot groups in sequence order.
SLOT_GROUPS = (
    SlotGroup(SlotKind.BOUNDARY, None, IN, Token.TIME, _one, 0),
    SlotGroup(SlotKind.TEXT_IN, "text_in", IN, Token.TEXT, attrgetter("text_in_slots"),
              tokenizer.PAD),
    SlotGroup(SlotKind.VIDEO, "video", IN, Token.PATCH, _video_patches, 0, mask="video_mask"),
    SlotGroup(SlotKind.AUDIO_IN, "audio_in", IN, Token.DMEL, _audio_tokens, SILENCE_BIN),
    SlotGroup(SlotKind.BG, "bg", IN, Token.TEXT, attrgetter("bg_slots"), tokenizer.PAD),
    SlotGroup(SlotKind.USER_TRANSCRIPT, "user_transcript", OUT, Token.TEXT,
              attrgetter("user_transcript_slots"), tokenizer.SIL, Target.TRANSCRIPT),
    SlotGroup(SlotKind.TEXT_OUT, "text_out", OUT, Token.TEXT, attrgetter("text_out_slots"),
              tokenizer.SIL, Target.TEXT),
    SlotGroup(SlotKind.AUDIO_OUT, "audio_out", OUT, Token.DMEL, _audio_tokens, SILENCE_BIN,
              Target.AUDIO),
)


def batch_keys(groups: tuple[SlotGroup, ...], segment: Segment) -> tuple[str, ...]:
  """Keys of the arrays that carry one segment: its groups', then their masks."""
  stored = [g for g in groups if g.segment is segment and g.key is not None]
  return tuple(g.key for g in stored) + tuple(g.mask for g in stored if g.mask)


# Batch arrays of one bool per micro-turn that are not a slot group's mask.
TURN_FLAGS = ("turn_mask", "scene_event", "quiet", "user_speaks")


def empty_value(key: str, groups: tuple[SlotGroup, ...] = SLOT_GROUPS) -> Any:
  """The value of an empty slot of batch array `key` (False for the per-turn flags and the
  masks): what a missing input, a quiet output and the padding past an episode hold."""
  for g in groups:
    if key == g.key:
      return g.empty
  if key in TURN_FLAGS or key in (g.mask for g in groups):
    return False
  raise KeyError(key)


# The standard table's kinds and keys, for code written against its groups (the model's
# embeddings, the session's temporal pass, FLOP counting).
GROUP_KEYS = {g.kind: g.key for g in SLOT_GROUPS if g.key is not None}
INPUT_KINDS = tuple(g.kind for g in SLOT_GROUPS if g.segment is IN)
OUTPUT_KINDS = tuple(g.kind for g in SLOT_GROUPS if g.segment is OUT)
TEXT_OUTPUT_KINDS = tuple(g.kind for g in SLOT_GROUPS if g.segment is OUT and g.token is Token.TEXT)
# Keys of one micro-turn's input segment (what a step reads) and output segment (what it writes).
INPUT_KEYS = batch_keys(SLOT_GROUPS, IN)
OUTPUT_KEYS = batch_keys(SLOT_GROUPS, OUT)


@dataclasses.dataclass(frozen=True)
class Layout:
  """Slot counts of one micro-turn, derived from `config.stream` and a table of slot groups."""

  chunk_ms: int
  sample_rate: int
  hop_ms: int
  frames_per_token: int  # k
  n_mels: int  # M
  patch: int  # P
  video_height: int
  video_width: int
  video_motion: bool  # each video slot also holds the previous micro-turn's patch
  group_slots: tuple[tuple[SlotGroup, int], ...]  # (group, slots) in sequence order

  @classmethod
  def from_config(cls, stream, groups: tuple[SlotGroup, ...] = SLOT_GROUPS) -> Layout:
    return cls(chunk_ms=stream.chunk_ms, sample_rate=stream.sample_rate, hop_ms=stream.hop_ms,
               frames_per_token=stream.frames_per_token, n_mels=stream.n_mels,
               patch=stream.patch, video_height=stream.video_height,
               video_width=stream.video_width,
               video_motion=stream.video_motion,
               group_slots=tuple((g, g.slots(stream)) for g in groups))

  @property
  def patch_channels(self) -> int:
    """3 (RGB), or 6 with the previous micro-turn's RGB after it (`video_motion`)."""
    return 6 if self.video_motion else 3

  @property
  def counts(self) -> tuple[tuple[SlotKind, int], ...]:
    """(kind, slots) in sequence order."""
    return tuple((g.kind, n) for g, n in self.group_slots)

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

  def groups(self, segment: Segment | None = None,
             token: Token | None = None) -> tuple[SlotGroup, ...]:
    """The groups of `segment` (default: both) holding `token` (default: any), in order."""
    return tuple(g for g, _ in self.group_slots
                 if segment in (None, g.segment) and token in (None, g.token))

  @property
  def input_keys(self) -> tuple[str, ...]:
    """What a micro-turn step reads (the boundary comes from the session's turn)."""
    return batch_keys(self.groups(), Segment.INPUT)

  @property
  def output_keys(self) -> tuple[str, ...]:
    """What a micro-turn step writes and feeds back."""
    return batch_keys(self.groups(), Segment.OUTPUT)

  def empty(self, key: str) -> Any:
    return empty_value(key, self.groups())

  def spec(self, key: str) -> tuple[tuple[int, ...], type]:
    """(shape, dtype) of batch array `key` for one micro-turn (a window adds [N], a batch
    [B, N]): a group's slots, or a bool for the per-turn flags and the masks."""
    for g in self.groups():
      if key == g.key:
        return (self.count(g.kind), *g.token.shape(self)), g.token.dtype
      if key == g.mask:
        return (), bool
    if key in TURN_FLAGS:
      return (), bool
    raise KeyError(key)

  def segment_len(self, segment: Segment) -> int:
    return sum(n for g, n in self.group_slots if g.segment is segment)

  @property
  def input_len(self) -> int:
    return self.segment_len(Segment.INPUT)

  @property
  def output_len(self) -> int:
    return self.segment_len(Segment.OUTPUT)

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

  def token_slots(self, token: Token) -> np.ndarray:
    """int [n]: indices within the output segment of the slots holding `token`, in order (the
    order of the model's text or voicing logits and of their loss targets)."""
    return self.output_slots(g.kind for g in self.groups(Segment.OUTPUT, token))

  def output_segment(self) -> tuple[tuple[SlotGroup, int], ...]:
    """(group, index within the group) of every slot of the output segment, in order."""
    return tuple((g, i) for g, n in self.group_slots if g.segment is Segment.OUTPUT
                 for i in range(n))

  def split_output_segment(self, slots: list, stack=np.stack) -> dict[str, Any]:
    """{key: the group's slots stacked on axis 1} from one array [B, ...] per output slot."""
    start, groups = 0, {}
    for g in self.groups(Segment.OUTPUT):
      n = self.count(g.kind)
      groups[g.key] = stack(slots[start:start + n], axis=1)
      start += n
    return groups

  def positions(self, n_turns: int, first_turn: int = 0) -> np.ndarray:
    """int32 [n_turns * turn_len]: absolute sequence positions of a window's tokens."""
    return np.arange(first_turn * self.turn_len, (first_turn + n_turns) * self.turn_len,
                     dtype=np.int32)



def _empty(layout: Layout, keys: tuple[str, ...], batch: int) -> dict[str, np.ndarray]:
  return {key: np.full((batch, *shape), layout.empty(key), dtype)
          for key in keys for shape, dtype in [layout.spec(key)]}


def empty_outputs(layout: Layout, batch: int) -> dict[str, np.ndarray]:
  """An output segment of silence: `<sil>` text and silence-mel audio."""
  return _empty(layout, layout.output_keys, batch)


def empty_inputs(layout: Layout, batch: int) -> dict[str, np.ndarray]:
  """An input segment with nothing in it: what a missing or late chunk is replaced by."""
  return _empty(layout, layout.input_keys, batch)


def random_batch(layout: Layout, batch_size: int, n_turns: int, vocab_size: int,
                 dmel_bins: int, seed: int = 0) -> dict[str, np.ndarray]:
  """A batch of the window format above filled with random values (benchmarks, tests)."""
  rng = np.random.default_rng(seed)
  b, n = batch_size, n_turns
  high = {Token.TEXT: vocab_size, Token.PATCH: 256, Token.DMEL: dmel_bins}
  batch = {"turn": np.broadcast_to(np.arange(n, dtype=np.int32), (b, n)).copy(),
           "turn_mask": np.ones((b, n), bool)}
  for g in layout.groups():
    if g.key is not None:
      shape, dtype = layout.spec(g.key)
      batch[g.key] = rng.integers(0, high[g.token], (b, n, *shape), dtype=dtype)
    if g.mask:
      batch[g.mask] = np.ones((b, n), bool)
  batch["scene_event"] = rng.random((b, n)) < 0.1
  batch["quiet"] = rng.random((b, n)) < 0.3
  batch["user_speaks"] = rng.random((b, n)) < 0.3
  return batch
