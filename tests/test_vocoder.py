"""Griffin-Lim vocoder: a tone's dMel vocodes back to that tone, streamed chunks join seamlessly."""

import numpy as np

from jax_interact import vocoder
from jax_interact.config import defaults
from jax_interact.streams import dmel
from jax_interact.streams.layout import Layout

STREAM = defaults().stream
SPEC = dmel.DMelSpec.from_config(STREAM)
LAYOUT = Layout.from_config(STREAM)
N_ITER = 16


def tone_log_mel(freq_hz, n_turns):
  t = np.arange(n_turns * LAYOUT.chunk_samples) / 16000
  samples = (0.3 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)
  return dmel.dequantize(dmel.dmel(samples, SPEC), SPEC)  # through dMel, as the model sees it


def peak_hz(x):
  return np.fft.rfftfreq(len(x), 1 / 16000)[np.argmax(np.abs(np.fft.rfft(x)))]


def rms(x):
  return float(np.sqrt(np.mean(np.square(x))))


def test_whole_track_tone_peaks_at_its_frequency():
  log_mel = tone_log_mel(1000, 4)
  waveform = np.asarray(vocoder.vocode(log_mel, SPEC, N_ITER))
  assert waveform.shape == (4 * LAYOUT.chunk_samples,)
  assert abs(peak_hz(waveform) - 1000) < 40
  assert 0.1 < rms(waveform) < 0.5  # the tone's level (rms 0.21), within the mel smearing


def test_streaming_chunks_join_without_a_gap():
  n_turns, n = 5, LAYOUT.chunk_samples
  log_mel = tone_log_mel(1000, n_turns)
  state, parts = vocoder.init_stream(SPEC), []
  for t in range(n_turns):
    frames = log_mel[t * LAYOUT.frames_per_turn:(t + 1) * LAYOUT.frames_per_turn]
    state, samples = vocoder.vocode_chunk(state, frames, SPEC, N_ITER)
    parts.append(np.asarray(samples))
  assert all(p.shape == (n,) for p in parts)
  tail = np.asarray(vocoder.flush(state))
  assert tail.shape == (SPEC.context,)
  track = np.concatenate(parts + [tail])[SPEC.context:]  # the stream lags by `context` samples
  assert abs(peak_hz(track) - 1000) < 40
  # Re-analysed, frames around the joins match their targets as well as interior frames do:
  # a gap or a click at a join (e.g. a dropped overlap-add tail) triples their error.
  loud = log_mel > SPEC.log_min + 3
  error_F = np.array([np.abs(e[m]).mean() for e, m in zip(dmel.log_mel(track, SPEC) - log_mel,
                                                          loud)])
  per_turn = LAYOUT.frames_per_turn
  joins = [f for t in range(1, n_turns) for f in (t * per_turn - 1, t * per_turn)]
  interior = np.delete(error_F, joins + [0, len(error_F) - 1])
  assert error_F[joins].max() < 1.35 * np.median(interior)


def test_silence_mel_stays_quiet():
  frames = np.full((LAYOUT.frames_per_turn, STREAM.n_mels), dmel.dequantize(dmel.SILENCE_BIN, SPEC))
  samples = vocoder.vocode_chunk(vocoder.init_stream(SPEC), frames, SPEC, N_ITER)[1]
  assert rms(np.asarray(samples)) < 0.01
