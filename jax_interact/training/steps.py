"""Pure train and eval steps over split model state (jitted with explicit shardings by the trainer).

The loss rng of step s is `fold_in(fold_in(key(seed), TRAIN), s)` (and of micro-batch i,
`fold_in(that, i)`), so a run restarted from a checkpoint draws exactly the same noise.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jax_interact import sharding
from jax_interact.training import optimizer

# loss_fn(model, batch, rng) -> (loss, metrics: dict of scalars)
LossFn = Callable[[nnx.Module, dict, jax.Array], tuple[jax.Array, dict]]

_TRAIN_STREAM, _EVAL_STREAM = 0, 1


def train_rng(seed: int, step) -> jax.Array:
  return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), _TRAIN_STREAM), step)


def eval_rng(seed: int) -> jax.Array:
  return jax.random.fold_in(jax.random.key(seed), _EVAL_STREAM)


def split_micro_batches(batch: dict, n: int) -> dict:
  """[B, ...] -> [n, B/n, ...]: micro-batch i takes rows i, i+n, ... so it spans every shard."""

  def split(x_B):
    x_AM = x_B.reshape(x_B.shape[0] // n, n, *x_B.shape[1:]).swapaxes(0, 1)
    return sharding.constrain(x_AM, (None, "batch") + (None,) * (x_AM.ndim - 2))

  return jax.tree.map(split, batch)


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, loss_fn: LossFn,
                    *, seed: int, grad_accum: int, learning_rate: optax.Schedule):
  """`train_step(state, opt_state, batch, step) -> (state, opt_state, metrics)`.

  Gradients are averaged over `grad_accum` micro-batches (a lax.scan); metrics hold the model's
  scalars averaged the same way plus `loss`, `grad_norm` (before clipping) and `lr` (of `tx`'s
  schedule at this step, computed here so the host never runs device ops for it).
  """

  def train_step(state: nnx.State, opt_state, batch: dict, step: jax.Array):
    params, rest = optimizer.split_params(state)

    def loss_of(params, micro_batch, rng):
      return loss_fn(nnx.merge(graphdef, params, rest), micro_batch, rng)

    grad_fn = jax.value_and_grad(loss_of, has_aux=True)
    rng = train_rng(seed, step)
    micro_batches = split_micro_batches(batch, grad_accum)

    def accumulate(total, xs):
      i, micro_batch = xs
      out = grad_fn(params, micro_batch, jax.random.fold_in(rng, i))
      return jax.tree.map(jnp.add, total, out), None

    first = jax.tree.map(lambda x: x[0], micro_batches)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                         jax.eval_shape(grad_fn, params, first, rng))
    total, _ = jax.lax.scan(accumulate, zeros, (jnp.arange(grad_accum), micro_batches))
    (loss, metrics), grads = jax.tree.map(lambda x: x / grad_accum, total)

    grad_norm = optax.global_norm(grads)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    metrics = {**metrics, "loss": loss, "grad_norm": grad_norm, "lr": learning_rate(step)}
    return nnx.merge_state(params, rest), opt_state, metrics

  return train_step


def make_eval_step(graphdef: nnx.GraphDef, loss_fn: LossFn, *, seed: int):
  """`eval_step(state, batch) -> metrics` (with `loss`), with a fixed rng across evaluations."""

  def eval_step(state: nnx.State, batch: dict):
    loss, metrics = loss_fn(nnx.merge(graphdef, state), batch, eval_rng(seed))
    return {**metrics, "loss": loss}

  return eval_step
