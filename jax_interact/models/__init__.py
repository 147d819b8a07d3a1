"""The models: the interaction model (SPEC §4), the background LM (SPEC §5), and a dispatch
on `config.model.kind` (`build`, `loss_for`) for code that serves either."""

from __future__ import annotations

from flax import nnx

from jax_interact.models.background import BackgroundModel, background_loss_fn
from jax_interact.models.interaction import InteractionModel
from jax_interact.models.losses import loss_fn

_KINDS = {"interaction": (InteractionModel, loss_fn),
          "background": (BackgroundModel, background_loss_fn)}


def build(config, rngs: nnx.Rngs) -> InteractionModel | BackgroundModel:
  """The model `config.model.kind` names, built from `config`."""
  return _KINDS[config.model.kind][0](config, rngs=rngs)


def loss_for(config):
  """`loss(model, batch, rng) -> (loss, metrics)` of the model `config.model.kind` names."""
  return _KINDS[config.model.kind][1]


__all__ = [
  "BackgroundModel",
  "InteractionModel",
  "background_loss_fn",
  "build",
  "loss_fn",
  "loss_for",
]
