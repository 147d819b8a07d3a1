"""The timestamped transcript of both sides of a session and the context package (SPEC §5).

The runtime records, per micro-turn, the user's typed text, the user-transcript slots and the
model's text slots as token ids with a wall time (the timing rule of streams/timing.py: typed
text and transcribed words at the start of the input window they were heard in, model words when
they are spoken). `from_episode` builds the transcript the runtime would hold when the episode's
model delegates, so the background LM trains on packages rendered exactly as at runtime.

A context package is plain text: one line per run of one speaker, then the task (by default the
user's latest line), e.g.

    0.4s user typed: what is 17 times 23
    1.4s model: let me check
    task: what is 17 times 23
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from jax_interact.streams import timing
from jax_interact.streams.episode import Episode
from jax_interact.streams.tokenizer import BG, BOS, SPECIAL_PIECES, UNK, Tokenizer

USER_TYPED, USER, MODEL = "user typed", "user", "model"


@dataclasses.dataclass(frozen=True)
class Entry:
  time_s: float
  source: str  # USER_TYPED | USER | MODEL
  ids: tuple[int, ...]  # text token ids, specials removed


def _text_ids(ids: Iterable[int]) -> tuple[int, ...]:
  return tuple(int(i) for i in ids if int(i) >= len(SPECIAL_PIECES) or int(i) == UNK)


class Transcript:
  """Entries in time order; consecutive entries of one source render as one line."""

  def __init__(self, chunk_ms: int):
    self.chunk_ms = chunk_ms
    self.entries: list[Entry] = []

  def add(self, time_s: float, source: str, ids: Iterable[int]) -> None:
    """Appends the text tokens of `ids` (specials such as `<sil>`, `<delegate>` dropped)."""
    ids = _text_ids(ids)
    if ids:
      self.entries.append(Entry(round(time_s, 3), source, ids))

  def record_turn(self, turn: int, typed_ids: Iterable[int], user_transcript: Iterable[int],
                  text_out: Iterable[int]) -> None:
    """What micro-turn `turn` added: its typed input and its two text output groups."""
    heard_s = timing.input_window_s(turn, self.chunk_ms)[0]
    self.add(heard_s, USER_TYPED, typed_ids)
    self.add(heard_s, USER, user_transcript)
    self.add(timing.output_window_s(turn, self.chunk_ms)[0], MODEL, text_out)

  def lines(self, tokenizer: Tokenizer) -> list[tuple[float, str, str]]:
    """(time of the first entry, source, text) of every run of entries from one source."""
    runs: list[tuple[float, str, list[int]]] = []
    for entry in self.entries:
      if runs and runs[-1][1] == entry.source:
        runs[-1][2].extend(entry.ids)
      else:
        runs.append((entry.time_s, entry.source, list(entry.ids)))
    return [(time_s, source, tokenizer.decode(ids)) for time_s, source, ids in runs]

  def latest_user_text(self, tokenizer: Tokenizer) -> str:
    for _, source, text in reversed(self.lines(tokenizer)):
      if source in (USER, USER_TYPED):
        return text
    return ""

  def package(self, tokenizer: Tokenizer, task: str | None = None) -> str:
    """The context package: the whole transcript so far, then the task."""
    if task is None:
      task = self.latest_user_text(tokenizer)
    body = [f"{time_s:.1f}s {source}: {text}" for time_s, source, text in self.lines(tokenizer)]
    return "\n".join(body + [f"task: {task}"])


def from_episode(episode: Episode, delegate_s: float, tokenizer: Tokenizer,
                 chunk_ms: int) -> Transcript:
  """The transcript a session of `episode` holds after the micro-turn that says `<delegate>` at
  `delegate_s` (the featurizer puts it in micro-turn floor(delegate_s / T) - 1)."""
  last_turn, _ = timing.model_word_turn(delegate_s, chunk_ms)
  timed: list[tuple[int, int, str, list[int]]] = []  # (turn, order within a turn, source, ids)
  for event in episode.typed_text():
    turn = timing.input_turn(event["time_s"], chunk_ms)
    timed.append((turn, 0, USER_TYPED, tokenizer.encode(event["text"])))
  for word in episode.words:
    if word.speaker == "user":
      timed.append((timing.transcript_turn(word.end_s, chunk_ms), 1, USER,
                    tokenizer.encode(word.text)))
    else:
      timed.append((timing.model_word_turn(word.start_s, chunk_ms)[0], 2, MODEL,
                    tokenizer.encode(word.text)))
  transcript = Transcript(chunk_ms)
  for turn, _, source, ids in sorted(timed, key=lambda item: item[:2]):
    if turn <= last_turn:
      transcript.record_turn(turn, *(ids if source == s else () for s in (USER_TYPED, USER,
                                                                          MODEL)))
  return transcript


def package_ids(package: str, tokenizer: Tokenizer, limit: int) -> list[int]:
  """The background LM's prompt: `<bos>` package `<bg>`, at most `limit` tokens (the start of a
  long transcript is dropped, the task at its end is kept). The result follows, then `<eos>`."""
  body = tokenizer.encode(package) + [BG]
  return [BOS] + body[max(0, len(body) - (limit - 1)):]
