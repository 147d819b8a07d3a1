"""Baselines scored beside the model, so every number has something to be compared with.

silent      never speaks, never delegates, transcribes nothing.
turn_based  the same model's streamed outputs behind a VAD-style harness, the classic cascade
            that lets a system speak only once the user has been silent for GATE_SILENCE_S.
            The gate for the output of micro-turn t is open when the user spoke at no time in
            the last GATE_SILENCE_S of input heard by then, [(t+1)T - 0.6 s, (t+1)T) (an oracle
            VAD: user speech from the episode's user words). An output holding speech (a word
            token or a voiced audio token) produced while the gate is closed is held in a FIFO
            (silent ones are dropped); while the gate is open the FIFO plays first, one output
            segment per micro-turn, and new outputs queue behind it (so pauses within held
            speech are kept), until only silence is left queued, which is dropped. Closed, the
            gate plays silence. The user transcript passes ungated, and the background job
            starts at the model's own `<delegate>` (the runtime acts on it, nobody hears it).
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Sequence

import numpy as np

from jax_interact.evaluation import transcripts
from jax_interact.inference.engine import TurnOutput
from jax_interact.models.decisions import is_word
from jax_interact.streams import timing
from jax_interact.streams.dmel import SILENCE_BIN, voiced
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


def turn_based(outputs: Sequence[TurnOutput], user_speech_s: Sequence[transcripts.Interval],
               chunk_ms: int) -> list[TurnOutput]:
  """The outputs as the user hears them through the gate (module docstring), one per turn."""
  held: collections.deque[TurnOutput] = collections.deque()
  gated = []
  for out in outputs:
    if not gate_open(out.turn, user_speech_s, chunk_ms):
      if _speaks(out):
        held.append(out)
      played = None
    elif held:
      held.append(out)
      played = held.popleft()
      if not any(_speaks(o) for o in held):
        held.clear()
    else:
      played = out
    gated.append(_play(out, played))
  return gated


def gate_changed(outputs: Sequence[TurnOutput], gated: Sequence[TurnOutput]) -> bool:
  """Whether the gate changed what the user hears in any micro-turn of an episode. In a family
  where it changed nothing in any episode, the turn-based baseline is the model itself there:
  their scores and latencies tie, and no model can beat it."""
  return any(not (np.array_equal(out.text_out, heard.text_out)
                  and np.array_equal(out.audio_out, heard.audio_out))
             for out, heard in zip(outputs, gated, strict=True))


def _play(now: TurnOutput, played: TurnOutput | None) -> TurnOutput:
  """`now` with the speech of `played` (silence when None) in its model text and audio slots."""
  if played is None:
    return dataclasses.replace(now, text_out=np.full_like(now.text_out, SIL),
                               audio_out=np.full_like(now.audio_out, SILENCE_BIN))
  return dataclasses.replace(now, text_out=played.text_out, audio_out=played.audio_out)
