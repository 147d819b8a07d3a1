"""dMel (SPEC §3): log-mel frames with every channel quantised into ordinal intensity bins.

Framing. Frame f covers the `win` samples that END at (f+1)*hop: a frame looks back
`win - hop` samples (15 ms by default) and never ahead. Micro-turn t (samples
[t*chunk, (t+1)*chunk)) therefore owns exactly chunk_ms/hop_ms frames, computed from its own
samples plus the last `win - hop` samples of micro-turn t-1 (zeros before the start). No
lookahead: the frames of micro-turn t use only samples up to the end of micro-turn t, and
featurizing chunk by chunk (carrying that context) gives the same frames as a whole track.

Values. Mel power is |rfft(hann * x)|^2 / sum(hann^2) (the mean-square level of the window per
frequency bin) through triangular (Slaney) mel filters of unit peak; its natural log is floored,
clipped to [log_min, log_max] and cut into `bins` equal-width bins. `dequantize` returns bin
centres. `quantize`/`dequantize` take an array module `xp` (numpy or jax.numpy) so the model
re-quantises generated mel with the same arithmetic.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np

SILENCE_BIN = 0  # the lowest bin, where digital silence falls: what empty audio slots hold
# An audio token (k frames x M channels of bins) is *voiced* when its mean bin lies more than this
# above SILENCE_BIN. The synthetic model voice has a median mean bin near 3.5 while speaking and
# exactly SILENCE_BIN between utterances. The voicing targets of training and the evaluation's
# notion of "speaking" both come from `voiced`.
VOICED_MARGIN_BINS = 1.0


@dataclasses.dataclass(frozen=True)
class DMelSpec:
  """STFT, mel and quantisation settings; build with `from_config(config.stream)`."""

  sample_rate: int
  win: int  # samples per frame (25 ms)
  hop: int  # samples between frames (10 ms)
  n_mels: int
  log_min: float
  log_max: float
  bins: int

  @classmethod
  def from_config(cls, stream) -> DMelSpec:
    return cls(sample_rate=stream.sample_rate, win=stream.sample_rate * stream.win_ms // 1000,
               hop=stream.sample_rate * stream.hop_ms // 1000, n_mels=stream.n_mels,
               log_min=float(stream.dmel_log_min), log_max=float(stream.dmel_log_max),
               bins=stream.dmel_bins)

  @property
  def n_fft(self) -> int:
    return 1 << (self.win - 1).bit_length()

  @property
  def context(self) -> int:
    """Samples of the previous chunk a chunk's first frame looks back on."""
    return self.win - self.hop

  @functools.cached_property
  def window(self) -> np.ndarray:
    return hann(self.win)

  @functools.cached_property
  def filterbank(self) -> np.ndarray:
    return mel_filterbank(self.sample_rate, self.n_fft, self.n_mels)


def hann(n: int) -> np.ndarray:
  """Periodic Hann window (float32 [n]), whose hop-shifted squares overlap-add smoothly."""
  return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)


# Slaney's mel scale: linear below 1 kHz, logarithmic above. Unlike the HTK formula it keeps
# 80 low-frequency filters of a 512-point FFT at 16 kHz distinct (a full-rank filterbank).
_LINEAR_HZ_PER_MEL = 200.0 / 3
_LOG_START_HZ = 1000.0
_LOG_START_MEL = _LOG_START_HZ / _LINEAR_HZ_PER_MEL
_LOG_STEP = np.log(6.4) / 27.0


def hz_to_mel(hz):
  hz = np.asarray(hz, np.float64)
  log_part = _LOG_START_MEL + np.log(np.maximum(hz, _LOG_START_HZ) / _LOG_START_HZ) / _LOG_STEP
  return np.where(hz < _LOG_START_HZ, hz / _LINEAR_HZ_PER_MEL, log_part)


