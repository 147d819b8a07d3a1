"""Top-k mixture of SwiGLU experts with tokens dispatched sorted by expert (SPEC §4).

The router (float32) picks `top_k` experts per token; their softmax probabilities, renormalised
over the chosen k, weight the expert outputs. Each (token, chosen expert) pair is an assignment;
assignments are sorted by expert (stably, so in token order within an expert) and each expert
runs on its own group only, as counting.py charges:

- capacity 0 (dropless): `jax.lax.ragged_dot` over all sorted assignments of the batch, every
  assignment computed (a grouped-matmul kernel where the platform has one).
- capacity c > 0: per sequence, each expert takes its first C = ceil(c * T * k / E) assignments
  into a fixed [E, C, D] buffer computed by one batched matmul per expert: static shapes that
  shard over the `expert` mesh axis. Assignments past C are dropped (that expert adds nothing to
  that token; the residual carries it). Decoding (`dropless=True`) never drops, so a streamed
  step computes what its tokens route to, whatever the batch.

The auxiliary loss is the Switch-Transformer load-balancing term
E * sum_e(fraction of assignments routed to e * mean router probability of e).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jax_interact import sharding
from jax_interact.models.layers import Precision, param


class MoE(nnx.Module):
  """`MoE(d_model, d_ff, num_experts, top_k, capacity, precision, rngs=...)`; see the module."""

  def __init__(self, d_model: int, d_ff: int, num_experts: int, top_k: int, capacity: float,
               precision: Precision, *, rngs: nnx.Rngs):
    self.precision = precision
    self.num_experts = num_experts
    self.top_k = top_k
    self.capacity = capacity
    self.router = param(rngs, (d_model, num_experts), ("embed", None), precision,
                        float32_use=True)
    self.w_gate = param(rngs, (num_experts, d_model, d_ff), ("experts", "embed", "mlp"), precision,
                        fan_in=d_model)
    self.w_up = param(rngs, (num_experts, d_model, d_ff), ("experts", "embed", "mlp"), precision,
                      fan_in=d_model)
    self.w_down = param(rngs, (num_experts, d_ff, d_model), ("experts", "mlp", "embed"), precision,
                        fan_in=d_ff)

  def __call__(self, x_BTD: jax.Array, *, dropless: bool = False) -> tuple[jax.Array, jax.Array]:
    """(y [B, T, D], auxiliary loss); `dropless` ignores the capacity (decoding)."""
    logits_BTE = jnp.einsum("btd,de->bte", x_BTD.astype(jnp.float32),
                            self.router[...].astype(jnp.float32))
    probs_BTE = jax.nn.softmax(logits_BTE, axis=-1)
    top_probs_BTK, experts_BTK = jax.lax.top_k(probs_BTE, self.top_k)
    weights_BTK = top_probs_BTK / jnp.sum(top_probs_BTK, axis=-1, keepdims=True)
    if self.capacity == 0 or dropless:
      y_BTD = self._ragged(x_BTD, experts_BTK, weights_BTK)
    else:
      y_BTD = self._capacity(x_BTD, experts_BTK, weights_BTK)

    chosen_BTE = jnp.sum(jax.nn.one_hot(experts_BTK, self.num_experts, dtype=jnp.float32), axis=2)
    routed_fraction_E = jnp.mean(chosen_BTE, axis=(0, 1)) / self.top_k
    mean_prob_E = jnp.mean(probs_BTE, axis=(0, 1))
    aux_loss = self.num_experts * jnp.sum(routed_fraction_E * mean_prob_E)
    return y_BTD, aux_loss

  def _experts(self, x_GD: jax.Array, matmul) -> jax.Array:
    """SwiGLU of grouped rows, `matmul(rows, stacked expert weights)` applying each group's."""
    dtype = self.precision.dtype
    x_GD = x_GD.astype(dtype)
    gate = matmul(x_GD, self.w_gate[...].astype(dtype))
    up = matmul(x_GD, self.w_up[...].astype(dtype))
    return matmul(jax.nn.silu(gate) * up, self.w_down[...].astype(dtype))

  def _ragged(self, x_BTD, experts_BTK, weights_BTK) -> jax.Array:
    b, t, d = x_BTD.shape
    order_A, group_sizes_E, _ = sort_by_expert(experts_BTK.reshape(-1), self.num_experts)
    token_A = order_A // self.top_k
    y_AD = self._experts(x_BTD.reshape(b * t, d)[token_A],
                         lambda x, w: jax.lax.ragged_dot(x, w, group_sizes_E))
    weight_A = weights_BTK.reshape(-1)[order_A].astype(y_AD.dtype)
    y_MD = jnp.zeros((b * t, d), y_AD.dtype).at[token_A].add(y_AD * weight_A[:, None])
    return y_MD.reshape(b, t, d)

  def _capacity(self, x_BTD, experts_BTK, weights_BTK) -> jax.Array:
    b, t, d = x_BTD.shape
    e, k = self.num_experts, self.top_k
    slots = math.ceil(self.capacity * t * k / e)

    def dispatch(experts_TK, weights_TK):
      """Per sequence: buffer slot (E * slots when dropped), token and weight per assignment."""
      order_A, _, rank_A = sort_by_expert(experts_TK.reshape(-1), e)
      expert_A = experts_TK.reshape(-1)[order_A]
      slot_A = jnp.where(rank_A < slots, expert_A * slots + rank_A, e * slots)
      return slot_A, order_A // k, weights_TK.reshape(-1)[order_A]

    slot_BA, token_BA, weight_BA = jax.vmap(dispatch)(experts_BTK, weights_BTK)
    rows_B1 = jnp.arange(b)[:, None]
    buffer_BSD = jnp.zeros((b, e * slots, d), x_BTD.dtype).at[rows_B1, slot_BA].set(
        x_BTD[rows_B1, token_BA], mode="drop")
    buffer_BECD = sharding.constrain(buffer_BSD.reshape(b, e, slots, d),
                                     ("expert_batch", "experts", None, "embed"))
    y_BECD = self._experts(buffer_BECD,
                           lambda x, w: jnp.einsum("becd,edf->becf", x, w))
    y_BSD = y_BECD.reshape(b, e * slots, d)
    # Dropped assignments read a zero row past the buffer's end.
    y_BAD = jnp.take_along_axis(jnp.pad(y_BSD, ((0, 0), (0, 1), (0, 0))), slot_BA[..., None],
                                axis=1)
    contribution_BAD = y_BAD * weight_BA[..., None].astype(y_BAD.dtype)
    return jnp.zeros((b, t, d), y_BAD.dtype).at[rows_B1, token_BA].add(contribution_BAD)


def sort_by_expert(experts_A: jax.Array, num_experts: int):
  """(order that sorts assignments by expert, stably; assignments per expert [E]; rank of each
  sorted assignment within its expert's group)."""
  order_A = jnp.argsort(experts_A, stable=True)
  group_sizes_E = jnp.bincount(experts_A, length=num_experts).astype(jnp.int32)
  group_starts_E = jnp.cumsum(group_sizes_E) - group_sizes_E
  rank_A = jnp.arange(experts_A.shape[0]) - group_starts_E[experts_A[order_A]]
  return order_A, group_sizes_E, rank_A
