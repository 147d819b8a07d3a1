"""Grouped-query attention with RoPE and the sliding-window-plus-sinks mask of SPEC §4.

Everything is a function of absolute token positions, so the training forward (a whole window)
and the streaming step (new tokens against a ring-buffer cache whose slots carry their absolute
key position, -1 when empty) share one mask definition (`window.attention_mask`).
`Attention.__call__` takes the query positions and either a mask against cached keys/values
(attended together with the new tokens' own) or, for a whole sequence from position 0, the
Window alone, which an attention kernel (attention_kernels.py) applies without materialising it.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from jax_interact import sharding
from jax_interact.models import attention_kernels
from jax_interact.models.layers import Precision, param
from jax_interact.models.window import Window


def rope(x_BTHD: jax.Array, pos_BT: jax.Array, theta: float) -> jax.Array:
  """Rotary position embedding (rotate-half form), angles computed in float32."""
  half = x_BTHD.shape[-1] // 2
  inv_freq = 1.0 / (theta ** (jnp.arange(half, dtype=jnp.float32) / half))
  angles_BTF = pos_BT.astype(jnp.float32)[..., None] * inv_freq
  cos = jnp.cos(angles_BTF)[..., None, :]
  sin = jnp.sin(angles_BTF)[..., None, :]
  x32 = x_BTHD.astype(jnp.float32)
  x1, x2 = x32[..., :half], x32[..., half:]
  return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1).astype(x_BTHD.dtype)


@dataclasses.dataclass
class KeyValues:
  """Keys (already rotated) and values with the absolute position of every key slot."""

  k_BSKH: jax.Array  # [batch, slots, kv_heads, head_dim]
  v_BSKH: jax.Array
  pos_BS: jax.Array  # int32, -1 marks an empty slot


jax.tree_util.register_dataclass(KeyValues, data_fields=["k_BSKH", "v_BSKH", "pos_BS"],
                                 meta_fields=[])


class Attention(nnx.Module):
  """Multi-head attention with n_kv_heads <= n_heads shared key/value heads (GQA)."""

  def __init__(self, d_model: int, n_heads: int, n_kv_heads: int, head_dim: int,
               rope_theta: float, precision: Precision, *, kernel: str = "auto",
               rngs: nnx.Rngs):
    self.precision = precision
    self.kernel = kernel  # of a whole sequence: attention_kernels.KERNELS
    self.n_heads = n_heads
    self.n_kv_heads = n_kv_heads
    self.head_dim = head_dim
    self.rope_theta = rope_theta
    self.w_q = param(rngs, (d_model, n_heads, head_dim), ("embed", "heads", "head_dim"), precision)
    self.w_k = param(rngs, (d_model, n_kv_heads, head_dim), ("embed", "kv_heads", "head_dim"),
                     precision)
    self.w_v = param(rngs, (d_model, n_kv_heads, head_dim), ("embed", "kv_heads", "head_dim"),
                     precision)
    self.w_o = param(rngs, (n_heads, head_dim, d_model), ("heads", "head_dim", "embed"), precision,
                     fan_in=n_heads * head_dim)

  def key_values(self, x_BTD: jax.Array, pos_BT: jax.Array) -> KeyValues:
    """Rotated keys and values of new tokens (what a cache stores)."""
    dtype = self.precision.dtype
    x_BTD = x_BTD.astype(dtype)
    k_BTKH = jnp.einsum("btd,dkh->btkh", x_BTD, self.w_k[...].astype(dtype))
    v_BTKH = jnp.einsum("btd,dkh->btkh", x_BTD, self.w_v[...].astype(dtype))
    k_BTKH = rope(k_BTKH, pos_BT, self.rope_theta)
    names = ("batch", "seq", "kv_heads", "head_dim")
    return KeyValues(sharding.constrain(k_BTKH, names), sharding.constrain(v_BTKH, names), pos_BT)

  def __call__(self, x_BTD: jax.Array, pos_BT: jax.Array, window: Window,
               mask_BTS: jax.Array | None = None,
               context: KeyValues | None = None) -> tuple[jax.Array, KeyValues]:
    """Attends the new tokens to the keys of `context` (if any) followed by their own.

    Without `mask_BTS` the new tokens are a whole sequence at positions 0..T-1 (pos_BT says so)
    and each sees what `window` allows; otherwise `mask_BTS` is `attention_mask` of pos_BT
    against the context's key positions then pos_BT. Returns the output and the new tokens'
    KeyValues.
    """
    dtype = self.precision.dtype
    x_BTD = x_BTD.astype(dtype)
    q_BTNH = jnp.einsum("btd,dnh->btnh", x_BTD, self.w_q[...].astype(dtype))
    q_BTNH = sharding.constrain(rope(q_BTNH, pos_BT, self.rope_theta),
                                ("batch", "seq", "heads", "head_dim"))
    new = self.key_values(x_BTD, pos_BT)
    if mask_BTS is None:
      out_BTNH = attention_kernels.sequence_attention(q_BTNH, new.k_BSKH, new.v_BSKH, window,
                                                      self.kernel)
    else:
      parts = [(new.k_BSKH, new.v_BSKH)]
      if context is not None:
        parts.insert(0, (context.k_BSKH.astype(dtype), context.v_BSKH.astype(dtype)))
      out_BTNH = attention_kernels.attention_over_parts(q_BTNH, parts, mask_BTS)
    y_BTD = jnp.einsum("btnh,nhd->btd", out_BTNH, self.w_o[...].astype(dtype))
    return sharding.constrain(y_BTD, ("batch", "seq", "embed")), new
