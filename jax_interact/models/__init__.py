"""The interaction model (SPEC §4): `InteractionModel(config, rngs=...)`, `loss_fn`, counting."""

from jax_interact.models.interaction import InteractionModel
from jax_interact.models.losses import loss_fn

__all__ = ["InteractionModel", "loss_fn"]
