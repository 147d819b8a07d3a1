"""A trained run, ready to serve: its config, the latest checkpoint's model and its tokenizer."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import jax
import ml_collections
from flax import nnx

from jax_interact import config as config_lib
from jax_interact.errors import InputError
from jax_interact.models import BackgroundModel, InteractionModel, build
from jax_interact.streams import tokenizer
from jax_interact.streams.tokenizer import Tokenizer
from jax_interact.training import checkpointing



@dataclasses.dataclass
class Trained:
  config: ml_collections.ConfigDict
  model: InteractionModel | BackgroundModel  # as config.model.kind says
  tokenizer: Tokenizer
  step: int


def load(workdir: str | pathlib.Path) -> Trained:
  """Loads W/config.json, the latest checkpoint's model state (on one device) and the tokenizer
  (W/tokenizer.model, else the training dataset's)."""
  workdir = pathlib.Path(workdir)
  config_path = workdir / "config.json"
  if not config_path.is_file():
    raise InputError(str(workdir), "not a training workdir (no config.json); train first")
  config = ml_collections.ConfigDict(json.loads(config_path.read_text()))
  config_lib.validate(config, str(config_path))
  checkpoints = checkpointing.Checkpoints(workdir, config.checkpoint)
  step = checkpoints.latest_step()
  if step is None:
    raise InputError(str(workdir / "checkpoints"), "holds no checkpoint")
  graphdef, abstract = nnx.split(nnx.eval_shape(lambda: build(config, nnx.Rngs(0))))
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  state = checkpoints.restore_model_state(step, checkpointing.abstract_like(
      abstract, jax.tree.map(lambda _: device, abstract)))
  checkpoints.close()
  tokenizer_path = workdir / tokenizer.FILENAME
  if not tokenizer_path.is_file():
    tokenizer_path = pathlib.Path(config.data.dir) / tokenizer.FILENAME
  return Trained(config, nnx.merge(graphdef, state), Tokenizer.load(tokenizer_path), step)
