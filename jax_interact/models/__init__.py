"""The models: the interaction model (SPEC §4), the background LM (SPEC §5), and a dispatch
on `config.model.kind` (`build`, `loss_for`) for code that serves either."""

from __future__ import annotations

import functools

from flax import nnx

from jax_interact.models.background import BackgroundModel, background_loss_fn
from jax_interact.models.interaction import InteractionModel
from jax_interact.models.losses import LossWeights, loss_fn

_KINDS = {"interaction": InteractionModel, "background": BackgroundModel}


def build(config, rngs: nnx.Rngs) -> InteractionModel | BackgroundModel:
  """The model `config.model.kind` names, built from `config`."""
  return _KINDS[config.model.kind](config, rngs=rngs)


def loss_for(config, train: bool = True):
  """`loss(model, batch, rng) -> (loss, metrics)` of the model `config.model.kind` names, with
  the config's loss weights; `train` adds the training-only feedback noise and own-prediction
  feedback."""
  if config.model.kind == "background":
    return background_loss_fn
  return functools.partial(loss_fn, weights=LossWeights.from_config(config.loss),
                           feedback_noise=config.train.feedback_noise if train else 0.0,
                           own_feedback=config.train.own_feedback if train else 0.0,
                           silence_threshold=config.sample.silence_threshold)


__all__ = [
  "BackgroundModel",
  "InteractionModel",
  "background_loss_fn",
  "build",
  "loss_fn",
  "loss_for",
]
