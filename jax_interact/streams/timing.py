"""The clock of every stream and the timing rule of SPEC §3: which micro-turn a timed event
belongs to. Both live only here.

Micro-turn t reads the input window [tT, (t+1)T) and its output segment is what the model says
during wall time [(t+1)T, (t+2)T). So an event at wall time e is heard in micro-turn floor(e/T)
and can first be answered by that micro-turn's output; a model word starting at s must be
written one micro-turn ahead, in micro-turn floor(s/T) - 1.

Times are rounded to whole milliseconds first and the floors are taken on integers, so a word
starting at 0.4 s lands exactly on the 400 ms boundary (float `0.4 / 0.2` is not 2).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

SAMPLE_RATE = 16000  # audio samples per second, of every track and every live input
CHUNK_MS = 200  # the default micro-turn length T (config's stream.chunk_ms)


def to_ms(time_s: float) -> int:
  """Seconds to the nearest whole millisecond."""
  return round(time_s * 1000)


def input_turn(time_s: float, chunk_ms: int) -> int:
  """The micro-turn whose input window [tT, (t+1)T) contains an event at `time_s`."""
  return to_ms(time_s) // chunk_ms


def first_answer_turn(time_s: float, chunk_ms: int) -> int:
  """The first micro-turn whose output may react to an event at `time_s`."""
  return input_turn(time_s, chunk_ms)


def transcript_turn(end_s: float, chunk_ms: int) -> int:
  """The micro-turn whose user-transcript slots hold a user word ending at `end_s`."""
  return input_turn(end_s, chunk_ms)


def model_word_turn(start_s: float, chunk_ms: int) -> tuple[int, bool]:
  """(micro-turn, clamped) for a model word starting at `start_s`: floor(s/T) - 1.

  Words starting in the first micro-turn cannot be written ahead of time; they go to
  micro-turn 0 and `clamped` is True so callers can count them.
  """
  turn = to_ms(start_s) // chunk_ms - 1
  return max(turn, 0), turn < 0


def output_window_s(turn: int, chunk_ms: int) -> tuple[float, float]:
  """Wall time [start, end) in seconds during which micro-turn `turn`'s output is spoken."""
  return (turn + 1) * chunk_ms / 1000, (turn + 2) * chunk_ms / 1000


def output_turns_in(intervals_s: Iterable[Sequence[float]], n_turns: int, chunk_ms: int,
                    overlapping: bool = False) -> list[int]:
  """The micro-turns among the first `n_turns` whose output window lies inside one of
  `intervals_s` ([lo, hi] in seconds) or, `overlapping`, overlaps one; in order."""
  def within(turn: int, lo: float, hi: float) -> bool:
    start, end = output_window_s(turn, chunk_ms)
    return lo < end and hi > start if overlapping else lo <= start and end <= hi
  return [t for t in range(n_turns) if any(within(t, lo, hi) for lo, hi in intervals_s)]


def input_window_s(turn: int, chunk_ms: int) -> tuple[float, float]:
  """Wall time [start, end) in seconds of micro-turn `turn`'s input window."""
  return turn * chunk_ms / 1000, (turn + 1) * chunk_ms / 1000
