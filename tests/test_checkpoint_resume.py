"""A run killed with SIGKILL and started again logs, bit for bit, the losses of an unbroken run."""

import signal
import subprocess
import sys
import time

import pytest
from test_trainer import REPO, SMALL, STEPS, TINY, read_metrics
from test_trainer import compilation_cache, compilation_cache_dir  # noqa: F401 (fixtures)

from jax_interact import config as config_lib
from jax_interact import trainer


def committed_steps(workdir) -> list[int]:
  """Steps whose checkpoint Orbax has finished (renamed from its temporary name)."""
  directory = workdir / "checkpoints"
  if not directory.exists():
    return []
  return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


@pytest.mark.usefixtures("compilation_cache")
def test_killed_run_resumes_bit_for_bit(tmp_path):
  overrides = SMALL + ["checkpoint.every_steps=2"]
  trainer.train(config_lib.load(TINY, overrides), tmp_path / "unbroken")

  workdir = tmp_path / "killed"
  command = [sys.executable, "-m", "jax_interact.cli", "train", "--config", TINY,
             "--workdir", str(workdir), *(f"--config.{o}" for o in overrides)]
  run = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  while not committed_steps(workdir) and run.poll() is None:
    time.sleep(0.02)
  run.send_signal(signal.SIGKILL)
  run.wait()
  killed_at = committed_steps(workdir)[-1]
  assert killed_at < STEPS, "the run finished before it could be killed"

  resumed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert f"resuming from step {killed_at}" in resumed.stdout
  rows, expected = read_metrics(workdir), read_metrics(tmp_path / "unbroken")
  assert [row["step"] for row in rows] == list(range(1, STEPS + 1))
  assert [row["loss"] for row in rows] == [row["loss"] for row in expected]
  assert [row["grad_norm"] for row in rows] == [row["grad_norm"] for row in expected]
