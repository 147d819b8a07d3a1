"""The models: the interaction model (SPEC §4), the background LM (SPEC §5), and the registry of
model kinds (registry.py: `build`, `loss_for`) for code that serves either."""

from __future__ import annotations

from jax_interact.models.background import BackgroundConfig, BackgroundModel, background_loss_fn
from jax_interact.models.interaction import InteractionConfig, InteractionModel
from jax_interact.models.losses import loss_fn
from jax_interact.models.registry import KINDS, build, kind_of, loss_for

__all__ = [
  "KINDS",
  "BackgroundConfig",
  "BackgroundModel",
  "InteractionConfig",
  "InteractionModel",
  "background_loss_fn",
  "build",
  "kind_of",
  "loss_fn",
  "loss_for",
]
