"""Shapes against the mesh, before anything compiles: replicated KV heads, one-line errors."""

import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jax_interact import cli, sharding, trainer
from jax_interact import config as config_lib
from jax_interact.errors import ConfigError
from test_trainer import SMALL, TINY


def small_config(*overrides):
  return config_lib.load(TINY, SMALL + list(overrides))


def test_kv_heads_fewer_than_tensor_shards_are_replicated():
  config = small_config("model.n_kv_heads=2")  # SMALL's mesh has 4 tensor shards
  mesh = sharding.make_mesh(config.mesh)
  assert dict(sharding.rules(small_config(), mesh))["kv_heads"] == "tensor"  # 4 KV heads
  with sharding.use(mesh, sharding.rules(config, mesh)):
    program = trainer.Program.create(config, mesh)
    program.checked_steps(trainer.random_batches(config, 0)(0))
  attention = program.state_shardings["temporal"]["blocks"]["attn"]
  assert attention["w_k"].get_value().spec == P(None, "fsdp", None, None)  # [layers, d, kv, h]
  assert attention["w_q"].get_value().spec == P(None, "fsdp", "tensor", None)


def test_a_mesh_that_does_not_divide_a_parameter_exits_2_naming_both_keys(tmp_path, capsys):
  code = cli.main(["train", "--config", TINY, "--workdir", str(tmp_path / "w"),
                   *(f"--config.{o}" for o in SMALL), "--config.model.d_ff=66"])
  err = capsys.readouterr().err
  assert code == 2 and err.count("\n") == 1
  assert err.startswith("error: config.model.d_ff: dimension 'mlp' of parameter ")
  assert "is 66, which config.mesh.tensor=4 does not divide" in err
  assert not (tmp_path / "w").exists()


def test_activation_constraints_are_checked_before_compiling():
  """Sequences over the tensor axis: the local decoder's 13 output slots do not split 4 ways."""
  config = small_config()
  config.sharding_rules = tuple((name, "tensor" if name == "seq" else target)
                                for name, target in sharding.DEFAULT_RULES)
  mesh = sharding.make_mesh(config.mesh)
  with sharding.use(mesh, sharding.rules(config, mesh)):
    program = trainer.Program.create(config, mesh)
    with pytest.raises(ConfigError, match=r"config.data.window: dimension 'seq' of activation "
                       r"\[.*\] is \d+, which config.mesh.tensor=4 does not divide"):
      program.checked_steps(trainer.random_batches(config, 0)(0))


def test_batch_arrays_are_checked_against_the_batch_shards():
  config = small_config("mesh.data=8", "mesh.tensor=1")
  mesh = sharding.make_mesh(config.mesh)
  batch = {"tokens": np.zeros((4, 3), np.int32)}  # 4 windows over 8 batch shards
  with sharding.use(mesh, sharding.rules(config, mesh)):
    with pytest.raises(ConfigError, match=r"batch array 'tokens' \[4, 3\] is 4, which "
                       r"config.mesh.data \* config.mesh.fsdp \* config.mesh.expert=8 does not divide"):
      trainer.Program.create(config, mesh).checked_steps(batch)


def test_batches_are_placed_by_the_configured_rules():
  """The rules that constrain activations in the step also place the batches it reads."""
  config = small_config("mesh.data=2", "mesh.fsdp=2", "mesh.tensor=2")
  config.sharding_rules = tuple((name, "data" if name == "batch" else target)
                                for name, target in sharding.DEFAULT_RULES)
  mesh = sharding.make_mesh(config.mesh)
  with sharding.use(mesh, sharding.rules(config, mesh)):
    assert sharding.batch_sharding(mesh, 3).spec == P("data", None, None)
    assert sharding.spec(("batch", None, None)) == P("data", None, None)
