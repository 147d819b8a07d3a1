"""Flow-matching head for audio output slots (SPEC §4): mel frames from a local hidden state.

An audio token is k frames of M mel channels. Targets are the dMel bins dequantised to their bin
centres and scaled to (-1, 1): x1 = 2 (bin + 0.5) / bins - 1, an affine image of the log-mel bin
centres of jax_interact.streams.dmel (so `unit_to_bins` re-quantises exactly as dmel does).
Conditional flow matching: x_t = (1 - t) x0 + t x1 with x0 ~ N(0, I), t ~ U(0, 1); a small MLP
predicts the velocity x1 - x0 from (x_t, t, hidden). Sampling integrates it with Euler steps.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jax_interact.models.layers import Dense, Precision

_T_FEATURES = 32


def bins_to_unit(bins: jax.Array, n_bins: int) -> jax.Array:
  """dMel bins -> float32 bin centres scaled to (-1, 1)."""
  return (bins.astype(jnp.float32) + 0.5) * (2.0 / n_bins) - 1.0


def unit_to_bins(x: jax.Array, n_bins: int) -> jax.Array:
  """Inverse of bins_to_unit for any real x (clipped to the valid bins), uint8."""
  bins = jnp.floor((x.astype(jnp.float32) + 1.0) * (n_bins / 2.0))
  return jnp.clip(bins, 0, n_bins - 1).astype(jnp.uint8)


def _flow_time_features(t: jax.Array) -> jax.Array:
  freqs = jnp.geomspace(1.0, 1000.0, _T_FEATURES // 2, dtype=jnp.float32)
  angles = t.astype(jnp.float32)[..., None] * freqs * (2 * math.pi)
  return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


class FlowHead(nnx.Module):
  """Velocity MLP v(x_t, t | h) for one audio token of `frames` x `n_mels` values."""

  def __init__(self, cond_dim: int, frames: int, n_mels: int, hidden: int, precision: Precision,
               *, rngs: nnx.Rngs):
    self.precision = precision
    self.frames = frames
    self.n_mels = n_mels
    size = frames * n_mels
    self.in_x = Dense(size, hidden, (None, "mlp"), precision, rngs=rngs, use_bias=True)
    self.in_t = Dense(_T_FEATURES, hidden, (None, "mlp"), precision, rngs=rngs)
    self.in_cond = Dense(cond_dim, hidden, ("embed", "mlp"), precision, rngs=rngs)
    self.hidden = Dense(hidden, hidden, (None, "mlp"), precision, rngs=rngs, use_bias=True)
    self.out = Dense(hidden, size, ("mlp", None), precision, rngs=rngs, use_bias=True)

  def velocity(self, x_NFM: jax.Array, t_N: jax.Array, cond_NC: jax.Array) -> jax.Array:
    """Predicted velocity, float32 [..., frames, n_mels] for x_t [..., frames, n_mels]."""
    lead = x_NFM.shape[:-2]
    x = x_NFM.reshape(*lead, self.frames * self.n_mels)
    h = jax.nn.silu(self.in_x(x) + self.in_t(_flow_time_features(t_N)) + self.in_cond(cond_NC))
    h = jax.nn.silu(self.hidden(h))
    return self.out(h, out_dtype=jnp.float32).reshape(x_NFM.shape)

  def loss(self, cond_NC: jax.Array, target_bins_NFM: jax.Array, n_bins: int,
           rng: jax.Array) -> jax.Array:
    """Conditional flow-matching loss per audio token: float32 [...] (mean over frames, mels)."""
    x1 = bins_to_unit(target_bins_NFM, n_bins)
    noise_rng, time_rng = jax.random.split(rng)
    x0 = jax.random.normal(noise_rng, x1.shape, jnp.float32)
    t = jax.random.uniform(time_rng, x1.shape[:-2], jnp.float32)
    x_t = (1.0 - t[..., None, None]) * x0 + t[..., None, None] * x1
    error = self.velocity(x_t, t, cond_NC) - (x1 - x0)
    return jnp.mean(jnp.square(error), axis=(-2, -1))

  def sample(self, cond_NC: jax.Array, x0_NFM: jax.Array, steps: int) -> jax.Array:
    """Euler integration from the noise `x0_NFM` (standard normal, float32 [..., frames,
    n_mels]): float32 mel in unit range, same shape."""
    x = x0_NFM
    for step in range(steps):
      t = jnp.full(cond_NC.shape[:-1], step / steps, jnp.float32)
      x = x + self.velocity(x, t, cond_NC) / steps
    return x
