"""Speech synthesis for the synthetic suite (SPEC §8): eSpeak NG audio at 16 kHz with word timings.

eSpeak NG ships inside the `espeakng-loader` wheel and is driven through ctypes. Synthesis runs
synchronously; a callback collects the samples and the WORD events, whose audio positions are
the word onsets (not estimates). A word ends where the next one starts (or the utterance ends),
pulled back over trailing silence, and starts at its first non-silent frame.

The library is process-global and not thread-safe: it is loaded once per process on first use
and every call holds a lock. eSpeak also carries a little synthesis state from one call to the
next (pitch-flutter phase, gain control, random noise); it is reset before every call, so an
utterance's audio depends only on its text and voice, and episodes are bitwise reproducible.
"""

from __future__ import annotations

import ctypes
import dataclasses
import math
import os
import pathlib
import re
import struct
import threading
import warnings
from typing import NamedTuple

import espeakng_loader
import numpy as np
import scipy.signal

from jax_interact.errors import InputError
from jax_interact.streams.timing import SAMPLE_RATE


@dataclasses.dataclass(frozen=True)
class Voice:
  """An eSpeak voice: `name` is a language with an optional variant ("en-us", "en+f3")."""
  name: str
  rate_wpm: int  # eSpeak accepts 80..450
  pitch: int  # 0..100, 50 is the voice's normal pitch


class TimedWord(NamedTuple):
  text: str
  start_s: float
  end_s: float


@dataclasses.dataclass(frozen=True)
class Utterance:
  audio: np.ndarray  # float32 [S] in [-1, 1] at SAMPLE_RATE
  words: list[TimedWord]  # one per whitespace-separated word of the text, relative to audio[0]

  @property
  def duration_s(self) -> float:
    return len(self.audio) / SAMPLE_RATE


USER_VOICES: tuple[Voice, ...] = (
    Voice("en-us", 165, 45),
    Voice("en-us+f3", 175, 60),
    Voice("en+f2", 160, 55),
    Voice("en-gb-x-rp+m1", 150, 40),
    Voice("en-gb-scotland+f4", 170, 50),
    Voice("en-029+m2", 185, 45),
    Voice("en-us-nyc+m3", 195, 35),
    Voice("en+f5", 155, 65),
)
MODEL_VOICE = Voice("en-us+m7", 180, 50)
# Languages the model translates into, with their eSpeak voice name.
TRANSLATION_LANGUAGES = {"spanish": "es", "french": "fr"}

_SILENCE_DB = -35.0  # frames this far below the utterance's loudest frame count as silence
_FRAME_S = 0.01

# eSpeak NG C API constants (speak_lib.h).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_DONT_EXIT = 0x8000
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_MSG_TERMINATED = 6
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE = 1
_PARAM_PITCH = 3


class _Event(ctypes.Structure):
  _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
              ("text_position", ctypes.c_int), ("length", ctypes.c_int),
              ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
              ("user_data", ctypes.c_void_p), ("id", ctypes.c_void_p)]


# Function-local statics of eSpeak's wave generator that outlive a call (ELF .symtab names,
# before the compiler's ".N" suffix).
_CARRIED_STATE = ("Flutter_ix", "agc", "cycle_count")

_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                  ctypes.POINTER(_Event))


class _Engine:
  """The process's eSpeak NG instance; `synthesize` returns native-rate audio and word onsets."""

  def __init__(self):
    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                 ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
    self.native_rate = lib.espeak_Initialize(
        _AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(),
        _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_DONT_EXIT)
    if self.native_rate <= 0:
      raise RuntimeError(f"espeak_Initialize failed with {self.native_rate}")
    self._lib = lib
    self._libc = ctypes.CDLL(None)
    self._carried_state = _static_ints(lib, _CARRIED_STATE)
    self._initial_state = [v.value for v in self._carried_state]
    if len(self._carried_state) != len(_CARRIED_STATE):
      warnings.warn("eSpeak NG build without a symbol table: synthesized audio will vary "
                    "slightly from call to call")
    self._callback = _SynthCallback(self._collect)  # kept alive: eSpeak holds the pointer
    lib.espeak_SetSynthCallback(self._callback)
    self._chunks: list[np.ndarray] = []
    self._onsets: list[tuple[int, int]] = []  # (text_position, audio_position_ms)

  def _collect(self, wav, num_samples: int, events) -> int:
    if wav and num_samples > 0:
      self._chunks.append(np.ctypeslib.as_array(wav, (num_samples,)).copy())
    i = 0
    while events[i].type not in (_EVENT_LIST_TERMINATED, _EVENT_MSG_TERMINATED):
      if events[i].type == _EVENT_WORD:
        self._onsets.append((events[i].text_position, events[i].audio_position))
      i += 1
    return 0

  def synthesize(self, text: str, voice: Voice) -> tuple[np.ndarray, list[tuple[int, int]]]:
    if self._lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
      raise InputError("voice.name", f"eSpeak NG has no voice {voice.name!r}")
    self._lib.espeak_SetParameter(_PARAM_RATE, voice.rate_wpm, 0)
    self._lib.espeak_SetParameter(_PARAM_PITCH, voice.pitch, 0)
    self._chunks, self._onsets = [], []
    for variable, value in zip(self._carried_state, self._initial_state):
      variable.value = value
    self._libc.srand(0)
    if hasattr(self._lib, "espeak_ng_SetRandSeed"):
      self._lib.espeak_ng_SetRandSeed(ctypes.c_long(0))
    data = text.encode()
    status = self._lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8,
                                    None, None)
    if status != 0:
      raise RuntimeError(f"espeak_Synth failed with {status}")
    audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
    return audio, self._onsets