def mel_to_hz(mel):
  mel = np.asarray(mel, np.float64)
  log_part = _LOG_START_HZ * np.exp(_LOG_STEP * (np.maximum(mel, _LOG_START_MEL) - _LOG_START_MEL))
  return np.where(mel < _LOG_START_MEL, mel * _LINEAR_HZ_PER_MEL, log_part)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
  """float32 [n_fft // 2 + 1, n_mels]: triangular filters equally spaced in mel, peak 1."""
  fmax = sample_rate / 2 if fmax is None else fmax
  edges_hz = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
  freqs_hz = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
  lower, centre, upper = edges_hz[:-2], edges_hz[1:-1], edges_hz[2:]
  rising = (freqs_hz[:, None] - lower) / (centre - lower)
  falling = (upper - freqs_hz[:, None]) / (upper - centre)
  return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


def mel_pseudo_inverse(filterbank_FM: np.ndarray) -> np.ndarray:
  """float32 [n_mels, n_fft // 2 + 1]: least-squares map from mel power back to linear power."""
  return np.linalg.pinv(filterbank_FM.astype(np.float64)).astype(np.float32)


def frames(samples: np.ndarray, spec: DMelSpec, context: np.ndarray | None = None) -> np.ndarray:
  """float32 [len(samples) // hop, win]: frame f is the window ending at (f+1)*hop.

  `context` holds the `spec.context` samples preceding `samples` (zeros when None: the start).
  """
  if context is None:
    context = np.zeros(spec.context, np.float32)
  if len(context) != spec.context:
    raise ValueError(f"context must hold {spec.context} samples, got {len(context)}")
  x = np.concatenate([context, samples]).astype(np.float32)
  n_frames = len(samples) // spec.hop
  starts = np.arange(n_frames) * spec.hop
  return x[starts[:, None] + np.arange(spec.win)]


def power_spectrum(frames_FW: np.ndarray, spec: DMelSpec) -> np.ndarray:
  """float32 [frames, n_fft // 2 + 1]: windowed power per frequency bin."""
  window = spec.window
  spectrum = np.fft.rfft(frames_FW * window, n=spec.n_fft, axis=-1)
  return (np.abs(spectrum) ** 2 / np.sum(window ** 2)).astype(np.float32)


def log_mel(samples: np.ndarray, spec: DMelSpec, context: np.ndarray | None = None) -> np.ndarray:
  """float32 [len(samples) // hop, n_mels]: natural-log mel power, floored at log_min - 1."""
  mel = power_spectrum(frames(samples, spec, context), spec) @ spec.filterbank
  return np.log(np.maximum(mel, np.exp(spec.log_min - 1.0))).astype(np.float32)


def dmel(samples: np.ndarray, spec: DMelSpec, context: np.ndarray | None = None) -> np.ndarray:
  """uint8 [len(samples) // hop, n_mels]: quantised log-mel of float samples in [-1, 1]."""
  return quantize(log_mel(samples, spec, context), spec).astype(np.uint8)


def next_context(context: np.ndarray | None, chunk_samples: np.ndarray,
                 spec: DMelSpec) -> np.ndarray:
  """The context to pass with the chunk after `chunk_samples` (streaming featurization)."""
  if context is None:
    context = np.zeros(spec.context, np.float32)
  return np.concatenate([context, chunk_samples]).astype(np.float32)[-spec.context:]


def bin_width(spec: DMelSpec) -> float:
  return (spec.log_max - spec.log_min) / spec.bins


def quantize(log_mel_values: Any, spec: DMelSpec, xp: Any = np) -> Any:
  """int32 bins in [0, bins): log-mel clipped to [log_min, log_max], equal-width bins."""
  scaled = (xp.clip(log_mel_values, spec.log_min, spec.log_max) - spec.log_min) / bin_width(spec)
  return xp.clip(xp.floor(scaled), 0, spec.bins - 1).astype(xp.int32)


def dequantize(bins: Any, spec: DMelSpec, xp: Any = np) -> Any:
  """float32 log-mel at the centre of each bin."""
  return (spec.log_min + (xp.asarray(bins).astype(xp.float32) + 0.5) * bin_width(spec)).astype(
      xp.float32)


def voiced(bins_KFM: Any, xp: Any = np) -> Any:
  """bool [...]: which audio tokens (bins [..., k, M]) are voiced (see VOICED_MARGIN_BINS)."""
  mean_bin = xp.mean(xp.asarray(bins_KFM).astype(xp.float32), axis=(-2, -1))
  return mean_bin > SILENCE_BIN + VOICED_MARGIN_BINS
