"""AdamW with linear warmup, cosine decay, global-norm clipping and decay on matrices only, and
optionally a moving average of the parameters it produces."""

from __future__ import annotations

from typing import NamedTuple

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


class AveragedParams(NamedTuple):
  """State of `params_average`: the average and how many updates it has seen."""
  average: optax.Params
  count: jax.Array


def params_average(decay: float) -> optax.GradientTransformation:
  """Keeps an exponential moving average of the parameters after each update and passes the
  updates on unchanged; the last link of a chain, so it sees the final updates. Its decay is
  min(decay, (1 + t) / (10 + t)) at update t, so the first updates are not averaged with the
  initial parameters at full weight."""

  def init(params):
    return AveragedParams(jax.tree.map(jnp.asarray, params), jnp.zeros([], jnp.int32))

  def update(updates, state, params):
    t = state.count.astype(jnp.float32)
    keep = jnp.minimum(decay, (1.0 + t) / (10.0 + t))
    new_params = optax.apply_updates(params, updates)
    average = jax.tree.map(lambda a, p: (keep * a + (1.0 - keep) * p).astype(a.dtype),
                           state.average, new_params)
    return updates, AveragedParams(average, state.count + 1)

  return optax.GradientTransformation(init, update)


def make_optimizer(train_config) -> optax.GradientTransformation:
  links = [optax.clip_by_global_norm(train_config.clip_norm),
           optax.adamw(learning_rate(train_config), b1=train_config.b1, b2=train_config.b2,
                       weight_decay=train_config.weight_decay, mask=decay_mask)]
  if train_config.ema_decay:
    links.append(params_average(train_config.ema_decay))
  return optax.chain(*links)


def split_params(state: nnx.State) -> tuple[nnx.State, nnx.State]:
  """(the part of a model state the optimizer updates, the rest)."""
  return nnx.split_state(state, nnx.Param, ...)


def abstract_opt_state(train_config, abstract_state: nnx.State):
  """Shapes and dtypes of the optimizer state for a model state's shapes."""
  return jax.eval_shape(make_optimizer(train_config).init, split_params(abstract_state)[0])


def averaged(state: nnx.State, opt_state) -> nnx.State:
  """`state` with the parameters' moving average in place of the parameters, where the
  optimizer keeps one (train.ema_decay > 0: the last link of its chain); `state` otherwise."""
  last = opt_state[-1]
  if not isinstance(last, AveragedParams):
    return state
  return nnx.merge_state(last.average, split_params(state)[1])