def _static_ints(lib: ctypes.CDLL, names: tuple[str, ...]) -> list[ctypes.c_int]:
  """The library's static `int`s of these names, found through its ELF symbol table."""
  data = pathlib.Path(lib._name).read_bytes()
  if data[:4] != b"\x7fELF" or data[4:6] != b"\x02\x01":  # 64-bit little-endian only
    return []
  section_offset, = struct.unpack_from("<Q", data, 0x28)
  entry_size, count = struct.unpack_from("<HH", data, 0x3A)
  # (name, type, flags, addr, offset, size, link, info, addralign, entsize) per section
  sections = [struct.unpack_from("<IIQQQQIIQQ", data, section_offset + i * entry_size)
              for i in range(count)]
  offsets: dict[str, int] = {}
  for section in sections:
    if section[1] != 2:  # SHT_SYMTAB
      continue
    strings = sections[section[6]][4]
    for at in range(section[4], section[4] + section[5], 24):
      name_at, _, _, _, value, _ = struct.unpack_from("<IBBHQQ", data, at)
      end = data.index(b"\0", strings + name_at)
      name = data[strings + name_at:end].decode(errors="replace")
      offsets.setdefault(name.split(".")[0], value)
  if "espeak_Initialize" not in offsets:
    return []
  base = ctypes.cast(lib.espeak_Initialize, ctypes.c_void_p).value - offsets["espeak_Initialize"]
  return [ctypes.c_int.from_address(base + offsets[n]) for n in names if n in offsets]


_engine: _Engine | None = None
_lock = threading.Lock()


def _reset_lock_after_fork() -> None:
  global _lock
  _lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_lock_after_fork)


def synthesize(text: str, voice: Voice) -> Utterance:
  """Speaks `text` with `voice`: 16 kHz float audio and one timed word per word of the text."""
  global _engine
  spans = [m.span() for m in re.finditer(r"\S+", text)]
  if not spans:
    raise InputError("text", "expected at least one word to synthesize")
  with _lock:
    if _engine is None:
      _engine = _Engine()
    native_audio, onsets = _engine.synthesize(text, voice)
    native_rate = _engine.native_rate
  g = math.gcd(SAMPLE_RATE, native_rate)
  audio = scipy.signal.resample_poly(native_audio.astype(np.float32) / 32768.0,
                                     SAMPLE_RATE // g, native_rate // g).astype(np.float32)
  starts_s = _word_onsets(spans, onsets, len(text), len(audio) / SAMPLE_RATE)
  ends_s = np.append(starts_s[1:], len(audio) / SAMPLE_RATE)
  loud = _loud_frames(audio)
  words = [TimedWord(text[a:b], *_trim_silence(loud, start, end))
           for (a, b), start, end in zip(spans, starts_s, ends_s)]
  return Utterance(audio=audio, words=words)


def _word_onsets(spans: list[tuple[int, int]], onsets: list[tuple[int, int]], text_len: int,
                 duration_s: float) -> np.ndarray:
  """Start time of each word: its first WORD event (eSpeak gives numbers several).

  A word eSpeak gave no event is placed by interpolating over character positions.
  """
  word_starts = np.array([a for a, _ in spans])
  first_event_s: dict[int, float] = {}
  for position, ms in onsets:  # text_position counts characters from 1
    word = int(np.searchsorted(word_starts, position - 1, side="right")) - 1
    first_event_s.setdefault(max(word, 0), ms / 1000.0)
  known = sorted(first_event_s)
  chars = [spans[w][0] for w in known] + [text_len]
  times = [first_event_s[w] for w in known] + [duration_s]
  starts = np.interp(word_starts, chars, times)
  return np.minimum(np.maximum.accumulate(starts), duration_s)


def _loud_frames(audio: np.ndarray) -> np.ndarray:
  """bool [audio 10 ms frames]: louder than the utterance's loudest frame + _SILENCE_DB."""
  frame = round(_FRAME_S * SAMPLE_RATE)
  n = len(audio) // frame
  energy_db = 10 * np.log10(np.mean(audio[:n * frame].reshape(n, frame) ** 2, axis=1) + 1e-12)
  return energy_db > energy_db.max(initial=-120.0) + _SILENCE_DB


def _trim_silence(loud: np.ndarray, start_s: float, end_s: float) -> tuple[float, float]:
  """[start_s, end_s] shrunk to its first and last loud frames."""
  a, b = int(start_s / _FRAME_S), min(math.ceil(end_s / _FRAME_S), len(loud))
  inside = np.flatnonzero(loud[a:b])
  if len(inside) == 0:
    return float(start_s), float(end_s)
  return (max(float(start_s), float(a + inside[0]) * _FRAME_S),
          min(float(end_s), float(a + inside[-1] + 1) * _FRAME_S))
