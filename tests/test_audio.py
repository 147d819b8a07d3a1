"""Audio files: every bad-input class is an InputError naming the file; unusual audio converts."""

import numpy as np
import pytest
import soundfile

from jax_interact.config import defaults
from jax_interact.errors import InputError
from jax_interact.streams import audio
from jax_interact.streams.layout import Layout


def tone(freq_hz, sample_rate, seconds=0.5, amplitude=0.5):
  t = np.arange(int(sample_rate * seconds)) / sample_rate
  return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def peak_hz(x, sample_rate):
  return np.fft.rfftfreq(len(x), 1 / sample_rate)[np.argmax(np.abs(np.fft.rfft(x)))]


def write(path, data, sample_rate=16000, subtype=None):
  soundfile.write(path, data, sample_rate, subtype=subtype)
  return path


def truncated(path):
  data = path.read_bytes()
  path.write_bytes(data[:len(data) // 2])
  return path


BAD_FILES = {
    "missing": lambda d: d / "absent.wav",
    "truncated_wav": lambda d: truncated(write(d / "cut.wav", tone(440, 16000))),
    "truncated_flac": lambda d: truncated(write(d / "cut.flac", tone(440, 16000))),
    "not_audio": lambda d: (d / "notes.wav").write_text("hello") and d / "notes.wav",
    "header_only": lambda d: (d / "h.wav").write_bytes(
        write(d / "full.wav", tone(440, 16000)).read_bytes()[:30]) and d / "h.wav",
    "zero_length": lambda d: write(d / "empty.wav", np.zeros(0, np.float32)),
    "nan": lambda d: write(d / "nan.wav", np.full(100, np.nan, np.float32), subtype="FLOAT"),
    "inf": lambda d: write(d / "inf.wav", np.r_[np.zeros(99), np.inf].astype(np.float32),
                           subtype="FLOAT"),
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_bad_audio_is_an_input_error_naming_the_file(tmp_path, kind):
  path = BAD_FILES[kind](tmp_path)
  with pytest.raises(InputError) as error:
    audio.load_audio(path)
  assert str(path) in str(error.value)
  assert "\n" not in str(error.value)


@pytest.mark.parametrize("name,sample_rate,subtype,channels", [
    ("48k.wav", 48000, "PCM_16", 1),
    ("stereo.wav", 16000, "PCM_16", 2),
    ("8bit.wav", 22050, "PCM_U8", 1),
    ("float.wav", 44100, "FLOAT", 1),
    ("voice.flac", 16000, "PCM_16", 1),
])
def test_unusual_audio_converts_to_mono_16k(tmp_path, name, sample_rate, subtype, channels):
  x = tone(1000, sample_rate)
  data = np.stack([x] * channels, axis=1) if channels > 1 else x
  audio_CS, rate = audio.load_audio(write(tmp_path / name, data, sample_rate, subtype))
  assert audio_CS.shape == (channels, len(x)) and audio_CS.dtype == np.float32
  assert rate == sample_rate
  mono = audio.to_mono_16k(audio_CS, rate)
  assert mono.ndim == 1 and abs(len(mono) - 8000) <= 1
  assert abs(peak_hz(mono, 16000) - 1000) <= 2
  assert 0.45 < np.abs(mono[1000:-1000]).max() < 0.55


def test_int16_round_trip():
  x = tone(300, 16000)
  assert np.abs(audio.from_int16(audio.to_int16(x)) - x).max() <= 1 / 32768
  assert audio.to_int16(np.array([2.0, -2.0])).tolist() == [32767, -32768]


def test_chunk_zero_pads_the_last_micro_turn():
  layout = Layout.from_config(defaults().stream)
  x = np.ones(2 * layout.chunk_samples + 10, np.float32)
  chunks = audio.chunk(x, layout)
  assert chunks.shape == (3, layout.chunk_samples)
  assert chunks[2, :10].tolist() == [1.0] * 10 and not chunks[2, 10:].any()


def test_write_audio_round_trip_leaves_no_temp_files(tmp_path):
  x = tone(500, 16000, amplitude=0.25)
  audio.write_audio(tmp_path / "out.wav", x, 16000)
  back, rate = audio.load_audio(tmp_path / "out.wav")
  assert rate == 16000 and np.abs(back[0] - x).max() < 1e-3
  assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]
