"""Streaming sessions over recorded episodes, many at once in the engine's rows.

Each episode is played to the engine chunk by chunk from micro-turn 0 (its user audio, video
frames and typed text, as `jax-interact stream` plays it). A row that finishes its episode is
evicted and refilled with the next one, so the batch stays full. The first `<delegate>` a session
emits starts a replay of its episode's background job (background.py), whose tokens are pushed
into the row's background slots in the micro-turns they arrive.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Iterator

import numpy as np

from data_pipelines.episode import Episode
from jax_interact.evaluation import background
from jax_interact.inference import engine as engine_lib
from jax_interact.inference.stream import episode_chunks
from jax_interact.streams import timing
from jax_interact.streams.tokenizer import DELEGATE, Tokenizer


@dataclasses.dataclass
class _Session:
  episode: Episode
  chunks: list[engine_lib.Chunk]
  outputs: list[engine_lib.TurnOutput] = dataclasses.field(default_factory=list)
  background: dict[int, list[int]] | None = None  # input micro-turn -> arriving tokens


def stream_episodes(engine: engine_lib.Engine, episodes: Iterable[Episode], tokenizer: Tokenizer
                    ) -> Iterator[tuple[Episode, list[engine_lib.TurnOutput]]]:
  """Yields (episode, its outputs one per micro-turn) as sessions finish."""
  layout = engine.layout
  pending = iter(episodes)
  live: dict[int, _Session] = {}

  def refill() -> None:
    while len(live) < engine.batch_size:
      episode = next(pending, None)
      if episode is None:
        return
      row = engine.add(f"{episode.task}/{episode.index}")
      live[row] = _Session(episode, episode_chunks(episode, layout, tokenizer))

  refill()
  while live:
    chunks = {}
    for row, session in live.items():
      turn = len(session.outputs)
      if session.background and turn in session.background:
        engine.push_background(row, session.background.pop(turn))
      chunks[row] = session.chunks[turn]
    for row, out in engine.step(chunks).items():
      session = live[row]
      session.outputs.append(out)
      if session.background is None and np.any(out.text_out == DELEGATE):
        delegate_s = timing.output_window_s(out.turn, layout.chunk_ms)[0]
        session.background = background.schedule(session.episode, delegate_s, tokenizer,
                                                 layout.chunk_ms)
    for row in [r for r, s in live.items() if len(s.outputs) == len(s.chunks)]:
      session = live.pop(row)
      engine.evict(row)
      yield session.episode, session.outputs
    refill()
