"""Building blocks with logical axis names: dense weights, RMSNorm and the SwiGLU MLP.

Every parameter is an `nnx.Param` whose `out_sharding` holds logical names (jax_interact.sharding
maps them to mesh axes). Weights are stored in `param_dtype` and cast to the compute `dtype`
where they are used; norms and the router run in float32 (their parameters carry
`FLOAT32_USE`), and so do the logits a loss or a sampler reads (`Dense(..., out_dtype=...)`).
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


# Metadata of parameters read in float32 whatever the compute dtype.
FLOAT32_USE = "used_in_float32"


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
          *, fan_in: int | None = None, std: float | None = None,
          float32_use: bool = False) -> nnx.Param:
  """A normal-initialised parameter (std 1/sqrt(fan_in) unless `std` is given); `float32_use`
  marks one the model reads in float32 (FLOAT32_USE)."""
  if std is None:
    std = 1.0 / math.sqrt(fan_in if fan_in is not None else shape[0])
  value = std * jax.random.normal(rngs.params(), tuple(shape), jnp.float32)
  metadata = {FLOAT32_USE: True} if float32_use else {}
  return nnx.Param(value.astype(precision.param_dtype), out_sharding=tuple(names), **metadata)


def zeros_param(shape: Sequence[int], names: Sequence[str | None],
                precision: Precision) -> nnx.Param:
  return nnx.Param(jnp.zeros(tuple(shape), precision.param_dtype), out_sharding=tuple(names))


def in_compute_dtype(state: nnx.State, precision: Precision) -> nnx.State:
  """`state` with the floating parameters that the model casts to the compute dtype where it
  reads them stored in that dtype already (those marked FLOAT32_USE stay as they are): the same
  numbers, and a decode step reads bfloat16 weights, half the bytes of float32 storage."""

  def cast(variable):
    if (not isinstance(variable, nnx.Param) or variable.get_metadata().get(FLOAT32_USE)
        or not jnp.issubdtype(variable.dtype, jnp.floating)):
      return variable
    return variable.replace(variable[...].astype(precision.dtype))

  return jax.tree.map(cast, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


class Dense(nnx.Module):
  """y = x @ W (+ b) over the last axis; `names` are the logical names of (in, out)."""

  def __init__(self, d_in: int, d_out: int, names: tuple[str | None, str | None],
               precision: Precision, *, rngs: nnx.Rngs, use_bias: bool = False):
    self.precision = precision
    self.w = param(rngs, (d_in, d_out), names, precision)
    self.b = zeros_param((d_out,), names[1:], precision) if use_bias else None

  def __call__(self, x: jax.Array, out_dtype: jnp.dtype | None = None) -> jax.Array:
    """In the compute dtype, or accumulated and returned in `out_dtype` (float32 logits)."""
    dtype = self.precision.dtype
    y = jnp.matmul(x.astype(dtype), self.w[...].astype(dtype), preferred_element_type=out_dtype)
    return y + self.b[...].astype(y.dtype) if self.b is not None else y


class RMSNorm(nnx.Module):
  """Root-mean-square norm computed in float32, learned scale initialised to 1."""

  def __init__(self, dim: int, precision: Precision, *, name: str = "embed", eps: float = 1e-6):
    self.precision = precision
    self.eps = eps
    self.scale = nnx.Param(jnp.ones((dim,), precision.param_dtype), out_sharding=(name,),
                           **{FLOAT32_USE: True})

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

  def __call__(self, x_BTD: jax.Array, *, dropless: bool = False) -> tuple[jax.Array, jax.Array]:
    del dropless  # a dense MLP drops nothing (the MoE signature)
    dtype = self.precision.dtype
    x_BTD = x_BTD.astype(dtype)
    gate_BTF = jnp.einsum("btd,df->btf", x_BTD, self.w_gate[...].astype(dtype))
    up_BTF = jnp.einsum("btd,df->btf", x_BTD, self.w_up[...].astype(dtype))
    h_BTF = sharding.constrain(jax.nn.silu(gate_BTF) * up_BTF, ("batch", "seq", "mlp"))
    y_BTD = jnp.einsum("btf,fd->btd", h_BTF, self.w_down[...].astype(dtype))
    return y_BTD, jnp.zeros((), jnp.float32)
