"""The trainer: sharded steps agree across meshes, the optimizer, bad input and divergence."""

import json
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jax_interact import cli, sharding, trainer
from jax_interact import config as config_lib
from jax_interact.inference import trained as trained_lib
from jax_interact.training import checkpointing, optimizer
from test_dataset import write_tiny_dataset

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "tiny.py")

# Steps of every run here and in test_checkpoint_resume.py: runs of equal configs and meshes
# share one compiled train step through the compilation cache.
STEPS = 16
# configs/tiny.py shrunk further so each compile and step stays short on CPU.
SMALL = [
    "model.d_model=32", "model.n_layers=1", "model.n_heads=8", "model.n_kv_heads=4",
    "model.head_dim=4", "model.d_ff=64", "model.local_d_model=32", "model.local_heads=4",
    "model.local_d_ff=64", "model.flow_hidden=32", "model.window_turns=2", "model.sinks=1",
    "model.vocab_size=64", "stream.n_mels=8", "stream.video_height=40", "stream.video_width=40",
    "data.source=random", "data.window=2", "data.batch_size=8", "train.log_every_steps=1",
    "train.eval_batches=0",
    "train.warmup_steps=0", f"train.steps={STEPS}", "mesh.data=2", "mesh.tensor=4",
]


def run_cli(args: list[str]) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "jax_interact.cli", *args], cwd=REPO,
                        capture_output=True, text=True, check=False)


def read_metrics(workdir: pathlib.Path) -> list[dict]:
  return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def test_meshes_give_the_losses_of_one_device(tmp_path):
  losses = {}
  for name, mesh, devices in (("one", ["mesh.data=1", "mesh.tensor=1"], jax.devices()[:1]),
                              ("data2_tensor4", [], None),
                              ("fsdp8", ["mesh.data=1", "mesh.tensor=1", "mesh.fsdp=8"], None)):
    config = config_lib.load(TINY, SMALL + mesh + [f"checkpoint.every_steps={STEPS}"])
    trainer.train(config, tmp_path / name, devices=devices)
    losses[name] = np.array([row["loss"] for row in read_metrics(tmp_path / name)][:3])
  for name in ("data2_tensor4", "fsdp8"):
    np.testing.assert_allclose(losses[name], losses["one"], rtol=1e-5, err_msg=name)


def test_weight_decay_applies_to_matrices_only():

  class Model(nnx.Module):
    def __init__(self):
      self.kernel = nnx.Param(jnp.ones((4, 8)), sharding_names=("embed", "mlp"))
      self.stacked_scale = nnx.Param(jnp.ones((3, 8)), sharding_names=("layers", "embed"))
      self.stacked_kernel = nnx.Param(jnp.ones((3, 4, 8)), sharding_names=("layers", "embed", "mlp"))
      self.bias = nnx.Param(jnp.ones((8,)))

  with nnx.use_eager_sharding(False):
    mask = optimizer.decay_mask(nnx.state(Model(), nnx.Param))
  assert dict(mask) == {"kernel": True, "stacked_scale": False, "stacked_kernel": True,
                        "bias": False}


def test_learning_rate_warms_up_then_decays_to_min_ratio():
  train = config_lib.defaults().train
  train.update(lr=1.0, warmup_steps=10, steps=110, min_lr_ratio=0.1)
  schedule = optimizer.learning_rate(train)
  assert float(schedule(0)) == 0.0
  assert float(schedule(5)) == pytest.approx(0.5)
  assert float(schedule(10)) == pytest.approx(1.0)
  assert float(schedule(60)) == pytest.approx(0.55)
  assert float(schedule(110)) == pytest.approx(0.1)


def test_unknown_config_key_exits_2_with_one_line(tmp_path, capsys):
  code = cli.main(["train", "--config", TINY, "--workdir", str(tmp_path / "w"),
                   "--config.model.no_such_key=1"])
  err = capsys.readouterr().err.strip()
  assert code == 2
  assert err.count("\n") == 0 and "model.no_such_key" in err
  assert not (tmp_path / "w").exists()


