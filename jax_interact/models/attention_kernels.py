"""Attention of a whole sequence at positions 0..T-1 under the training mask, by kernel.

`sequence_attention` computes softmax(q k^T / sqrt(head_dim)) v (softmax in float32) under
`attention_mask(arange(T), arange(T), ...)`, the sliding window of whole micro-turns plus sinks,
with one of these kernels (config `model.attention`):

- "xla": the reference: the [T, T] mask materialised, every logit computed.
- "blocked": plain XLA over query blocks of BLOCK tokens, each attending only to the keys it may
  see (the sinks, then its window up to its causal end), so entirely masked key blocks are never
  computed. The fastest on CPU; equal to "xla" up to float reordering.
- "cudnn": cuDNN flash attention (GPU, bfloat16 or float16). Plain causal when the window covers
  the sequence (every shipped config trains so); otherwise causal plus the mask as a bias, and
  cuDNN's token sliding window (a superset of the micro-turn window) to skip blocks when there
  are no sinks to keep.
- "splash": splash attention (TPU Pallas) with the mask as a block-sparse NumpyMask, so fully
  masked blocks are skipped; run per batch row and, inside a mesh, per shard.

`choose` resolves "auto" by platform: it is the one place that picks a kernel.

Decoding (new tokens against a cache, under a mask of their positions) runs
`attention_over_parts` in XLA on every platform: one softmax over the cached keys and the new
ones without concatenating them (which would copy the whole cache in every layer of every step).
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.pallas.ops.tpu import splash_attention as splash

from jax_interact import sharding
from jax_interact.models.window import Window, attention_mask

KERNELS = ("auto", "xla", "blocked", "cudnn", "splash")
BLOCK = 128  # query tokens per block of the "blocked" kernel
_SPLASH_BLOCK = 512  # largest splash tile; sequences are padded to a multiple of the tile
# Logit of a masked key: finite, so a query that sees nothing (a slot not in use) averages the
# values instead of producing NaN, as jax.nn.dot_product_attention does.
_MASKED = -0.7 * float(np.finfo(np.float32).max)


def choose(name: str, dtype) -> str:
  """The kernel `name` (config model.attention) stands for on this platform: "auto" is cuDNN on
  GPUs in bfloat16/float16, splash on TPUs and "blocked" otherwise (CPU, GPUs in float32)."""
  if name != "auto":
    return name
  platform = jax.default_backend()
  if platform == "gpu" and jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16):
    return "cudnn"
  if platform == "tpu":
    return "splash"
  return "blocked"


def window_covers(seq_len: int, window: Window) -> bool:
  """Whether every earlier token of a sequence is in the window: the mask is plain causal."""
  return (seq_len - 1) // window.turn_len < window.window_turns


def sequence_attention(q_BTNH: jax.Array, k_BTKH: jax.Array, v_BTKH: jax.Array, window: Window,
                       kernel: str) -> jax.Array:
  """Attention output [B, T, N, H] of queries, keys and values at positions 0..T-1 (GQA: the
  N query heads share the K key/value heads in groups)."""
  return _KERNELS[choose(kernel, q_BTNH.dtype)](q_BTNH, k_BTKH, v_BTKH, window)


def attention_over_parts(q_BTNH: jax.Array, parts: Sequence[tuple[jax.Array, jax.Array]],
                         mask_BTS: jax.Array) -> jax.Array:
  """Attention output [B, T, N, H] of queries over the keys/values of several parts ([B, S_i,
  K, H] each: the cache, then the new tokens), one softmax across all: `mask_BTS` has the
  parts' key slots side by side in the same order."""
  b, t, n, h = q_BTNH.shape
  kv_heads = parts[0][0].shape[2]
  groups = n // kv_heads
  # Head-major matrices: each kv head's query group is one [G * T, H] matrix.
  q_BKMH = jnp.transpose(q_BTNH.reshape(b, t, kv_heads, groups, h), (0, 2, 3, 1, 4)).reshape(
      b, kv_heads, groups * t, h)
  starts = np.cumsum([0] + [k.shape[1] for k, _ in parts])
  visible = [(k_BSKH, v_BSKH, mask_BTS[:, :, start:stop])
             for (k_BSKH, v_BSKH), start, stop in zip(parts, starts[:-1], starts[1:])
             if stop > start]
  logits = []
  for k_BSKH, _, mask_BTs in visible:
    logits_BKMS = jnp.einsum("bkmh,bksh->bkms", q_BKMH, jnp.swapaxes(k_BSKH, 1, 2),
                             preferred_element_type=jnp.float32) * (1.0 / math.sqrt(h))
    logits.append(jnp.where(mask_BTs[:, None, None],
                            logits_BKMS.reshape(b, kv_heads, groups, t, -1), _MASKED))
  peak_BKGT1 = functools.reduce(jnp.maximum, [jnp.max(x, axis=-1, keepdims=True) for x in logits])
  weights = [jnp.exp(x - peak_BKGT1) for x in logits]
  total_BKGT1 = sum(jnp.sum(w, axis=-1, keepdims=True) for w in weights)
  out_BKMH = 0
  for w_BKGTS, (_, v_BSKH, _) in zip(weights, visible):
    p_BKMS = (w_BKGTS / total_BKGT1).reshape(b, kv_heads, groups * t, -1).astype(v_BSKH.dtype)
    out_BKMH = out_BKMH + jnp.einsum("bkms,bksh->bkmh", p_BKMS, jnp.swapaxes(v_BSKH, 1, 2))
  return jnp.transpose(out_BKMH.reshape(b, kv_heads, groups, t, h), (0, 3, 1, 2, 4)).reshape(
      b, t, n, h)


