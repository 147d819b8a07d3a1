"""Building blocks with logical axis names: dense weights, RMSNorm, SwiGLU and top-k MoE MLPs.

Every parameter is an `nnx.Param` whose `out_sharding` holds logical names (jax_interact.sharding
maps them to mesh axes). Weights are stored in `param_dtype` and cast to the compute `dtype`
where they are used; norms and the router softmax run in float32.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jax_interact import sharding


@dataclasses.dataclass(frozen=True)
class Precision:
  """Compute dtype (activations, matmuls) and parameter storage dtype."""

  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @classmethod
  def from_config(cls, model_config) -> "Precision":
    return cls(dtype=jnp.dtype(model_config.dtype), param_dtype=jnp.dtype(model_config.param_dtype))


def placement():
  """Context to build a model in: inside a mesh (`sharding.use`) parameters are sharded by their
  logical names; without one, flax's eager sharding is turned off so they are placed unsharded."""
  if jax.sharding.get_abstract_mesh().empty:
    return nnx.use_eager_sharding(False)
  return contextlib.nullcontext()


def param(rngs: nnx.Rngs, shape: Sequence[int], names: Sequence[str | None], precision: Precision,
          *, fan_in: int | None = None, std: float | None = None) -> nnx.Param:
  """A normal-initialised parameter (std 1/sqrt(fan_in) unless `std` is given)."""
  if std is None:
    std = 1.0 / math.sqrt(fan_in if fan_in is not None else shape[0])
  value = std * jax.random.normal(rngs.params(), tuple(shape), jnp.float32)
  return nnx.Param(value.astype(precision.param_dtype), out_sharding=tuple(names))


def zeros_param(shape: Sequence[int], names: Sequence[str | None],
                precision: Precision) -> nnx.Param:
  return nnx.Param(jnp.zeros(tuple(shape), precision.param_dtype), out_sharding=tuple(names))


class Dense(nnx.Module):
  """y = x @ W (+ b) over the last axis; `names` are the logical names of (in, out)."""

  def __init__(self, d_in: int, d_out: int, names: tuple[str | None, str | None],
               precision: Precision, *, rngs: nnx.Rngs, use_bias: bool = False):
    self.precision = precision
    self.w = param(rngs, (d_in, d_out), names, precision)
    self.b = zeros_param((d_out,), names[1:], precision) if use_bias else None

  def __call__(self, x: jax.Array) -> jax.Array:
    dtype = self.precision.dtype
    y = jnp.matmul(x.astype(dtype), self.w[...].astype(dtype))
    return y + self.b[...].astype(dtype) if self.b is not None else y


class RMSNorm(nnx.Module):
  """Root-mean-square norm computed in float32, learned scale initialised to 1."""

  def __init__(self, dim: int, precision: Precision, *, name: str = "embed", eps: float = 1e-6):
    self.precision = precision
    self.eps = eps
    self.scale = nnx.Param(jnp.ones((dim,), precision.param_dtype), out_sharding=(name,))

  def __call__(self, x: jax.Array) -> jax.Array:
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
    return (y * self.scale[...].astype(jnp.float32)).astype(self.precision.dtype)


class SwiGLU(nnx.Module):
  """Gated MLP: W_down (silu(x W_gate) * x W_up). Returns (y, aux_loss=0)."""

  def __init__(self, d_model: int, d_ff: int, precision: Precision, *, rngs: nnx.Rngs):
    self.precision = precision
    self.w_gate = param(rngs, (d_model, d_ff), ("embed", "mlp"), precision)
    self.w_up = param(rngs, (d_model, d_ff), ("embed", "mlp"), precision)
    self.w_down = param(rngs, (d_ff, d_model), ("mlp", "embed"), precision)

  def __call__(self, x_BTD: jax.Array) -> tuple[jax.Array, jax.Array]:
    dtype = self.precision.dtype
    x_BTD = x_BTD.astype(dtype)
    gate_BTF = jnp.einsum("btd,df->btf", x_BTD, self.w_gate[...].astype(dtype))
    up_BTF = jnp.einsum("btd,df->btf", x_BTD, self.w_up[...].astype(dtype))
    h_BTF = sharding.constrain(jax.nn.silu(gate_BTF) * up_BTF, ("batch", "seq", "mlp"))
    y_BTD = jnp.einsum("btf,fd->btd", h_BTF, self.w_down[...].astype(dtype))
    return y_BTD, jnp.zeros((), jnp.float32)


