"""Baselines scored beside the model, so every number has something to be compared with.

silent      never speaks, never delegates, transcribes nothing.
turn_based  the same model's streamed outputs behind the harness of a classic cascade, which
            speaks only in reply to a turn it was given, and only once the user has been silent
            for GATE_SILENCE_S.
            The gate for the output of micro-turn t is open when the user spoke at no time in
            the last GATE_SILENCE_S of input heard by then, [(t+1)T - 0.6 s, (t+1)T) (an oracle
            VAD: user speech from the episode's user words). An output holding speech (a word
            token or a voiced audio token) produced while the gate is closed is held in a FIFO
            (silent ones are dropped); while the gate is open the FIFO plays first, one output
            segment per micro-turn, and new outputs queue behind it (so pauses within held
            speech are kept), until only silence is left queued, which is dropped. Closed, the
            gate plays silence. When the user starts a turn (speaks, so the gate closes, or
            types), what is still queued is dropped and a reply under way ends, as a cascade's
            barge-in flushes its playback: a reply to a turn holds only speech the model
            produced after the user began it.
            A turn is given when the gate opens after user speech, when typed text arrives and
            when a background result is complete (its last word has arrived). Its reply is the
            speech that starts while the gate is open, within REPLY_WINDOW_S of the first
            micro-turn that may answer the turn, and goes on until the model has been silent for
            GATE_SILENCE_S; speech outside a reply is dropped. So the cascade answers a question
            as the model does, a beat later, but cannot speak on its own: it does not count
            bounces, call out what it sees or keep a beat once its reply is over.
            The user transcript passes ungated, and the background job starts at the model's own
            `<delegate>` (the runtime acts on it, nobody hears it).
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import Sequence

import numpy as np

from jax_interact.evaluation import background, transcripts
from jax_interact.inference.engine import TurnOutput
from jax_interact.models.decisions import is_word
from jax_interact.streams import timing
from jax_interact.streams.dmel import SILENCE_BIN, voiced
from jax_interact.streams.episode import Episode
from jax_interact.streams.tasks import REPLY_WINDOW_S
from jax_interact.streams.tokenizer import SIL

GATE_SILENCE_S = 0.6
BASELINES = ("silent", "turn_based")


def silent() -> transcripts.Behaviour:
  return transcripts.Behaviour()


def silent_outputs(outputs: Sequence[TurnOutput]) -> list[TurnOutput]:
  """What the silent baseline streams in the same micro-turns: `<sil>` and silence-mel."""
  return [_play(out, None) for out in outputs]


def _speaks(out: TurnOutput) -> bool:
  return bool(np.any(is_word(out.text_out))
              or np.any(voiced(out.audio_out)))


def gate_open(turn: int, user_speech_s: Sequence[transcripts.Interval], chunk_ms: int) -> bool:
  heard_until = timing.input_window_s(turn, chunk_ms)[1]
  since = heard_until - GATE_SILENCE_S
  return not any(lo < heard_until and hi > since for lo, hi in user_speech_s)


@dataclasses.dataclass(frozen=True)
class GivenTurns:
  """Wall times at which the cascade is given a turn without the user falling silent."""
  typed_s: tuple[float, ...] = ()  # typed text arrives: the user starts a turn
  results_s: tuple[float, ...] = ()  # a background job the model delegated completes


def given_turns(episode: Episode, behaviour: transcripts.Behaviour) -> GivenTurns:
  """The turns `episode` gives the cascade when the model behaves as `behaviour`: its typed
  text, and the background job replayed from the model's first `<delegate>`."""
  results = (background.replayed_results(episode, behaviour.delegate_s[0])
             if behaviour.delegate_s else [])
  return GivenTurns(typed_s=tuple(float(event["time_s"]) for event in episode.typed_text()),
                    results_s=(results[-1][1],) if results else ())


def turn_based(outputs: Sequence[TurnOutput], episode: Episode,
               behaviour: transcripts.Behaviour, chunk_ms: int) -> list[TurnOutput]:
  """The streamed outputs of `episode` (whose model behaviour is `behaviour`) as the user hears
  them through the cascade, one per turn."""
  return cascade(outputs, transcripts.user_speech_s(episode), chunk_ms,
                 given_turns(episode, behaviour))


def cascade(outputs: Sequence[TurnOutput], user_speech_s: Sequence[transcripts.Interval],
            chunk_ms: int, given: GivenTurns = GivenTurns()) -> list[TurnOutput]:
  """The outputs as the user hears them through the gate (module docstring), given a turn when
  it opens after `user_speech_s` and at each of `given`'s times."""
  reply_wait = timing.to_ms(REPLY_WINDOW_S) // chunk_ms
  reply_end = math.ceil(timing.to_ms(GATE_SILENCE_S) / chunk_ms)
  answer_turns = lambda times_s: {timing.first_answer_turn(t, chunk_ms) for t in times_s}
  typed_turns = answer_turns(given.typed_s)
  result_turns = answer_turns(given.results_s)
  held: collections.deque[TurnOutput] = collections.deque()
  reply_due = None  # the last micro-turn in which a reply to the latest turn given may start
  replying, silent_turns, was_open = False, 0, True
  gated = []
  for out in outputs:
    is_open = gate_open(out.turn, user_speech_s, chunk_ms)
    typed = out.turn in typed_turns
    if typed or (was_open and not is_open):  # the user starts a turn
      held.clear()
      replying = False
    if typed or out.turn in result_turns or (is_open and not was_open):  # a turn is given
      reply_due = out.turn + reply_wait
    was_open = is_open
    played = None
    if not is_open:
      if _speaks(out):
        held.append(out)
    else:
      heard = out
      if held:
        held.append(out)
        heard = held.popleft()
        if not any(_speaks(o) for o in held):
          held.clear()
      speaks = _speaks(heard)
      if not replying and reply_due is not None and out.turn <= reply_due and speaks:
        replying, reply_due, silent_turns = True, None, 0
      if replying:
        played = heard
        silent_turns = 0 if speaks else silent_turns + 1
        replying = silent_turns < reply_end
    gated.append(_play(out, played))
  return gated


def gate_changed(outputs: Sequence[TurnOutput], gated: Sequence[TurnOutput]) -> bool:
  """Whether the cascade changed what the user hears in any micro-turn of an episode."""
  return any(not (np.array_equal(out.text_out, heard.text_out)
                  and np.array_equal(out.audio_out, heard.audio_out))
             for out, heard in zip(outputs, gated, strict=True))


def _play(now: TurnOutput, played: TurnOutput | None) -> TurnOutput:
  """`now` with the speech of `played` (silence when None) in its model text and audio slots."""
  if played is None:
    return dataclasses.replace(now, text_out=np.full_like(now.text_out, SIL),
                               audio_out=np.full_like(now.audio_out, SILENCE_BIN))
  return dataclasses.replace(now, text_out=played.text_out, audio_out=played.audio_out)
