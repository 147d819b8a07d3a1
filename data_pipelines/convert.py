"""`jax-interact data convert`: a real two-channel conversation -> a one-episode dataset.

Input: an audio file (WAV or FLAC, any sample rate) with the user on channel 0 and the model
on channel 1, and a JSON list of words `{"speaker": "user"|"model", "text", "start_s",
"end_s"}`. Everything is checked before anything is written; the dataset is written atomically
by `data_pipelines.dataset.write_dataset`.
"""

from __future__ import annotations

import json
import math
import os
import pathlib

import numpy as np

from data_pipelines import dataset
from jax_interact import config as config_lib
from jax_interact.errors import InputError
from jax_interact.streams import audio
from jax_interact.streams.episode import SPEAKERS, Episode, Word
from jax_interact.streams.timing import SAMPLE_RATE

WORD_KEYS = ("speaker", "text", "start_s", "end_s")
_TOLERANCE_S = 1e-3  # word times may overshoot the audio by a rounding error


def load_channels(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
  """(user, model) int16 tracks at 16 kHz from a two-channel file."""
  audio_CS, sample_rate = audio.load_audio(path)
  if audio_CS.shape[0] != 2:
    raise InputError(str(path), f"expected 2 channels (0: user, 1: model), got "
                     f"{audio_CS.shape[0]}")
  user, model = (audio.to_int16(audio.to_mono_16k(c, sample_rate, SAMPLE_RATE)) for c in audio_CS)
  return user, model


def load_words(path: str | os.PathLike, duration_s: float) -> list[Word]:
  """The words JSON, checked field by field against the format and the audio's duration."""
  where = str(path)
  if not pathlib.Path(path).is_file():
    raise InputError(where, "words file not found")
  try:
    items = json.loads(pathlib.Path(path).read_text())
  except json.JSONDecodeError as e:
    raise InputError(where, f"malformed JSON ({e.msg} at line {e.lineno} column {e.colno})"
                     ) from None
  except UnicodeDecodeError:
    raise InputError(where, "not a UTF-8 text file") from None
  if not isinstance(items, list):
    raise InputError(where, "expected a JSON list of {speaker, text, start_s, end_s} objects")
  words = []
  for i, item in enumerate(items):
    field = f"{where}[{i}]"
    if not isinstance(item, dict):
      raise InputError(field, "expected an object with keys speaker, text, start_s, end_s")
    for key in WORD_KEYS:
      if key not in item:
        raise InputError(f"{field}.{key}", "missing")
    if item["speaker"] not in SPEAKERS:
      raise InputError(f"{field}.speaker", f"got {item['speaker']!r}, expected one of "
                       f"{list(SPEAKERS)}")
    if not isinstance(item["text"], str) or not item["text"].strip():
      raise InputError(f"{field}.text", "expected a non-empty string")
    for key in ("start_s", "end_s"):
      value = item[key]
      if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
          value):
        raise InputError(f"{field}.{key}", f"got {value!r}, expected a finite number of seconds")
    start, end = float(item["start_s"]), float(item["end_s"])
    if end < start:
      raise InputError(field, f"end_s {end} is before start_s {start}")
    if start < 0 or end > duration_s + _TOLERANCE_S:
      raise InputError(field, f"[{start}, {end}] s lies outside the audio [0, {duration_s:.3f}] s")
    words.append(Word(item["speaker"], item["text"].strip(), start, end))
  return sorted(words, key=lambda w: (w.start_s, w.end_s))


def conversation_episode(audio_path: str | os.PathLike, words_path: str | os.PathLike,
                         index: int = 0) -> Episode:
  """The episode of a two-channel recording and its word timings (no video)."""
  user, model = load_channels(audio_path)
  words = load_words(words_path, len(user) / SAMPLE_RATE)
  stream = config_lib.defaults().stream
  episode = Episode(
      index=index, task="conversation", user_audio=user, model_audio=model,
      video=np.zeros((0, stream.video_height, stream.video_width, 3), np.uint8),
      video_times_s=np.zeros(0, np.float32), words=words,
      annotations={"source_audio": pathlib.Path(audio_path).name,
                   "source_words": pathlib.Path(words_path).name})
  episode.validate(str(words_path))
  return episode


def main(args) -> int:
  episode = conversation_episode(args.audio, args.words)
  dataset.write_dataset(args.out, [episode])
  counts = {s: sum(w.speaker == s for w in episode.words) for s in SPEAKERS}
  print(f"wrote {args.out}: 1 episode, {episode.duration_s:.1f} s, {counts['user']} user words, "
        f"{counts['model']} model words")
  return 0
