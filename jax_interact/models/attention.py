"""Grouped-query attention with RoPE and the sliding-window-plus-sinks mask of SPEC §4.

Everything is a function of absolute token positions, so the training forward (a whole window)
and decoding (new tokens against a `KVCache` whose slots carry their absolute key position, -1
when empty) share one mask definition (`window.attention_mask`). A layer owns its cache's shape
(`Attention.init_cache`) and writes it (`KVCache.write`): the first `sinks` positions keep their
slots and later ones wrap around the rest, a ring for the temporal sliding window and, in a
cache as long as the sequence, a linear cache (the local decoder, the background LM). A whole
sequence from position 0 without a cache runs an attention kernel (attention_kernels.py) that
applies the Window without materialising it.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from jax_interact import sharding
from jax_interact.models import attention_kernels
from jax_interact.models.layers import Precision, param
from jax_interact.models.window import Window, attention_mask


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


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class KVCache:
  """One attention layer's cache: rotated keys and values of the tokens it holds and the
  absolute position in each slot (-1: empty). Its size is fixed; `cache_slots` says where each
  position goes."""

  k_BSKH: jax.Array  # [batch, slots, kv_heads, head_dim]
  v_BSKH: jax.Array
  pos_BS: jax.Array  # int32

  def write(self, k_BTKH: jax.Array, v_BTKH: jax.Array, pos_BT: jax.Array,
            sinks: int) -> KVCache:
    """The cache with the new tokens' keys and values written into their slots (tokens at
    negative positions are not written). In place when the cache is a donated buffer."""
    slots_BT = cache_slots(pos_BT, sinks, self.pos_BS.shape[1])
    rows_B1 = jnp.arange(pos_BT.shape[0])[:, None]
    k = self.k_BSKH.at[rows_B1, slots_BT].set(k_BTKH.astype(self.k_BSKH.dtype), mode="drop")
    v = self.v_BSKH.at[rows_B1, slots_BT].set(v_BTKH.astype(self.v_BSKH.dtype), mode="drop")
    return KVCache(k, v, self.pos_BS.at[rows_B1, slots_BT].set(pos_BT, mode="drop"))


def cache_slots(pos_BT: jax.Array, sinks: int, slots: int) -> jax.Array:
  """The slot of each absolute position in a cache of `slots` slots: the first `sinks`
  positions keep theirs, later ones wrap around the others (a ring buffer, which stays linear
  while positions are below `slots`). A negative position maps past the end (not written)."""
  ring_slot_BT = jnp.where(pos_BT < sinks, pos_BT, sinks + (pos_BT - sinks) % (slots - sinks))
  return jnp.where(pos_BT >= 0, ring_slot_BT, slots)


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

  def init_cache(self, batch: int, slots: int) -> KVCache:
    """An empty cache of `slots` slots for `batch` sequences, in the compute dtype."""
    shape = (batch, slots, self.n_kv_heads, self.head_dim)
    dtype = self.precision.dtype
    return KVCache(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype),
                   jnp.full((batch, slots), -1, jnp.int32))

  def key_values(self, x_BTD: jax.Array, pos_BT: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Rotated keys and values of new tokens (what a cache stores)."""
    dtype = self.precision.dtype
    x_BTD = x_BTD.astype(dtype)
    k_BTKH = jnp.einsum("btd,dkh->btkh", x_BTD, self.w_k[...].astype(dtype))
    v_BTKH = jnp.einsum("btd,dkh->btkh", x_BTD, self.w_v[...].astype(dtype))
    k_BTKH = rope(k_BTKH, pos_BT, self.rope_theta)
    names = ("batch", "seq", "kv_heads", "head_dim")
    return sharding.constrain(k_BTKH, names), sharding.constrain(v_BTKH, names)

  def __call__(self, x_BTD: jax.Array, pos_BT: jax.Array, window: Window,
               cache: KVCache | None = None) -> tuple[jax.Array, KVCache | None]:
    """Attends the new tokens at absolute positions `pos_BT` to what `window` lets them see.

    Without `cache` they are a whole sequence at positions 0..T-1, attended by the layer's
    kernel. With one they see the cached tokens, then each other, under `attention_mask` of
    their positions, and are written into it afterwards (queries of the new tokens may still
    see the keys they overwrite). Returns the output and the cache.
    """
    dtype = self.precision.dtype
    x_BTD = x_BTD.astype(dtype)
    q_BTNH = jnp.einsum("btd,dnh->btnh", x_BTD, self.w_q[...].astype(dtype))
    q_BTNH = sharding.constrain(rope(q_BTNH, pos_BT, self.rope_theta),
                                ("batch", "seq", "heads", "head_dim"))
    k_BTKH, v_BTKH = self.key_values(x_BTD, pos_BT)
    if cache is None:
      out_BTNH = attention_kernels.sequence_attention(q_BTNH, k_BTKH, v_BTKH, window,
                                                      self.kernel)
    else:
      keys_pos_BS = jnp.concatenate([cache.pos_BS, pos_BT], axis=1)
      mask_BTS = attention_mask(pos_BT, keys_pos_BS, window.turn_len, window.window_turns,
                                window.sinks)
      parts = [(cache.k_BSKH.astype(dtype), cache.v_BSKH.astype(dtype)), (k_BTKH, v_BTKH)]
      out_BTNH = attention_kernels.attention_over_parts(q_BTNH, parts, mask_BTS)
      cache = cache.write(k_BTKH, v_BTKH, pos_BT, window.sinks)
    y_BTD = jnp.einsum("btnh,nhd->btd", out_BTNH, self.w_o[...].astype(dtype))
    return sharding.constrain(y_BTD, ("batch", "seq", "embed")), cache
