"""Audio files in and out, conversion to mono 16 kHz, and cutting into 200 ms micro-turn chunks.

Files are read with soundfile (WAV of any sample format, FLAC, ...) as float32 in [-1, 1].
Anything a user could hand us by mistake (a missing, truncated or non-audio file, an empty
recording, NaN/inf samples) raises InputError naming the file; unusual but valid audio
(another sample rate, several channels, 8-bit or float samples) is converted.
"""

from __future__ import annotations

import math
import os
import pathlib
import struct

import numpy as np
import scipy.signal
import soundfile

from jax_interact import atomic
from jax_interact.errors import InputError
from jax_interact.streams.layout import Layout
from jax_interact.streams.timing import SAMPLE_RATE

INT16_SCALE = 32768.0


def load_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
  """Reads an audio file: (float32 [channels, samples] in [-1, 1], sample_rate)."""
  where = str(path)
  if not pathlib.Path(path).is_file():
    raise InputError(where, "audio file not found")
  _check_wav_not_truncated(pathlib.Path(path))
  try:
    with soundfile.SoundFile(where) as f:
      declared = f.frames
      audio_SC = f.read(dtype="float32", always_2d=True)
      sample_rate = f.samplerate
  except (soundfile.LibsndfileError, RuntimeError) as e:
    raise InputError(where, f"not a readable audio file (expected WAV or FLAC): {e}") from None
  if len(audio_SC) < declared:
    raise InputError(where, f"truncated: the header declares {declared} samples, only "
                     f"{len(audio_SC)} could be read")
  if len(audio_SC) == 0:
    raise InputError(where, "zero-length audio (no samples)")
  if not np.isfinite(audio_SC).all():
    raise InputError(where, "contains NaN or infinite samples")
  return np.ascontiguousarray(audio_SC.T), sample_rate


def _check_wav_not_truncated(path: pathlib.Path) -> None:
  """libsndfile silently shortens a WAV whose data chunk runs past the end of the file."""
  size = path.stat().st_size
  with open(path, "rb") as f:
    if f.read(12)[:4] != b"RIFF":
      return
    while True:
      header = f.read(8)
      if len(header) < 8:
        return
      chunk_id, chunk_size = header[:4], struct.unpack("<I", header[4:])[0]
      if chunk_id == b"data":
        available = size - f.tell()
        # 0 and 0xFFFFFFFF mark a length left unwritten by a streaming recorder.
        if chunk_size not in (0, 0xFFFFFFFF) and chunk_size > available:
          raise InputError(str(path), f"truncated WAV: the data chunk declares {chunk_size} "
                           f"bytes, the file holds {available}")
        return
      f.seek(chunk_size + chunk_size % 2, os.SEEK_CUR)


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
  """Polyphase resampling along the last axis (float32)."""
  if rate_in == rate_out:
    return audio.astype(np.float32)
  g = math.gcd(rate_in, rate_out)
  out = scipy.signal.resample_poly(audio, rate_out // g, rate_in // g, axis=-1)
  return out.astype(np.float32)


def to_mono_16k(audio_CS: np.ndarray, sample_rate: int,
                target_rate: int = SAMPLE_RATE) -> np.ndarray:
  """float32 [samples] at `target_rate`: channels averaged (one speaker), then resampled."""
  mono = audio_CS.mean(axis=0) if audio_CS.ndim == 2 else audio_CS
  return np.clip(resample(mono, sample_rate, target_rate), -1.0, 1.0)


def to_int16(audio: np.ndarray) -> np.ndarray:
  """float [-1, 1] to int16 (clipped), the episode storage format."""
  return np.clip(np.round(audio * INT16_SCALE), -32768, 32767).astype(np.int16)


def from_int16(audio: np.ndarray) -> np.ndarray:
  return audio.astype(np.float32) / INT16_SCALE


def chunk(audio_16k: np.ndarray, layout: Layout) -> np.ndarray:
  """[n_turns, chunk_samples]: the 200 ms input windows, the last one zero-padded."""
  n = layout.chunk_samples
  n_turns = max(1, -(-len(audio_16k) // n))
  padded = np.zeros(n_turns * n, audio_16k.dtype)
  padded[:len(audio_16k)] = audio_16k
  return padded.reshape(n_turns, n)


def write_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int) -> None:
  """Writes float [-1, 1] mono [samples] or [channels, samples] as 16-bit PCM, atomically."""
  path = pathlib.Path(path)
  data = audio.T if audio.ndim == 2 else audio
  with atomic.file(path) as tmp:
    soundfile.write(tmp, np.clip(data, -1.0, 1.0), sample_rate, subtype="PCM_16")