class MoE(nnx.Module):
  """Top-k mixture of SwiGLU experts with dense (all-experts) einsum dispatch.

  The router picks `top_k` experts per token; their softmax weights (renormalised over the
  chosen k) mix the expert outputs. Every expert is evaluated on every token, which is simple and
  exact; the FLOP count (counting.py) charges only the k active experts. The auxiliary loss is
  the Switch-Transformer load-balancing term E * sum_e(fraction routed to e * mean prob of e).
  """

  def __init__(self, d_model: int, d_ff: int, num_experts: int, top_k: int,
               precision: Precision, *, rngs: nnx.Rngs):
    self.precision = precision
    self.num_experts = num_experts
    self.top_k = top_k
    self.router = param(rngs, (d_model, num_experts), ("embed", None), precision)
    self.w_gate = param(rngs, (num_experts, d_model, d_ff), ("experts", "embed", "mlp"), precision,
                        fan_in=d_model)
    self.w_up = param(rngs, (num_experts, d_model, d_ff), ("experts", "embed", "mlp"), precision,
                      fan_in=d_model)
    self.w_down = param(rngs, (num_experts, d_ff, d_model), ("experts", "mlp", "embed"), precision,
                        fan_in=d_ff)

  def __call__(self, x_BTD: jax.Array) -> tuple[jax.Array, jax.Array]:
    dtype = self.precision.dtype
    x_BTD = x_BTD.astype(dtype)
    logits_BTE = jnp.einsum("btd,de->bte", x_BTD.astype(jnp.float32),
                            self.router[...].astype(jnp.float32))
    probs_BTE = jax.nn.softmax(logits_BTE, axis=-1)
    top_probs_BTK, top_ids_BTK = jax.lax.top_k(probs_BTE, self.top_k)
    top_probs_BTK = top_probs_BTK / jnp.sum(top_probs_BTK, axis=-1, keepdims=True)
    chosen_BTKE = jax.nn.one_hot(top_ids_BTK, self.num_experts, dtype=jnp.float32)
    weights_BTE = jnp.einsum("btk,btke->bte", top_probs_BTK, chosen_BTKE)

    gate_BTEF = jnp.einsum("btd,edf->btef", x_BTD, self.w_gate[...].astype(dtype))
    up_BTEF = jnp.einsum("btd,edf->btef", x_BTD, self.w_up[...].astype(dtype))
    h_BTEF = jax.nn.silu(gate_BTEF) * up_BTEF * weights_BTE[..., None].astype(dtype)
    y_BTD = jnp.einsum("btef,efd->btd", h_BTEF, self.w_down[...].astype(dtype))

    routed_fraction_E = jnp.mean(jnp.sum(chosen_BTKE, axis=2), axis=(0, 1)) / self.top_k
    mean_prob_E = jnp.mean(probs_BTE, axis=(0, 1))
    aux_loss = self.num_experts * jnp.sum(routed_fraction_E * mean_prob_E)
    return y_BTD, aux_loss


def make_mlp(d_model: int, d_ff: int, num_experts: int, top_k: int, precision: Precision, *,
             rngs: nnx.Rngs) -> SwiGLU | MoE:
  """The MLP of a transformer block: dense SwiGLU, or MoE when `num_experts > 0`."""
  if num_experts > 0:
    return MoE(d_model, d_ff, num_experts, top_k, precision, rngs=rngs)
  return SwiGLU(d_model, d_ff, precision, rngs=rngs)
