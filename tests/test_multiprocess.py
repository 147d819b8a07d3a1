"""Two processes with 4 CPU devices each train one model, checkpoint and restore."""

import os
import subprocess
import sys

from test_trainer import REPO, SMALL, TINY, read_metrics


def test_two_processes_train_checkpoint_and_restore(tmp_path):
  workdir = tmp_path / "w"
  # No persistent compilation cache: only process 0 writes it, so the processes would mix cached
  # and freshly compiled executables (a run doing that stalled once here, cause not established).
  env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
  env.update(DEVICES_PER_PROCESS="4", JAX_INTERACT=f"{sys.executable} -m jax_interact.cli")
  command = [str(REPO / "launch" / "local_multiprocess.sh"), "2", "train", "--config", TINY,
             "--workdir", str(workdir), *(f"--config.{o}" for o in SMALL),
             "--config.mesh.data=2", "--config.mesh.fsdp=4", "--config.mesh.tensor=1",
             "--config.checkpoint.every_steps=2",
             "--config.train.steps=3"]

  trained = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True,
                           timeout=600, check=False)
  assert trained.returncode == 0, trained.stderr[-3000:]
  assert "over 8 cpu devices, 2 process(es)" in trained.stdout
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["2", "3"]
  assert [row["step"] for row in read_metrics(workdir)] == [1, 2, 3]

  # Both processes read their shards of the sharded checkpoint back.
  restored = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True,
                            timeout=600, check=False)
  assert restored.returncode == 0, restored.stderr[-3000:]
  assert "resuming from step 3" in restored.stdout
