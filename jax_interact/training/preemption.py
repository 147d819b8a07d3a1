"""Preemption: SIGTERM (what a TPU pod or a spot VM sends before it goes away) or SIGINT stops
training at a step every process agrees on, once that step is checkpointed.

A single process handles both signals itself: the first is noted and the trainer stops after the
step in progress; a second acts at once, as if nothing handled the first. Processes joined by
`jax.distributed` use JAX's preemption service instead: the coordination service catches SIGTERM
in any process and picks the step at which all of them stop
(`multihost_utils.reached_preemption_sync_point`); SIGINT is passed on to it as SIGTERM.
A time limit stops training the same way once it has run that long (a process joined by
`jax.distributed` sends itself SIGTERM, so the service still picks the common step).
"""

from __future__ import annotations

import os
import signal
import threading

import jax
from jax.experimental import multihost_utils

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preemption:
  """Context manager; `reached(step)`, called after every step by every process, says whether
  to stop after that step: after a signal, or once `time_limit_s` (0: none) have passed since
  entering. Signal handlers are installed only from the main thread."""

  def __init__(self, time_limit_s: float = 0.0):
    self.signal: int | None = None
    self.time_up = False
    self._previous: dict[int, object] = {}
    self._distributed = False
    self._timer = None
    if time_limit_s > 0:
      self._timer = threading.Timer(time_limit_s, self._stop_in_time)
      self._timer.daemon = True

  def __enter__(self) -> Preemption:
    self._distributed = jax.distributed.is_initialized()
    if threading.current_thread() is threading.main_thread():
      if self._distributed:  # JAX's notifier owns SIGTERM
        self._previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._pass_on)
      else:
        self._previous = {s: signal.signal(s, self._note) for s in SIGNALS}
    if self._timer is not None:
      self._timer.start()
    return self

  def __exit__(self, *exc) -> None:
    if self._timer is not None:
      self._timer.cancel()
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous = {}

  def _note(self, signum: int, frame) -> None:
    if self.signal is not None:
      signal.signal(signum, self._previous[signum])
      os.kill(os.getpid(), signum)
      return
    self.signal = signum

  def _pass_on(self, signum: int, frame) -> None:
    self.signal = signum
    os.kill(os.getpid(), signal.SIGTERM)

  def _stop_in_time(self) -> None:
    self.time_up = True
    if self._distributed:
      os.kill(os.getpid(), signal.SIGTERM)

  def reached(self, step: int) -> bool:
    if self._distributed:
      return multihost_utils.reached_preemption_sync_point(step)
    return self.signal is not None or self.time_up
