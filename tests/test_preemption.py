"""Preemption signals and data workers: a stopped trainer saves its step, and no data worker
outlives its trainer however the trainer ends."""

import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import pytest
from test_checkpoint_resume import committed_steps
from test_dataset import write_tiny_dataset
from test_trainer import REPO, SMALL, TINY, read_metrics

from data_pipelines import worker_lifetime
from jax_interact import config as config_lib
from jax_interact import trainer
from jax_interact.training import preemption

WORKERS = 2


def test_a_signal_is_noted_and_a_second_one_acts_at_once():
  # Python's own SIGINT handler before, whatever an earlier test in this worker left installed.
  outer = signal.signal(signal.SIGINT, signal.default_int_handler)
  try:
    with pytest.raises(KeyboardInterrupt):
      with preemption.Preemption() as preempted:
        assert not preempted.reached(1)
        os.kill(os.getpid(), signal.SIGINT)
        wait_for(lambda: preempted.reached(1))
        assert preempted.signal == signal.SIGINT
        os.kill(os.getpid(), signal.SIGINT)  # the previous handler: KeyboardInterrupt
        wait_for(lambda: False, timeout_s=5)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
  finally:
    signal.signal(signal.SIGINT, outer)


def test_a_time_limit_stops_training_at_a_saved_step(tmp_path, capsys):
  with preemption.Preemption(time_limit_s=0.2) as preempted:
    assert not preempted.reached(1)
    wait_for(lambda: preempted.reached(1))
    assert preempted.time_up and preempted.signal is None

  # Compiling alone outlasts the limit: the run stops after its first step, checkpointed.
  config = config_lib.load(TINY, SMALL + ["train.steps=1000", "train.time_limit_s=0.5"])
  stopped_at = trainer.train(config, tmp_path)
  assert 1 <= stopped_at < 1000
  assert committed_steps(tmp_path) == [stopped_at]
  assert capsys.readouterr().out.splitlines()[-1] == (
      f"train.time_limit_s=0.5 reached: stopped after step {stopped_at}, whose checkpoint is "
      "saved; run the same command to continue")


def wait_for(condition, timeout_s: float = 60.0) -> None:
  deadline = time.monotonic() + timeout_s
  while not condition():
    assert time.monotonic() < deadline, f"timed out after {timeout_s:.0f} s"
    time.sleep(0.05)


def wait_for_workers(run: subprocess.Popen) -> set[int]:
  """The trainer's processes once its data workers have spawned. A trainer starting on a
  loaded machine (a test run beside a training) takes minutes to import, featurize and spawn."""
  wait_for(lambda: run.poll() is not None or len(spawned_workers(run.pid)) == WORKERS,
           timeout_s=300)
  assert run.poll() is None, f"the trainer exited ({run.returncode}) before its workers spawned"
  return descendants(run.pid)


def descendants(pid: int) -> set[int]:
  """Every live process below `pid`."""
  children: dict[int, list[int]] = {}
  for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
    try:
      fields = stat.read_text().rsplit(")", 1)[1].split()
    except OSError:  # the process ended meanwhile
      continue
    children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
  found, todo = set(), [pid]
  while todo:
    for child in children.get(todo.pop(), []):
      found.add(child)
      todo.append(child)
  return found


def alive(pids: set[int]) -> set[int]:
  """Those of `pids` still running (zombies, already ended, excluded)."""
  running = set()
  for pid in pids:
    try:
      state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
      continue
    if state != "Z":
      running.add(pid)
  return running


def spawned_workers(pid: int) -> set[int]:
  """multiprocessing's spawned workers below `pid` (Grain's, a pool's; not its resource
  tracker)."""
  workers = set()
  for child in descendants(pid):
    try:
      command = pathlib.Path(f"/proc/{child}/cmdline").read_bytes()
    except OSError:
      continue
    if b"multiprocessing.spawn" in command:
      workers.add(child)
  return workers


def test_data_workers_end_with_their_trainer_however_it_ends(tmp_path):
  write_tiny_dataset(tmp_path / "data", 4)
  workdir = tmp_path / "w"
  overrides = [o for o in SMALL if o != "data.source=random"] + [
      f"data.dir={tmp_path / 'data'}", f"data.num_workers={WORKERS}"]
  command = [sys.executable, "-m", "jax_interact.cli", "train", "--config", TINY,
             "--workdir", str(workdir), *(f"--config.{o}" for o in overrides)]

  # SIGTERM: the trainer saves the step it is at and exits 0, its workers with it.
  run = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         text=True)
  workers = wait_for_workers(run)
  run.send_signal(signal.SIGTERM)
  out, _ = run.communicate(timeout=300)
  assert run.returncode == 0
  stopped = [line for line in out.splitlines() if line.startswith("preempted:")]
  assert len(stopped) == 1
  step = read_metrics(workdir)[-1]["step"]
  assert f"stopped after step {step}, whose checkpoint is saved" in stopped[0]
  assert (workdir / "checkpoints" / str(step)).is_dir()
  wait_for(lambda: not alive(workers))

  # SIGKILL: nothing runs in the trainer, yet its workers notice and end.
  run = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
  workers = wait_for_workers(run)
  run.send_signal(signal.SIGKILL)
  run.wait()
  wait_for(lambda: not alive(workers))


def test_pool_workers_start_with_one_numerical_thread_each(monkeypatch):
  monkeypatch.setenv("OMP_NUM_THREADS", "4")  # the user's own setting, theirs again afterwards
  monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
  with worker_lifetime.pool(1) as pool:
    seen = list(pool.map(os.getenv, ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"]))
  assert seen == ["1", "1"]
  assert os.environ["OMP_NUM_THREADS"] == "4" and "OPENBLAS_NUM_THREADS" not in os.environ


def test_a_worker_pool_stops_however_its_block_ends():
  """Pool workers ignore SIGTERM (their parent decides when they stop), so the pool must stop
  them by telling them, at the end of a block that completes or raises, and not hang."""
  before = descendants(os.getpid())
  outcomes = []

  def run(fail: bool) -> None:
    # One core for this thread and the workers it spawns, where multiprocessing.Pool.terminate
    # hung most often: its workers wait on a queue lock it holds, ignoring its SIGTERM.
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    try:
      with worker_lifetime.pool(2) as pool:
        squares = list(pool.map(pow, range(40), [2] * 40, chunksize=4))
        if fail:
          raise RuntimeError("the consumer failed")
      outcomes.append(squares == [i * i for i in range(40)])
    except RuntimeError:
      outcomes.append("raised")

  for fail in (False, True) * 3:
    thread = threading.Thread(target=run, args=(fail,), daemon=True)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive(), f"the pool hung at the end of a block (fail={fail})"
  assert outcomes == [True, "raised"] * 3
  wait_for(lambda: not alive(spawned_workers(os.getpid()) - before), timeout_s=30)

