"""AdamW with linear warmup, cosine decay, global-norm clipping and decay on matrices only."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

# Logical axis of stacked layers (scan): it does not make a vector a matrix.
_STACK_AXES = ("layers",)


def learning_rate(train_config) -> optax.Schedule:
  """0 -> lr linearly over warmup_steps, then cosine to lr * min_lr_ratio at train.steps."""
  peak, warmup, total = train_config.lr, train_config.warmup_steps, train_config.steps
  end = peak * train_config.min_lr_ratio

  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    warm = peak * step / max(warmup, 1)
    progress = jnp.clip((step - warmup) / max(total - warmup, 1), 0.0, 1.0)
    cosine = end + (peak - end) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
    return jnp.where(step < warmup, warm, cosine)

  return schedule


def is_matrix(variable: nnx.Variable) -> bool:
  """True for weights with at least two dims besides stacked-layer axes (decayed)."""
  names = variable.get_metadata().get("out_sharding") or ()
  return variable.ndim - sum(name in _STACK_AXES for name in names) >= 2


def decay_mask(params: nnx.State):
  """Pytree of bools (one per variable): where weight decay applies."""
  return jax.tree.map(is_matrix, params, is_leaf=lambda x: isinstance(x, nnx.Variable))


def make_optimizer(train_config) -> optax.GradientTransformation:
  return optax.chain(
      optax.clip_by_global_norm(train_config.clip_norm),
      optax.adamw(learning_rate(train_config), b1=train_config.b1, b2=train_config.b2,
                  weight_decay=train_config.weight_decay, mask=decay_mask),
  )
