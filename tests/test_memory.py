"""Train-step memory: the estimate that sizes configs, and the out-of-memory advice."""

import jax
import pytest

from jax_interact import cli, trainer
from jax_interact import config as config_lib
from jax_interact.models import counting

H200_BYTES = 141e9  # HBM of one H200; about 139 GiB of it usable by XLA


def test_1b_fills_one_h200_with_fused_attention():
  """configs/1b.py as the H200 runs it (cuDNN attention): within the device, most of it used."""
  config = config_lib.load("configs/1b.py", ["model.attention=cudnn"])
  total = counting.train_memory(config, devices=1)["total"]
  assert 0.5 * H200_BYTES < total < 0.85 * H200_BYTES


def test_memory_knobs_lower_the_estimate():
  config = config_lib.load("configs/1b.py", ["model.attention=cudnn"])
  before = counting.train_memory(config, devices=1)["total"]
  for knob in trainer.memory_knobs(config)[:-1]:  # the last one asks for more devices
    changed = config_lib.load("configs/1b.py", ["model.attention=cudnn", knob])
    assert counting.train_memory(changed, devices=1)["total"] < before, knob
  more_devices = counting.train_memory(config_lib.load("configs/1b.py", [
      "model.attention=cudnn", "mesh.fsdp=8"]), devices=8)["total"]
  assert more_devices < before


def test_out_of_memory_is_one_line_naming_the_knobs(tmp_path, monkeypatch, capsys):
  def exhausted(self, batch):
    def step(*args):
      raise jax.errors.JaxRuntimeError(
          "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 31037652992 bytes.")
    return step

  monkeypatch.setattr(trainer.Program, "jit_train_step", exhausted)
  code = cli.main(["train", "--config", "configs/tiny.py", "--workdir", str(tmp_path / "w"),
                   "--config.model.d_model=32", "--config.model.n_layers=1",
                   "--config.data.batch_size=8", "--config.train.steps=2",
                   "--config.train.eval_batches=0", "--config.data.source=random"])
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 2
  assert len(err) == 1 and err[0].startswith("error: the train step does not fit"), err
  assert "XLA wanted 28.91 GiB" in err[0]
  for knob in ("--config.train.grad_accum=2", "--config.model.remat=full",
               "--config.data.batch_size=4"):
    assert knob in err[0]


def test_other_runtime_errors_pass_through(tmp_path, monkeypatch):
  def broken(self, batch):
    def step(*args):
      raise jax.errors.JaxRuntimeError("INTERNAL: something else")
    return step

  monkeypatch.setattr(trainer.Program, "jit_train_step", broken)
  config = config_lib.load("configs/tiny.py", ["model.d_model=32", "model.n_layers=1",
                                               "data.batch_size=8", "train.steps=2",
                                               "train.eval_batches=0", "data.source=random"])
  with pytest.raises(jax.errors.JaxRuntimeError, match="INTERNAL"):
    trainer.train(config, tmp_path / "w")
