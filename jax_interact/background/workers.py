"""Background workers (SPEC §5): one protocol for the JAX background LM and plain tool workers.

A worker takes a context package (transcript.py) and returns a `Job` (or None when it declines);
the job's result tokens stream back through a thread-safe queue that the orchestrator drains
without blocking (`Job.poll`). `Job.cancel` asks the producer to stop. Timeouts are the
orchestrator's: it stops polling a job that ran too long and closes it.

Tool workers answer in words, encoded with the session's tokenizer:
  calculator  "what is 17 times 23" -> "17 times 23 is 391" (the synthetic `delegate` results)
  clock       the local time, "the time is 14 05"
  slow        repeats the task one token every `seconds_per_token` (latency benchmarks, tests)
`RecordedWorker` replays an episode's recorded jobs at their recorded delays (evaluation).
"""

from __future__ import annotations

import datetime
import queue
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from jax_interact.streams import timing
from jax_interact.streams.episode import Episode
from jax_interact.streams.tokenizer import Tokenizer

_DONE = object()


class Job:
  """One background job: tokens are `put` by a producer thread and `poll`ed by the orchestrator."""

  def __init__(self, task: str):
    self.task = task
    self._queue: queue.SimpleQueue = queue.SimpleQueue()
    self._cancelled = threading.Event()

  # Producer side.
  def put(self, ids: Sequence[int]) -> None:
    for i in ids:
      self._queue.put(int(i))

  def finish(self) -> None:
    self._queue.put(_DONE)

  @property
  def cancelled(self) -> bool:
    return self._cancelled.is_set()

  def wait_cancelled(self, seconds: float) -> bool:
    """Sleeps up to `seconds`, waking early (True) if the job is cancelled."""
    return self._cancelled.wait(seconds)

  # Orchestrator side.
  def poll(self, elapsed_s: float) -> tuple[list[int], bool]:
    """(tokens arrived since the last poll, finished?) without blocking.

    `elapsed_s`: stream seconds since the job started (used by jobs replayed on a schedule).
    """
    del elapsed_s
    ids, finished = [], False
    while True:
      try:
        item = self._queue.get_nowait()
      except queue.Empty:
        break
      if item is _DONE:
        finished = True
        break
      ids.append(item)
    return ids, finished

  def cancel(self) -> None:
    self._cancelled.set()


class Worker(Protocol):
  def submit(self, package: str) -> Job | None:
    """Starts a job for the context package; None if the worker declines (no job)."""

  def close(self) -> None:
    """Stops the worker's threads; pending jobs end."""


def task_of(package: str) -> str:
  """The task line of a context package (the package itself when it has none)."""
  for line in reversed(package.splitlines()):
    if line.startswith("task:"):
      return line.removeprefix("task:").strip()
  return package.strip()


class ToolWorker:
  """A worker answering with words from `answer(package)`, one thread per job.

  Each word is encoded separately (as the data pipeline encodes result words) and its tokens are
  queued one at a time, `seconds_per_token` apart; cancelling stops the job at the next token.
  """

  def __init__(self, answer: Callable[[str], Iterator[str]], tokenizer: Tokenizer,
               seconds_per_token: float = 0.0):
    self._answer = answer
    self._tokenizer = tokenizer
    self._seconds_per_token = seconds_per_token
    self._running: list[tuple[threading.Thread, Job]] = []

  def submit(self, package: str) -> Job:
    job = Job(task_of(package))
    thread = threading.Thread(target=self._produce, args=(job, package), daemon=True)
    self._running = [(t, j) for t, j in self._running if t.is_alive()] + [(thread, job)]
    thread.start()
    return job

  def _produce(self, job: Job, package: str) -> None:
    try:
      for word in self._answer(package):
        for token in self._tokenizer.encode(word):
          if self._seconds_per_token and job.wait_cancelled(self._seconds_per_token):
            return
          if job.cancelled:
            return
          job.put([token])
    finally:
      job.finish()

  def close(self) -> None:
    for thread, job in self._running:
      job.cancel()
      thread.join()
    self._running = []


_OPERATIONS = {
    "plus": lambda a, b: a + b,
    "minus": lambda a, b: a - b,
    "times": lambda a, b: a * b,
}
_QUESTION = re.compile(r"(-?\d+)\s+(plus|minus|times)\s+(-?\d+)")


def calculate(package: str) -> Iterator[str]:
  """Answers the last arithmetic question of the task (else of the package) in words."""
  matches = _QUESTION.findall(task_of(package)) or _QUESTION.findall(package)
  if not matches:
    return iter(["i", "could", "not", "find", "a", "calculation"])
  a, op, b = matches[-1]
  return iter(f"{a} {op} {b} is {_OPERATIONS[op](int(a), int(b))}".split())


def tell_time(package: str) -> Iterator[str]:
  del package
  now = datetime.datetime.now()
  return iter(f"the time is {now.hour} {now.minute:02d}".split())


def repeat_task(package: str) -> Iterator[str]:
  return iter(task_of(package).split() or ["done"])


TOOLS = {"calculator": calculate, "clock": tell_time, "slow": repeat_task}


def tool_worker(name: str, tokenizer: Tokenizer, *, slow_token_s: float = 2.0) -> ToolWorker:
  """The tool worker `name` (a key of TOOLS); `slow` waits `slow_token_s` before each token."""
  return ToolWorker(TOOLS[name], tokenizer, slow_token_s if name == "slow" else 0.0)


class RecordedJob(Job):
  """A job whose tokens arrive at fixed delays after it starts (whole milliseconds of stream
  time, as the timing rule counts them)."""

  def __init__(self, task: str, arrivals: list[tuple[int, list[int]]]):
    super().__init__(task)
    self._arrivals = sorted(arrivals, key=lambda item: item[0])

  def poll(self, elapsed_s: float) -> tuple[list[int], bool]:
    ids = []
    while self._arrivals and self._arrivals[0][0] < timing.to_ms(elapsed_s) and not self.cancelled:
      ids += self._arrivals.pop(0)[1]
    return ids, not self._arrivals or self.cancelled


class RecordedWorker:
  """Replays an episode's background jobs: the k-th submission gets the k-th recorded job, each
  result word arriving as long after the submission as it did after the recorded delegation.
  Declines (None) once the recorded jobs are used up."""

  def __init__(self, episode: Episode, tokenizer: Tokenizer):
    self._jobs = [self._arrivals(job, tokenizer) for job in episode.delegations()]

  @staticmethod
  def _arrivals(job: dict, tokenizer: Tokenizer) -> tuple[str, list[tuple[int, list[int]]]]:
    start_ms = timing.to_ms(float(job["time_s"]))
    return str(job.get("task", "")), [
        (timing.to_ms(float(w["time_s"])) - start_ms, tokenizer.encode(str(w["text"])))
        for w in job.get("result_words", [])]

  def submit(self, package: str) -> Job | None:
    del package
    if not self._jobs:
      return None
    return RecordedJob(*self._jobs.pop(0))

  def close(self) -> None:
    pass
