"""Resuming: a run killed (SIGKILL) or preempted (SIGTERM) and started again logs, bit for bit,
the losses of an unbroken run (and the held-out loss of its parameters' moving average); an
unreadable checkpoint is named in one line and training falls back to the one before."""

import signal
import subprocess
import sys
import time

import pytest
from test_trainer import REPO, SMALL, STEPS, TINY, read_metrics

from jax_interact import cli
from jax_interact import config as config_lib
from jax_interact import trainer
from jax_interact.streams import tokenizer


def committed_steps(workdir) -> list[int]:
  """Steps whose checkpoint Orbax has finished (renamed from its temporary name)."""
  directory = workdir / "checkpoints"
  if not directory.exists():
    return []
  return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


# The held-out loss is of the parameters' moving average, which resuming must restore too.
OVERRIDES = SMALL + ["checkpoint.every_steps=2", "train.ema_decay=0.5", "train.eval_batches=1",
                     f"train.eval_every_steps={STEPS // 2}"]


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory) -> list[dict]:
  """The metrics of the run the stopped ones must reproduce."""
  workdir = tmp_path_factory.mktemp("unbroken")
  trainer.train(config_lib.load(TINY, OVERRIDES), workdir)
  return read_metrics(workdir)


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=lambda s: s.name)
def test_stopped_run_resumes_bit_for_bit(unbroken, tmp_path, stop):
  workdir = tmp_path / "stopped"
  command = [sys.executable, "-m", "jax_interact.cli", "train", "--config", TINY,
             "--workdir", str(workdir), *(f"--config.{o}" for o in OVERRIDES)]
  with open(tmp_path / "stderr.txt", "w") as stderr:
    run = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=stderr, text=True)
    if stop == signal.SIGKILL:
      while not committed_steps(workdir) and run.poll() is None:
        time.sleep(0.02)
    else:  # a preemption notice as soon as the trainer is up: it stops after the first step
      while not run.stdout.readline().startswith("starting in"):
        assert run.poll() is None, (tmp_path / "stderr.txt").read_text()[-2000:]
    run.send_signal(stop)
    out, _ = run.communicate()
  stopped_at = committed_steps(workdir)[-1]
  assert stopped_at < STEPS, "the run finished before it could be stopped"
  if stop == signal.SIGTERM:
    assert run.returncode == 0, (tmp_path / "stderr.txt").read_text()[-2000:]
    assert out.splitlines()[-1] == (f"preempted: stopped after step {stopped_at}, whose "
                                    "checkpoint is saved; run the same command to continue")

  resumed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert f"resuming from step {stopped_at}" in resumed.stdout
  rows = read_metrics(workdir)
  assert [row["step"] for row in rows] == list(range(1, STEPS + 1))
  assert [row["loss"] for row in rows] == [row["loss"] for row in unbroken]
  assert [row["grad_norm"] for row in rows] == [row["grad_norm"] for row in unbroken]
  held_out = [(row["step"], row["eval_loss"]) for row in rows if "eval_loss" in row]
  assert held_out == [(r["step"], r["eval_loss"]) for r in unbroken if "eval_loss" in r]
  assert [step for step, _ in held_out] == [STEPS // 2, STEPS]


def test_an_unreadable_checkpoint_is_named_and_training_resumes_from_the_one_before(tmp_path,
                                                                                   capsys):
  workdir = tmp_path / "w"
  config = config_lib.load(TINY, SMALL + ["train.steps=4", "checkpoint.every_steps=2"])
  trainer.train(config, workdir)
  tokenizer.train_tokenizer(["a few words to serve with"] * 8, str(workdir / tokenizer.FILENAME),
                            vocab_size=32)
  # Every array data file cut in half: which file holds the model's weights (what serving
  # reads) rather than the optimizer's varies with their compressed sizes.
  arrays = [p for p in (workdir / "checkpoints" / "4" / "state").rglob("*")
            if p.is_file() and p.parent.name == "d"]
  assert arrays
  for array in arrays:
    array.write_bytes(array.read_bytes()[:array.stat().st_size // 2])
  capsys.readouterr()

  # Serving names the step and where it failed, in one line.
  code = cli.main(["stream", "--workdir", str(workdir), "--audio", str(tmp_path / "in.wav"),
                   "--out", str(tmp_path / "out")])
  err = capsys.readouterr().err
  assert code == 2 and err.count("\n") == 1
  assert err.startswith(f"error: {workdir / 'checkpoints' / '4'}")
  assert "checkpoint 4 cannot be read" in err

  # Training sets it aside and continues from step 2.
  trainer.train(config, workdir)
  out, err = capsys.readouterr()
  assert "checkpoint 4 cannot be read" in err and "resuming from step 2" in out
  assert committed_steps(workdir) == [2, 4]
  assert (workdir / "unreadable_checkpoints" / "4" / "state").is_dir()
