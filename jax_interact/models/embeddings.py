"""Input embeddings of every slot kind (SPEC §3): text table, dMel bag, hMLP video stem, time.

- text: one table for every text slot (typed text, background results, transcript, model text).
- dMel bag of embeddings: sum over (frame, channel) of E[frame, channel, bin]. User audio and
  fed-back model audio share one table; the slot-kind embedding added at every position tells
  them apart. Both carry the same kind of signal (speech mel), so sharing doubles the data each
  row sees and halves the parameters.
- video: the hMLP stem of Touvron et al. 2022 on each 40x40 patch, one token per patch. Its
  progressive patchify uses non-overlapping stages of 4x4, 2x2 and (P/8)x(P/8) pixels
  (40 = 4 * 2 * 5): the first two stages are those of the paper; the last stage covers the
  remaining 5x5 grid instead of 2x2, so a 40x40 patch becomes one token without resizing.
  Each stage is a linear map of its sub-patch followed (except the last) by RMSNorm and GELU.
- time: sinusoidal features of the micro-turn's wall time t*T (seconds, periods from 0.4 s to
  about 3 h) through a learned linear map, added on the boundary token.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jax_interact.errors import ConfigError
from jax_interact.models.layers import Dense, Precision, RMSNorm, param

TIME_FEATURES = 64


class TextEmbed(nnx.Module):
  """Token id -> vector, from a [vocab, d] table."""

  def __init__(self, vocab_size: int, d_model: int, precision: Precision, *, rngs: nnx.Rngs):
    self.precision = precision
    self.table = param(rngs, (vocab_size, d_model), ("vocab", "embed"), precision, std=1.0)

  def __call__(self, ids: jax.Array) -> jax.Array:
    return jnp.take(self.table[...], ids, axis=0).astype(self.precision.dtype)

  def decode(self, query: jax.Array) -> jax.Array:
    """float32 logits [..., vocab] of vectors [..., d] scored against the table, scaled by
    1/sqrt(d) (a tied text head)."""
    table = self.table[...].astype(query.dtype)
    logits = jnp.einsum("...d,vd->...v", query, table, preferred_element_type=jnp.float32)
    return logits * (1.0 / query.shape[-1] ** 0.5)


class DMelBag(nnx.Module):
  """dMel bins [..., k, M] -> sum over (frame, channel) of E[frame, channel, bin] ([..., d])."""

  def __init__(self, frames: int, n_mels: int, bins: int, d_model: int, precision: Precision, *,
               rngs: nnx.Rngs):
    self.precision = precision
    self.bins = bins
    self.table = param(rngs, (frames, n_mels, bins, d_model), (None, None, None, "embed"),
                       precision, std=1.0 / math.sqrt(frames * n_mels))

  def __call__(self, bins: jax.Array) -> jax.Array:
    dtype = self.precision.dtype
    one_hot = jax.nn.one_hot(bins, self.bins, dtype=dtype)  # [..., k, M, bins]
    return jnp.einsum("...fmb,fmbd->...d", one_hot, self.table[...].astype(dtype))


def _patchify(x_HWC: jax.Array, k: int) -> jax.Array:
  """[..., H, W, C] -> [..., H/k, W/k, k*k*C]: non-overlapping k x k sub-patches."""
  *lead, h, w, c = x_HWC.shape
  x = x_HWC.reshape(*lead, h // k, k, w // k, k, c)
  x = jnp.moveaxis(x, -4, -3)  # [..., H/k, W/k, k, k, C]
  return x.reshape(*lead, h // k, w // k, k * k * c)


class HMLPStem(nnx.Module):
  """uint8 RGB patch [..., P, P, C] -> one token [..., d] (see the module docstring). With
  C = 6 (stream.video_motion) channels 3-5 are the previous micro-turn's patch, and the stem
  reads the patch and its change since then."""

  def __init__(self, patch: int, channels: int, d_model: int, precision: Precision, *,
               rngs: nnx.Rngs):
    if patch % 8:
      raise ConfigError("config.stream.patch", f"got {patch}, expected a multiple of 8 "
                        "(hMLP stages 4x4, 2x2, patch/8 x patch/8)")
    width = max(d_model // 4, 16)
    self.kernels = (4, 2, patch // 8)
    self.stage1 = Dense(4 * 4 * channels, width, (None, "embed"), precision, rngs=rngs, use_bias=True)
    self.norm1 = RMSNorm(width, precision)
    self.stage2 = Dense(2 * 2 * width, width, (None, "embed"), precision, rngs=rngs, use_bias=True)
    self.norm2 = RMSNorm(width, precision)
    self.stage3 = Dense(self.kernels[2] ** 2 * width, d_model, (None, "embed"), precision,
                        rngs=rngs, use_bias=True)

  def __call__(self, pixels: jax.Array) -> jax.Array:
    x = pixels.astype(jnp.float32) / 127.5
    now = x[..., :3]
    x = jnp.concatenate([now - 1.0, now - x[..., 3:]], axis=-1) if x.shape[-1] == 6 else now - 1.0
    x = jax.nn.gelu(self.norm1(self.stage1(_patchify(x, self.kernels[0]))))
    x = jax.nn.gelu(self.norm2(self.stage2(_patchify(x, self.kernels[1]))))
    x = self.stage3(_patchify(x, self.kernels[2]))  # [..., 1, 1, d]
    return x[..., 0, 0, :]


def time_features(turn: jax.Array, chunk_ms: int) -> jax.Array:
  """float32 [..., TIME_FEATURES]: sin/cos of the wall time t*T at geometric periods."""
  seconds = turn.astype(jnp.float32) * (chunk_ms / 1000.0)
  periods = jnp.geomspace(0.4, 10000.0, TIME_FEATURES // 2, dtype=jnp.float32)
  angles = seconds[..., None] * (2 * math.pi / periods)
  return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)
