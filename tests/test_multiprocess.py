"""Two processes with 4 CPU devices each train one model; preempted through one of them, both
save the same step, and the restarted pair continues bit for bit."""

import os
import pathlib
import signal
import subprocess
import sys

from test_preemption import descendants
from test_trainer import REPO, SMALL, TINY, read_metrics

STEPS = 4


def process_with_id(launcher: int, process_id: int) -> int:
  """The pid of the training process launch/local_multiprocess.sh started as `process_id`."""
  for pid in descendants(launcher):
    try:
      environ = pathlib.Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
      continue
    if f"JAX_PROCESS_ID={process_id}".encode() in environ:
      return pid
  raise AssertionError(f"no process {process_id} below {launcher}")


def test_two_processes_train_agree_on_a_preemption_step_and_resume_bit_for_bit(tmp_path):
  # No persistent compilation cache: only process 0 writes it, so the processes would mix cached
  # and freshly compiled executables (a run doing that stalled once here, cause not established).
  env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
  env.update(DEVICES_PER_PROCESS="4", JAX_INTERACT=f"{sys.executable} -m jax_interact.cli")

  def command(workdir):
    return [str(REPO / "launch" / "local_multiprocess.sh"), "2", "train", "--config", TINY,
            "--workdir", str(workdir), *(f"--config.{o}" for o in SMALL),
            "--config.mesh.data=2", "--config.mesh.fsdp=4", "--config.mesh.tensor=1",
            f"--config.checkpoint.every_steps={STEPS}", f"--config.train.steps={STEPS}"]

  unbroken = subprocess.run(command(tmp_path / "unbroken"), env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=600, check=False)
  assert unbroken.returncode == 0, unbroken.stderr[-3000:]
  assert "over 8 cpu devices, 2 process(es)" in unbroken.stdout

  # SIGTERM to process 1 alone: JAX's preemption service stops both after the same step.
  workdir = tmp_path / "preempted"
  with open(tmp_path / "stderr.txt", "w") as stderr:
    run = subprocess.Popen(command(workdir), env=env, cwd=REPO, stdout=subprocess.PIPE,
                           stderr=stderr, text=True)
    while not run.stdout.readline().startswith("starting in"):
      assert run.poll() is None, (tmp_path / "stderr.txt").read_text()[-3000:]
    os.kill(process_with_id(run.pid, 1), signal.SIGTERM)
    out, _ = run.communicate(timeout=600)
  assert run.returncode == 0, (tmp_path / "stderr.txt").read_text()[-3000:]
  saved = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir())
  assert len(saved) == 1 and saved[0] < STEPS
  assert f"preempted: stopped after step {saved[0]}, whose checkpoint is saved" in out

  # Both processes read their shards of the sharded checkpoint back and go on.
  resumed = subprocess.run(command(workdir), env=env, cwd=REPO, capture_output=True, text=True,
                           timeout=600, check=False)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert f"resuming from step {saved[0]}" in resumed.stdout
  rows, expected = read_metrics(workdir), read_metrics(tmp_path / "unbroken")
  assert [row["step"] for row in rows] == list(range(1, STEPS + 1))
  assert [row["loss"] for row in rows] == [row["loss"] for row in expected]
  assert [row["grad_norm"] for row in rows] == [row["grad_norm"] for row in expected]
