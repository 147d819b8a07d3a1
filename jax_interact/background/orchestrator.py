"""The orchestrator (SPEC §5): the one place that turns a `<delegate>` into background-slot tokens.

It wraps an engine (`engine.Engine`) and keeps, for every session, the timestamped transcript
(transcript.py) and at most one background job. Each micro-turn:
  1. every running job is polled without blocking; the tokens that arrived are queued into the
     session's background slots (`Engine.push_background`, first in, first out): `<bg>` before
     the first token, `</bg>` when the job ends, is cancelled or times out;
  2. the engine steps;
  3. the session's typed text and text outputs are added to its transcript; when `text_out`
     holds `<delegate>` and no job runs, the context package is rendered and submitted.
The micro-turn loop never waits on a worker. Time is stream time: a job submitted after
micro-turn t started at (t+1)T (when its `<delegate>` is spoken); before micro-turn u is stepped,
it has run (u - t)T, and tokens it produced by then enter micro-turn u. A job still running
after `timeout_s` of stream time is cancelled.

`Orchestrator` has the engine's `step(chunks)` and `layout`, so `engine.run(orchestrator, ...)`
drives it like an engine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import numpy as np

from jax_interact.background import workers
from jax_interact.background.transcript import Transcript
from jax_interact.background.workers import Job, Worker
from jax_interact.errors import InputError
from jax_interact.inference.engine import Chunk, Engine, TurnOutput
from jax_interact.streams.tokenizer import BG, BG_END, DELEGATE, Tokenizer


@dataclasses.dataclass
class _Running:
  job: Job
  started_turn: int  # first micro-turn whose input may hold the job's tokens
  opened: bool = False  # `<bg>` already queued


@dataclasses.dataclass
class _Session:
  worker: Worker
  transcript: Transcript
  next_turn: int = 0  # the micro-turn the session steps next
  running: _Running | None = None
  events: list[dict] = dataclasses.field(default_factory=list)


class Orchestrator:
  """`Orchestrator(engine, worker, tokenizer)`; sessions are added here, not on the engine."""

  def __init__(self, engine: Engine, worker: Worker | None, tokenizer: Tokenizer, *,
               timeout_s: float = 30.0):
    self.engine = engine
    self.layout = engine.layout
    self.worker = worker
    self.tokenizer = tokenizer
    self.timeout_s = timeout_s
    self.sessions: dict[int, _Session] = {}

  # Sessions ----------------------------------------------------------------------------------

  def add(self, session_id: str, worker: Worker | None = None) -> int:
    """Starts a session (in a free engine row, which is returned) served by `worker` (default:
    the orchestrator's)."""
    if worker is None and self.worker is None:
      raise ValueError("no worker for this session and no default worker")
    row = self.engine.add(session_id)
    self.sessions[row] = _Session(worker or self.worker, Transcript(self.layout.chunk_ms))
    return row

  def evict(self, row: int) -> None:
    self.cancel(row)
    del self.sessions[row]
    self.engine.evict(row)

  def transcript(self, row: int) -> Transcript:
    return self.sessions[row].transcript

  def events(self, row: int) -> list[dict]:
    """The session's jobs as {"type", "micro_turn", "time_s", ...}: "delegate" (with the
    package), "result" (tokens that arrived for that micro-turn's bg slots), "result_end" (with
    how the job ended: done, cancelled or timeout)."""
    return self.sessions[row].events

  def pending(self, row: int) -> bool:
    """Whether a background job of the session is running."""
    return self.sessions[row].running is not None

  # Jobs --------------------------------------------------------------------------------------

  def delegate(self, row: int, task: str | None = None) -> bool:
    """Submits a job for the session's context package now, as its `<delegate>` would; False
    when a job is already running or the worker declines."""
    session = self.sessions[row]
    if session.running is not None:
      return False
    turn = session.next_turn
    package = session.transcript.package(self.tokenizer, task)
    job = session.worker.submit(package)
    if job is None:
      return False
    session.running = _Running(job, started_turn=turn)
    self._event(row, "delegate", turn, package=package)
    return True

  def cancel(self, row: int) -> None:
    """Cancels the session's job; `</bg>` closes it before the next micro-turn."""
    running = self.sessions[row].running
    if running is not None:
      running.job.cancel()

  def _event(self, row: int, kind: str, turn: int, **fields) -> None:
    self.sessions[row].events.append({"type": kind, "micro_turn": turn,
                                      "time_s": turn * self.layout.chunk_ms / 1000, **fields})

  def _deliver(self, row: int, turn: int) -> None:
    """Queues what the session's job produced before micro-turn `turn` is stepped."""
    running = self.sessions[row].running
    elapsed_s = (turn - running.started_turn + 1) * self.layout.chunk_ms / 1000
    ids, finished = running.job.poll(elapsed_s)
    if ids:
      self.engine.push_background(row, ([] if running.opened else [BG]) + ids)
      running.opened = True
      self._event(row, "result", turn, ids=ids, text=self.tokenizer.decode(ids))
    if finished or running.job.cancelled:
      self._close(row, turn, "cancelled" if running.job.cancelled else "done")
    elif elapsed_s >= self.timeout_s:
      running.job.cancel()
      self._close(row, turn, "timeout")

  def _close(self, row: int, turn: int, how: str) -> None:
    running = self.sessions[row].running
    self.engine.push_background(row, ([] if running.opened else [BG]) + [BG_END])
    self.sessions[row].running = None
    self._event(row, "result_end", turn, ending=how)

  # Stepping ----------------------------------------------------------------------------------

  def step(self, chunks: Mapping[int, Chunk | None]) -> dict[int, TurnOutput]:
    """One micro-turn of the engine with background jobs delivered and started."""
    for row, session in self.sessions.items():
      if session.running is not None:
        self._deliver(row, session.next_turn)
    outputs = self.engine.step(chunks)
    for row, out in outputs.items():
      session = self.sessions[row]
      session.next_turn = out.turn + 1
      chunk = chunks.get(row)
      session.transcript.record_turn(out.turn, chunk.text_ids if chunk else (),
                                     out.user_transcript, out.text_out)
      if np.any(out.text_out == DELEGATE):
        self.delegate(row)
    return outputs

  def close(self) -> None:
    """Cancels every job and stops the workers."""
    for row in list(self.sessions):
      self.cancel(row)
    workers = [self.worker] + [s.worker for s in self.sessions.values()]
    for worker in {id(w): w for w in workers if w is not None}.values():
      worker.close()


def open_worker(spec: str, tokenizer: Tokenizer, background_config) -> Worker:
  """The worker `spec` names: `tool:calculator`, `tool:clock`, `tool:slow`, or the workdir of a
  trained background LM (which must share the interaction model's tokenizer)."""
  if spec.startswith("tool:"):
    name = spec.removeprefix("tool:")
    if name not in workers.TOOLS:
      raise InputError("--background", f"got {spec!r}, expected a trained background workdir "
                       f"or one of {['tool:' + t for t in workers.TOOLS]}")
    return workers.tool_worker(name, tokenizer, slow_token_s=background_config.slow_token_s)
  from jax_interact.background.lm_worker import LMWorker
  from jax_interact.inference import trained
  run = trained.load(spec)
  if run.config.model.kind != "background":
    raise InputError(f"{spec}/config.json", f"model.kind is {run.config.model.kind!r}, expected "
                     "'background' (train with configs/background_tiny.py)")
  pieces = lambda t: [t.piece(i) for i in range(t.size)]
  if pieces(run.tokenizer) != pieces(tokenizer):
    raise InputError(spec, "its tokenizer differs from the interaction model's; train both on "
                     "the same dataset")
  devices = jax.devices()
  return LMWorker(run.model, run.tokenizer, context_len=run.config.data.seq_len,
                  max_new_tokens=run.config.background.max_new_tokens,
                  device=devices[-1] if len(devices) > 1 else None)
