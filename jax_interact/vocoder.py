"""Mel -> 16 kHz waveform: Griffin-Lim in JAX (baseline vocoder), whole track or streaming.

Magnitudes come from the mel pseudo-inverse; phases from a fixed number of Griffin-Lim
iterations (least-squares inverse STFT, re-impose the magnitudes, repeat). The framing is
dMel's (frame f is the window ending at (f+1)*hop), so frames generated for micro-turn t cover
its 200 ms window plus the `win - hop` samples before it.

Streaming (`init_stream`, `vocode_chunk`, `flush`): each call inverts one micro-turn's frames.
The overlap-add contributions of earlier frames to the first `win - hop` samples are carried in
the state and held fixed, so chunks join without a seam. Samples are emitted once every frame
covering them is known: each call returns chunk_samples samples and the stream lags the
micro-turn grid by `win - hop` samples (15 ms); `flush` returns the held-back tail.
Batches of sessions: `jax.vmap` over the state and the frames.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jax_interact.streams.dmel import DMelSpec, mel_pseudo_inverse

DEFAULT_ITERS = 32
_MIN_DENOMINATOR = 1e-2  # window-square sum below this (track edges) is floored, not divided by


class StreamState(NamedTuple):
  numerator: jax.Array  # float32 [win - hop]: earlier frames' windowed sum on the held-back tail
  denominator: jax.Array  # float32 [win - hop]: their window-square sum there
  phase: jax.Array  # float32 [n_fft // 2 + 1]: phase of the last frame vocoded


def _frame_index(n_frames: int, spec: DMelSpec) -> np.ndarray:
  return np.arange(n_frames)[:, None] * spec.hop + np.arange(spec.win)


def magnitudes(log_mel_FM: jax.Array, spec: DMelSpec) -> jax.Array:
  """float32 [frames, n_fft // 2 + 1]: STFT magnitudes whose mel power best fits exp(log_mel)."""
  window = spec.window
  power_FK = jnp.exp(log_mel_FM) @ jnp.asarray(mel_pseudo_inverse(spec.filterbank))
  return jnp.sqrt(jnp.maximum(power_FK, 0.0) * float(np.sum(window ** 2)))


def _griffin_lim(magnitude_FK: jax.Array, numerator_prefix: jax.Array,
                 denominator_prefix: jax.Array, last_phase_K: jax.Array, spec: DMelSpec,
                 n_iter: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(numerator, denominator, last frame's phase) over the F*hop + win - hop samples covered.

  The prefixes are the fixed contributions of earlier frames to the first win - hop samples.
  Initial phases continue `last_phase_K` as steady sinusoids at each bin's centre frequency.
  """
  n_frames = magnitude_FK.shape[0]
  index_FW = _frame_index(n_frames, spec)
  length = n_frames * spec.hop + spec.context
  window = jnp.asarray(spec.window)

  def prefix(values):
    return jnp.zeros(length, jnp.float32).at[:spec.context].set(values)

  def overlap_add(frames_FW):
    return jnp.zeros(length, jnp.float32).at[index_FW].add(frames_FW)

  denominator = overlap_add(jnp.broadcast_to(window ** 2, index_FW.shape)) + prefix(
      denominator_prefix)

  def synthesize(spectrum_FK):
    frames_FW = jnp.fft.irfft(spectrum_FK, n=spec.n_fft, axis=-1)[:, :spec.win] * window
    return overlap_add(frames_FW) + prefix(numerator_prefix)

  def estimate(numerator):
    return numerator / jnp.maximum(denominator, _MIN_DENOMINATOR)

  def unit_phase(numerator):
    spectrum_FK = jnp.fft.rfft(estimate(numerator)[index_FW] * window, n=spec.n_fft, axis=-1)
    return spectrum_FK / jnp.maximum(jnp.abs(spectrum_FK), 1e-8)

  advance_FK = (2 * np.pi * spec.hop / spec.n_fft) * np.outer(
      np.arange(1, n_frames + 1), np.arange(spec.n_fft // 2 + 1))
  initial = synthesize(magnitude_FK * jnp.exp(1j * (last_phase_K + advance_FK)))
  numerator = jax.lax.fori_loop(
      0, n_iter, lambda _, num: synthesize(magnitude_FK * unit_phase(num)), initial)
  return numerator, denominator, jnp.angle(unit_phase(numerator)[-1])


@functools.partial(jax.jit, static_argnames=("spec", "n_iter"))
def vocode(log_mel_FM: jax.Array, spec: DMelSpec, n_iter: int = DEFAULT_ITERS) -> jax.Array:
  """float32 [frames * hop]: the waveform of a whole track of log-mel frames."""
  state = init_stream(spec)
  numerator, denominator, _ = _griffin_lim(magnitudes(log_mel_FM, spec), state.numerator,
                                           state.denominator, state.phase, spec, n_iter)
  return (numerator / jnp.maximum(denominator, _MIN_DENOMINATOR))[spec.context:]


def init_stream(spec: DMelSpec) -> StreamState:
  zeros = jnp.zeros(spec.context, jnp.float32)
  return StreamState(zeros, zeros, jnp.zeros(spec.n_fft // 2 + 1, jnp.float32))


@functools.partial(jax.jit, static_argnames=("spec", "n_iter"))
def vocode_chunk(state: StreamState, log_mel_FM: jax.Array, spec: DMelSpec,
                 n_iter: int = DEFAULT_ITERS) -> tuple[StreamState, jax.Array]:
  """(state, float32 [frames * hop]): one micro-turn's frames, `win - hop` samples behind."""
  numerator, denominator, phase = _griffin_lim(magnitudes(log_mel_FM, spec), state.numerator,
                                               state.denominator, state.phase, spec, n_iter)
  done = log_mel_FM.shape[0] * spec.hop
  samples = numerator[:done] / jnp.maximum(denominator[:done], _MIN_DENOMINATOR)
  return StreamState(numerator[done:], denominator[done:], phase), samples


def flush(state: StreamState) -> jax.Array:
  """float32 [win - hop]: the held-back tail, when the stream ends."""
  return state.numerator / jnp.maximum(state.denominator, _MIN_DENOMINATOR)
