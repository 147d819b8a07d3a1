"""Data worker processes end with the process that started them, however it ends.

A trainer killed with SIGKILL runs no cleanup, so the processes it spawned (Grain's prefetch
workers, the featurizing and generating pools) would live on as orphans holding their memory.
Each worker runs `follow_parent` first (Grain's worker_init_fn, `pool`'s initializer): a daemon
thread ends it as soon as its parent is gone.
It also ignores SIGINT and SIGTERM, which a terminal's Ctrl-C or a scheduler's preemption sends
to the whole process group: the parent decides when its workers stop (it checkpoints first, see
jax_interact/training/preemption.py), and they stop with it. So a pool of them is shut down by
telling its workers to stop (`pool`), never by SIGTERM, which `multiprocessing.Pool.terminate`
relies on: it would wait forever for a worker that ignores it.
A pool already runs one worker per core, so its workers start with one thread each for the
numerical libraries (BLAS, OpenMP), whose own pools would otherwise start a thread per core in
every worker: two workers featurizing 648 episodes on 2 cores took 30.2 s so, 15.2 s with one
thread each, and 24.0 s in one process.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence

POLL_S = 0.5
ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
_environment_lock = threading.Lock()
_pools_open = 0
_environment_before: dict[str, str | None] = {}


def follow_parent(parent: int, *_) -> None:
  """Makes this worker process end with process `parent`, the one that spawned it (pass
  `os.getpid()` there: by the time a worker runs this, its parent may be gone already)."""
  for signum in (signal.SIGINT, signal.SIGTERM):
    signal.signal(signum, signal.SIG_IGN)

  def exit_when_orphaned() -> None:
    while os.getppid() == parent:
      time.sleep(POLL_S)
    os._exit(1)  # nothing to flush: the parent that wanted the results is gone

  threading.Thread(target=exit_when_orphaned, name="follow-parent", daemon=True).start()


@contextlib.contextmanager
def _one_thread_per_worker() -> Iterator[None]:
  """ONE_THREAD in this process's environment while any pool is open (the workers spawned
  meanwhile inherit it); the environment as it was once the last one closes."""
  global _pools_open
  with _environment_lock:
    if _pools_open == 0:
      _environment_before.update({name: os.environ.get(name) for name in ONE_THREAD})
      os.environ.update(ONE_THREAD)
    _pools_open += 1
  try:
    yield
  finally:
    with _environment_lock:
      _pools_open -= 1
      if _pools_open == 0:
        for name, value in _environment_before.items():
          if value is None:
            os.environ.pop(name, None)
          else:
            os.environ[name] = value


@contextlib.contextmanager
def pool(workers: int) -> Iterator[concurrent.futures.ProcessPoolExecutor]:
  """`workers` spawned processes that end with this one (`follow_parent`), with one numerical
  thread each (ONE_THREAD). When the block ends, however it ends, jobs not started are
  cancelled and the workers stop once their running job is done."""
  with _one_thread_per_worker():
    executor = concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"), initializer=follow_parent,
        initargs=(os.getpid(),))
    try:
      yield executor
    finally:
      executor.shutdown(wait=True, cancel_futures=True)


def ordered_map(fn: Callable, jobs: Sequence, workers: int, *, jobs_per_worker: int = 1,
                chunksize: int = 1) -> Iterator:
  """`fn` of each job, in order: in up to `workers` processes of `pool` (0: one per core), no
  more than one per `jobs_per_worker` jobs since spawning one costs seconds, or in this process
  when that leaves one. `fn` and the jobs must pickle."""
  workers = min(workers or os.cpu_count() or 1, -(-len(jobs) // jobs_per_worker))
  if workers <= 1:
    yield from map(fn, jobs)
    return
  with pool(workers) as executor:
    yield from executor.map(fn, jobs, chunksize=chunksize)
