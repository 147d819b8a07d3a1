"""Streaming sessions over recorded episodes, many at once in the engine's rows.

Each episode is played to the engine chunk by chunk from micro-turn 0 (its user audio, video
frames and typed text, as `jax-interact stream` plays it). A row that finishes its episode is
evicted and refilled with the next one, so the batch stays full. The first `<delegate>` a session
emits starts a replay of its episode's background job (background.py): the orchestrator
(jax_interact/background/orchestrator.py) runs it with a `RecordedWorker`, whose tokens enter the
row's background slots in the micro-turns they arrive.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Iterator

from jax_interact.background.orchestrator import Orchestrator
from jax_interact.background.workers import RecordedWorker
from jax_interact.inference import engine as engine_lib
from jax_interact.inference.chunks import episode_chunks
from jax_interact.streams.episode import Episode
from jax_interact.streams.tokenizer import Tokenizer


@dataclasses.dataclass
class _Session:
  episode: Episode
  chunks: list[engine_lib.Chunk]
  outputs: list[engine_lib.TurnOutput] = dataclasses.field(default_factory=list)


def stream_episodes(engine: engine_lib.Engine, episodes: Iterable[Episode], tokenizer: Tokenizer
                    ) -> Iterator[tuple[Episode, list[engine_lib.TurnOutput]]]:
  """Yields (episode, its outputs one per micro-turn) as sessions finish."""
  layout = engine.layout
  orchestrator = Orchestrator(engine, None, tokenizer)
  pending = iter(episodes)
  live: dict[int, _Session] = {}

  def refill() -> None:
    while len(live) < engine.batch_size:
      episode = next(pending, None)
      if episode is None:
        return
      row = orchestrator.add(f"{episode.task}/{episode.index}", RecordedWorker(episode, tokenizer))
      live[row] = _Session(episode, episode_chunks(episode, layout, tokenizer))

  refill()
  while live:
    chunks = {row: session.chunks[len(session.outputs)] for row, session in live.items()}
    for row, out in orchestrator.step(chunks).items():
      live[row].outputs.append(out)
    for row in [r for r, s in live.items() if len(s.outputs) == len(s.chunks)]:
      session = live.pop(row)
      orchestrator.evict(row)
      yield session.episode, session.outputs
    refill()