def _xla(q_BTNH, k_BTKH, v_BTKH, window: Window) -> jax.Array:
  pos_T = jnp.arange(q_BTNH.shape[1])
  mask_TT = attention_mask(pos_T, pos_T, window.turn_len, window.window_turns, window.sinks)
  return jax.nn.dot_product_attention(q_BTNH, k_BTKH, v_BTKH, mask=mask_TT[None, None])


def _blocked(q_BTNH, k_BTKH, v_BTKH, window: Window) -> jax.Array:
  seq_len, sinks = q_BTNH.shape[1], window.sinks
  outputs = []
  for start in range(0, seq_len, BLOCK):
    stop = min(start + BLOCK, seq_len)
    # The block's first query has the earliest window; later ones see a subset of its keys.
    first = max(0, (start // window.turn_len - window.window_turns + 1) * window.turn_len)
    if first <= sinks:
      key_pos = jnp.arange(stop)
      k_BSKH, v_BSKH = k_BTKH[:, :stop], v_BTKH[:, :stop]
    else:
      key_pos = jnp.concatenate([jnp.arange(sinks), jnp.arange(first, stop)])
      k_BSKH = jnp.concatenate([k_BTKH[:, :sinks], k_BTKH[:, first:stop]], axis=1)
      v_BSKH = jnp.concatenate([v_BTKH[:, :sinks], v_BTKH[:, first:stop]], axis=1)
    mask_TS = attention_mask(jnp.arange(start, stop), key_pos, window.turn_len,
                             window.window_turns, sinks)
    outputs.append(jax.nn.dot_product_attention(q_BTNH[:, start:stop], k_BSKH, v_BSKH,
                                                mask=mask_TS[None, None]))
  return jnp.concatenate(outputs, axis=1)


def _flash(q_BTNH, k_BTKH, v_BTKH, window: Window, implementation: str = "cudnn") -> jax.Array:
  """The arguments a flash kernel of `jax.nn.dot_product_attention` needs for the exact mask
  (`implementation="xla"` runs the same arguments anywhere, which is how they are tested)."""
  seq_len = q_BTNH.shape[1]
  # cuDNN trains on even lengths only (plain causal too: seen on an H200, jax 0.11.2): an odd
  # sequence gets one more token, which comes after every real query and so is never seen.
  padded = seq_len + seq_len % 2
  q_BTNH, k_BTKH, v_BTKH = (_pad_sequence(x, padded) for x in (q_BTNH, k_BTKH, v_BTKH))
  if window_covers(seq_len, window):
    return jax.nn.dot_product_attention(q_BTNH, k_BTKH, v_BTKH, is_causal=True,
                                        implementation=implementation)[:, :seq_len]
  pos_T = jnp.arange(padded)
  mask_TT = attention_mask(pos_T, pos_T, window.turn_len, window.window_turns, window.sinks)
  left = None if window.sinks else (window.window_turns * window.turn_len - 1, 0)
  out_BTNH = jax.nn.dot_product_attention(q_BTNH, k_BTKH, v_BTKH, mask=mask_TT[None, None],
                                          is_causal=True, local_window_size=left,
                                          implementation=implementation)
  return out_BTNH[:, :seq_len]


def _splash(q_BTNH, k_BTKH, v_BTKH, window: Window, interpret: bool = False) -> jax.Array:
  seq_len, head_dim = q_BTNH.shape[1], q_BTNH.shape[3]
  block = min(_SPLASH_BLOCK, _round_up(seq_len, 128))
  padded = _round_up(seq_len, block)
  pos_T = np.arange(padded)
  mask_TT = np.asarray(attention_mask(pos_T, pos_T, window.turn_len, window.window_turns,
                                      window.sinks))
  sizes = splash.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block,
                            block_q_dkv=block, block_kv_dkv=block, block_kv_dkv_compute=block,
                            block_q_dq=block, block_kv_dq=block)

  def per_shard(q_BTNH, k_BTKH, v_BTKH):
    heads = q_BTNH.shape[2]
    kernel = splash.make_splash_mha(splash.MultiHeadMask([splash.NumpyMask(mask_TT)] * heads),
                                    head_shards=1, q_seq_shards=1, block_sizes=sizes,
                                    interpret=interpret)
    # splash takes [heads, T, head_dim] per row and no softmax scale: the queries carry it.
    q_BNTH, k_BKTH, v_BKTH = (jnp.swapaxes(_pad_sequence(x, padded), 1, 2)
                              for x in (q_BTNH * (1.0 / math.sqrt(head_dim)), k_BTKH, v_BTKH))
    return jnp.swapaxes(jax.vmap(kernel)(q_BNTH, k_BKTH, v_BKTH), 1, 2)[:, :seq_len]

  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty:
    return per_shard(q_BTNH, k_BTKH, v_BTKH)
  q_spec = sharding.spec(("batch", None, "heads", None))
  kv_spec = sharding.spec(("batch", None, "kv_heads", None))
  return jax.shard_map(per_shard, in_specs=(q_spec, kv_spec, kv_spec), out_specs=q_spec,
                       check_vma=False)(q_BTNH, k_BTKH, v_BTKH)


def _pad_sequence(x_BT: jax.Array, length: int) -> jax.Array:
  return jnp.pad(x_BT, [(0, 0), (0, length - x_BT.shape[1])] + [(0, 0)] * (x_BT.ndim - 2))


def _round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


_KERNELS = {"xla": _xla, "blocked": _blocked, "cudnn": _flash, "splash": _splash}
