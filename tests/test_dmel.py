"""dMel: quantisation round trip, streaming = whole track, no lookahead, sensible log range."""

import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from jax_interact.config import defaults
from jax_interact.streams import dmel
from jax_interact.streams.layout import Layout

STREAMS = {"default": defaults().stream, "tiny": tiny.get_config().stream}


def speechlike(seconds, seed=0):
  """Noise bursts through a few resonances: broadband energy that comes and goes."""
  rng = np.random.default_rng(seed)
  n = int(16000 * seconds)
  x = rng.normal(0, 1, n)
  t = np.arange(n) / 16000
  for f in (300, 900, 2400):
    x += 3 * np.sin(2 * np.pi * f * t + rng.uniform(0, 6))
  envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
  return (0.03 * x * envelope).astype(np.float32)


def test_round_trip_within_one_bin():
  spec = dmel.DMelSpec.from_config(defaults().stream)
  values = np.random.default_rng(0).uniform(spec.log_min - 3, spec.log_max + 3, (1000, 80))
  bins = dmel.quantize(values, spec)
  assert bins.min() == 0 and bins.max() == spec.bins - 1
  error = np.abs(dmel.dequantize(bins, spec) - np.clip(values, spec.log_min, spec.log_max))
  assert error.max() <= dmel.bin_width(spec) / 2 + 1e-5
  assert np.array_equal(dmel.quantize(dmel.dequantize(bins, spec), spec), bins)


def test_jax_and_numpy_share_the_arithmetic():
  spec = dmel.DMelSpec.from_config(defaults().stream)
  values = np.random.default_rng(1).uniform(-14, 5, (64, 80)).astype(np.float32)
  bins = dmel.quantize(values, spec)
  assert np.array_equal(np.asarray(dmel.quantize(jnp.asarray(values), spec, xp=jnp)), bins)
  assert np.allclose(np.asarray(dmel.dequantize(jnp.asarray(bins), spec, xp=jnp)),
                     dmel.dequantize(bins, spec), atol=1e-6)


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_chunk_by_chunk_equals_whole_track(name):
  stream = STREAMS[name]
  spec, layout = dmel.DMelSpec.from_config(stream), Layout.from_config(stream)
  x = speechlike(1.0)
  whole = dmel.dmel(x, spec)
  assert whole.shape == (5 * layout.frames_per_turn, stream.n_mels) and whole.dtype == np.uint8
  context, parts = None, []
  for chunk in x.reshape(5, layout.chunk_samples):
    parts.append(dmel.dmel(chunk, spec, context))
    context = dmel.next_context(context, chunk, spec)
  assert all(p.shape == (layout.frames_per_turn, stream.n_mels) for p in parts)
  assert np.array_equal(np.concatenate(parts), whole)
  assert len(np.unique(whole)) > spec.bins // 2  # the test signal uses the range


def test_frames_of_a_micro_turn_never_see_later_samples():
  spec = dmel.DMelSpec.from_config(defaults().stream)
  layout = Layout.from_config(defaults().stream)
  x = speechlike(0.6)
  changed = x.copy()
  changed[2 * layout.chunk_samples:] = 0.9  # everything from micro-turn 2 on
  first_two = slice(0, 2 * layout.frames_per_turn)
  assert np.array_equal(dmel.log_mel(x, spec)[first_two], dmel.log_mel(changed, spec)[first_two])
  assert not np.array_equal(dmel.log_mel(x, spec), dmel.log_mel(changed, spec))


def test_log_range_covers_silence_to_loud_speech():
  spec = dmel.DMelSpec.from_config(defaults().stream)
  assert (dmel.dmel(np.zeros(3200, np.float32), spec) == dmel.SILENCE_BIN).all()
  levels = [dmel.log_mel(speechlike(0.5) * gain, spec).max() for gain in (0.1, 1.0, 3.0)]
  assert spec.log_min < levels[0] < levels[1] < levels[2] < spec.log_max
  quiet_noise = np.random.default_rng(0).normal(0, 1e-4, 3200).astype(np.float32)
  assert (dmel.dmel(quiet_noise, spec) == dmel.SILENCE_BIN).mean() > 0.95


def test_filterbank_and_pseudo_inverse():
  spec = dmel.DMelSpec.from_config(defaults().stream)
  fb = spec.filterbank
  assert fb.shape == (spec.n_fft // 2 + 1, spec.n_mels)
  assert (fb.max(axis=0) > 0.3).all() and np.isclose(fb.max(), 1.0, atol=0.05)  # none empty
  pinv = dmel.mel_pseudo_inverse(fb)
  assert pinv.shape == (spec.n_mels, spec.n_fft // 2 + 1)
  mel = np.random.default_rng(0).uniform(0, 1, (4, spec.n_mels)).astype(np.float32)
  assert np.allclose(mel @ pinv @ fb, mel, atol=1e-3)
