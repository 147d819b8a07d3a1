"""A trained run, ready to serve: its config, the latest checkpoint's model and its tokenizer."""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Sequence

import jax
import ml_collections
from flax import nnx

from jax_interact import config as config_lib
from jax_interact.errors import InputError
from jax_interact.models import BackgroundModel, InteractionModel, build
from jax_interact.streams import tokenizer
from jax_interact.streams.tokenizer import Tokenizer
from jax_interact.training import checkpointing, optimizer



@dataclasses.dataclass
class Trained:
  config: ml_collections.ConfigDict
  model: InteractionModel | BackgroundModel  # as config.model.kind says
  tokenizer: Tokenizer
  step: int


# Config sections a served run may change: how it samples and how it runs background jobs.
RUNTIME_SECTIONS = ("sample", "background")


def load(workdir: str | pathlib.Path, checkpoint: str = checkpointing.LATEST,
         overrides: Sequence[str] = ()) -> Trained:
  """Loads W/config.json, a checkpoint's model state (on one device; the parameters' moving
  average where training kept one, train.ema_decay) and the tokenizer (W/tokenizer.model, else
  the training dataset's). `checkpoint`: "latest" (the last periodic checkpoint) or "best" (the
  best interactivity score during training, W/best). `overrides` (`sample.key=value`,
  `background.key=value`) change runtime settings, never the model."""
  workdir = pathlib.Path(workdir)
  config_path = workdir / "config.json"
  if not config_path.is_file():
    raise InputError(str(workdir), "not a training workdir (no config.json); train first")
  try:
    saved = json.loads(config_path.read_text())
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise InputError(str(config_path), f"not valid JSON ({e})") from None
  config = config_lib.from_saved(saved, str(config_path))
  for item in overrides:
    key = item.removeprefix("--").removeprefix("config.")
    if not key.startswith(tuple(f"{section}." for section in RUNTIME_SECTIONS)):
      raise InputError(f"--config.{key.split('=')[0]}", "a trained run takes only runtime "
                       f"settings here: --config.{{{','.join(RUNTIME_SECTIONS)}}}.key=value")
  config_lib.apply_overrides(config, overrides)
  config_lib.validate(config, str(config_path))
  checkpoints = checkpointing.Checkpoints(workdir, config.checkpoint, checkpoint)
  step = checkpoints.latest_step()
  if step is None:
    hint = (" (it is written by training with --config.train.interact_every_steps)"
            if checkpoint == checkpointing.BEST else "")
    raise InputError(str(checkpoints.directory), f"holds no checkpoint{hint}")
  tokenizer_path = workdir / tokenizer.FILENAME
  if not tokenizer_path.is_file() and config.data.source == "random":
    raise InputError(str(workdir), "was trained on random batches (data.source=random), so it "
                     "has no tokenizer to serve with; train on a dataset")
  if not tokenizer_path.is_file():
    tokenizer_path = pathlib.Path(config.data.dir) / tokenizer.FILENAME
  graphdef, abstract = nnx.split(nnx.eval_shape(lambda: build(config, nnx.Rngs(0))))
  on_device = lambda tree: checkpointing.abstract_like(
      tree, jax.tree.map(lambda _: jax.sharding.SingleDeviceSharding(jax.devices()[0]), tree))
  try:
    if checkpoint == checkpointing.LATEST and config.train.ema_decay:
      # The parameters' average lives in the optimizer state; W/best holds it as the model.
      abstract_opt = optimizer.abstract_opt_state(config.train, abstract)
      state = optimizer.averaged(*checkpoints.restore(step, on_device(abstract),
                                                      on_device(abstract_opt)))
    else:
      state = checkpoints.restore_model_state(step, on_device(abstract))
  finally:
    checkpoints.close()
  return Trained(config, nnx.merge(graphdef, state), Tokenizer.load(tokenizer_path), step)