def test_a_small_dataset_trains_and_evaluates_on_what_its_split_holds(tmp_path, capsys):
  write_tiny_dataset(tmp_path / "data", 3)  # 2 train episodes, 1 validation episode
  config = config_lib.load(TINY, [o for o in SMALL if o != "data.source=random"] + [
      f"data.dir={tmp_path / 'data'}", "data.num_workers=0", "train.steps=2",
      "train.eval_batches=3", "train.eval_every_steps=2"])
  trainer.train(config, tmp_path / "w")
  assert ("evaluating on 1 held-out window of split 'validation' (1 batches; the split fills 1 "
          "of train.eval_batches=3)") in capsys.readouterr().out
  assert np.isfinite(read_metrics(tmp_path / "w")[-1]["eval_loss"])


def test_training_needs_a_dataset_or_random_batches_by_name(tmp_path, capsys):
  code = cli.main(["train", "--config", TINY, "--workdir", str(tmp_path / "w"),
                   "--config.train.steps=1"])
  err = capsys.readouterr().err.strip()
  assert code == 2
  assert err.count("\n") == 0 and "config.data.dir" in err and "data generate" in err
  assert not (tmp_path / "w").exists()


def test_nan_loss_exits_2_and_keeps_last_good_checkpoint(tmp_path):
  workdir = tmp_path / "w"
  base = ["train", "--config", TINY, "--workdir", str(workdir), *(f"--config.{o}" for o in SMALL),
          "--config.checkpoint.every_steps=8"]
  trained = run_cli(base)
  assert trained.returncode == 0, trained.stderr[-2000:]

  # A huge learning rate (resuming at STEPS) blows the weights up: the loss turns non-finite.
  diverged = run_cli(base + [f"--config.train.steps={STEPS + 4}", "--config.train.lr=1e30"])
  assert diverged.returncode == 2, diverged.stderr[-2000:]
  message = [line for line in diverged.stderr.splitlines() if line.startswith("error:")]
  assert len(message) == 1 and "at step" in message[0], diverged.stderr[-2000:]
  assert f"checkpoint {STEPS} is kept" in message[0]
  assert sorted(int(p.name) for p in (workdir / "checkpoints").iterdir()) == [8, STEPS]

  # A different model shape is refused in one line; the kept checkpoint restores.
  refused = run_cli(base + ["--config.model.d_ff=96"])
  assert refused.returncode == 2
  assert refused.stderr.strip().splitlines()[-1].startswith("error:")
  assert "another shape" in refused.stderr
  restored = run_cli(base)
  assert restored.returncode == 0, restored.stderr[-2000:]
  assert f"resuming from step {STEPS}" in restored.stdout


def test_the_parameters_average_trails_them_by_decay_over_one_minus_decay_steps():
  tx = optimizer.params_average(0.75)
  params = {"w": jnp.zeros(3)}
  state = tx.init(params)
  for _ in range(200):  # the parameters move by 1 a step
    updates, state = tx.update({"w": jnp.ones(3)}, state, params)
    params = optax.apply_updates(params, updates)
  np.testing.assert_allclose(state.average["w"], params["w"] - 0.75 / 0.25, rtol=1e-5)


def test_a_run_with_a_parameters_average_is_loaded_as_that_average(tmp_path):
  write_tiny_dataset(tmp_path / "data", 3)
  config = config_lib.load(TINY, [o for o in SMALL if o != "data.source=random"] + [
      f"data.dir={tmp_path / 'data'}", "data.num_workers=0", "train.steps=4",
      "checkpoint.every_steps=4", "train.ema_decay=0.9"])
  trainer.train(config, tmp_path / "w")
  trained_model = trained_lib.load(tmp_path / "w")
  mesh = sharding.make_mesh(config.mesh)
  with sharding.use(mesh, sharding.rules(config, mesh)):
    state, opt_state = trainer.Program.create(config, mesh).restore(
        checkpointing.Checkpoints(tmp_path / "w", config.checkpoint), 4)
  loaded = nnx.state(trained_model.model, nnx.Param)
  averaged = nnx.split_state(optimizer.averaged(state, opt_state), nnx.Param, ...)[0]
  trained_params = nnx.split_state(state, nnx.Param, ...)[0]
  for got, want in zip(jax.tree.leaves(loaded), jax.tree.leaves(averaged), strict=True):
    np.testing.assert_allclose(got, want, rtol=1e-6)
  assert any(not np.allclose(a, r) for a, r in zip(jax.tree.leaves(averaged),
                                                   jax.tree.leaves(trained_params)))
