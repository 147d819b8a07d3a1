"""From streamed outputs to behaviour on the wall clock: the model's timed words and speech.

Timing rule (SPEC §3, jax_interact/streams/timing.py): the output segment of micro-turn t is
spoken during [(t+1)T, (t+2)T). So a model word whose first text token sits in micro-turn t
*starts* at (t+1)T, the wall time of its first token; latencies are measured to that time.

Speech activity ("speaking") is the union of
  - the output window of every micro-turn holding a word token in its model-text slots, and
  - every voiced audio token (`streams.dmel.voiced`, the definition training's voicing targets
    use too): one audio token covers k dMel frames (40 ms by default) of its micro-turn's
    output window.
Intervals closer than MERGE_GAP_S are merged, so the short gaps between words of one utterance
do not count as the model falling silent.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterable, Sequence

import numpy as np

from jax_interact.inference.engine import TurnOutput
from jax_interact.streams import timing
from jax_interact.streams.dmel import voiced
from jax_interact.streams.episode import Episode, Word
from jax_interact.streams.layout import Layout
from jax_interact.streams.tokenizer import DELEGATE, EMPTY_IDS, SPECIAL_PIECES, Tokenizer

MERGE_GAP_S = 0.3
WORD_START = "\u2581"  # SentencePiece marks the first piece of a word with "▁"

Interval = tuple[float, float]


@dataclasses.dataclass(frozen=True)
class TimedWord:
  text: str
  start_s: float  # wall time of the word's first token


@dataclasses.dataclass(frozen=True)
class Behaviour:
  """What a system did in one episode, on the episode's wall clock."""

  words: tuple[TimedWord, ...] = ()  # the model's words in time order
  active_s: tuple[Interval, ...] = ()  # merged intervals in which the model is speaking
  delegate_s: tuple[float, ...] = ()  # wall times of the `<delegate>` tokens
  user_transcript: tuple[str, ...] = ()  # the words of the streamed user transcript

  def first_word(self, lo_s: float, hi_s: float = float("inf"),
                 texts: Iterable[str] | None = None) -> TimedWord | None:
    """The first word starting in [lo_s, hi_s), optionally one of `texts` (normalised)."""
    wanted = None if texts is None else {normalise(t) for t in texts}
    for word in self.words:
      if lo_s <= word.start_s < hi_s and (wanted is None or normalise(word.text) in wanted):
        return word
    return None

  def spoken_s(self, lo_s: float, hi_s: float) -> float:
    """Seconds of speech inside [lo_s, hi_s)."""
    return sum(max(0.0, min(hi, hi_s) - max(lo, lo_s)) for lo, hi in self.active_s)


def normalise(text: str) -> str:
  return text.strip().lower()


def merge(intervals: Iterable[Interval], gap_s: float = MERGE_GAP_S) -> tuple[Interval, ...]:
  """Sorted union of intervals, joining those less than `gap_s` apart."""
  merged: list[list[float]] = []
  for lo, hi in sorted(intervals):
    if merged and lo - merged[-1][1] < gap_s:
      merged[-1][1] = max(merged[-1][1], hi)
    else:
      merged.append([lo, hi])
  return tuple((round(lo, 6), round(hi, 6)) for lo, hi in merged)


def decode_words(turn_ids: Iterable[tuple[int, Sequence[int]]], tokenizer: Tokenizer,
                 time_of_turn: Callable[[int], float]) -> tuple[list[TimedWord], list[float]]:
  """(words, delegate times) of text slots given as (micro-turn, ids) in order.

  A piece starting with "▁" opens a word at `time_of_turn(turn)`; other pieces continue the
  open word (across micro-turns: overflow spills into the next one's first slots). An empty slot
  (`<sil>`/`<pad>`) closes it. Other specials are skipped, `<delegate>` times recorded.
  """
  words: list[list] = []  # [text, start_s]
  delegate_s: list[float] = []
  open_word = False
  for turn, ids in turn_ids:
    for token in (int(i) for i in ids):
      if token == DELEGATE:
        delegate_s.append(time_of_turn(turn))
      if token in EMPTY_IDS:
        open_word = False
      if token < len(SPECIAL_PIECES) or token >= tokenizer.size:
        continue
      piece = tokenizer.piece(token)
      if piece.startswith(WORD_START) or not open_word:
        words.append([piece.removeprefix(WORD_START), time_of_turn(turn)])
        open_word = True
      else:
        words[-1][0] += piece
  return [TimedWord(text, start) for text, start in words if text], delegate_s


def from_outputs(outputs: Sequence[TurnOutput], layout: Layout, tokenizer: Tokenizer) -> Behaviour:
  """The behaviour of one session's streamed outputs (in micro-turn order)."""
  chunk_ms = layout.chunk_ms
  speaking_at = lambda turn: timing.output_window_s(turn, chunk_ms)[0]
  words, delegate_s = decode_words(((o.turn, o.text_out) for o in outputs), tokenizer,
                                   speaking_at)
  transcript, _ = decode_words(((o.turn, o.user_transcript) for o in outputs), tokenizer,
                               speaking_at)
  active: list[Interval] = []
  for out in outputs:
    lo, hi = timing.output_window_s(out.turn, chunk_ms)
    if any(len(SPECIAL_PIECES) <= int(i) < tokenizer.size for i in out.text_out):
      active.append((lo, hi))
    voiced_K = voiced(out.audio_out)
    step = (hi - lo) / len(voiced_K)
    active += [(lo + j * step, lo + (j + 1) * step) for j in np.flatnonzero(voiced_K)]
  return Behaviour(words=tuple(words), active_s=merge(active), delegate_s=tuple(delegate_s),
                   user_transcript=tuple(w.text for w in transcript))


def from_words(words: Iterable[Word], chunk_ms: int, delegate_s: Iterable[float] = (),
               user_transcript: Iterable[str] = ()) -> Behaviour:
  """The behaviour of a system saying `words` (model words, e.g. an episode's reference).

  Each word is timed as the streamed outputs would time it: at the start of the output window
  of the micro-turn it is written in (timing.model_word_turn). It is active from then to its end.
  """
  timed, active = [], []
  for word in sorted(words, key=lambda w: w.start_s):
    turn, _ = timing.model_word_turn(word.start_s, chunk_ms)
    start_s = timing.output_window_s(turn, chunk_ms)[0]
    timed.append(TimedWord(word.text, start_s))
    active.append((start_s, max(start_s, word.end_s)))
  delegate_times = [timing.output_window_s(timing.model_word_turn(t, chunk_ms)[0], chunk_ms)[0]
                    for t in delegate_s]
  return Behaviour(words=tuple(timed), active_s=merge(active), delegate_s=tuple(delegate_times),
                   user_transcript=tuple(user_transcript))


def reference(episode: Episode, chunk_ms: int) -> Behaviour:
  """The episode's own model track as behaviour: what the generator's good model does."""
  return from_words([w for w in episode.words if w.speaker == "model"], chunk_ms,
                    delegate_s=[e["time_s"] for e in episode.delegations()],
                    user_transcript=[w.text for w in episode.user_words()])


def user_speech_s(episode: Episode) -> tuple[Interval, ...]:
  """Merged intervals in which the user is speaking (from the episode's user words)."""
  return merge((w.start_s, w.end_s) for w in episode.user_words())
