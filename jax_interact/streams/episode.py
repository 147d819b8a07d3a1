"""The episode format (SPEC §8): one recorded or generated interaction.

An episode holds both speakers' audio (16 kHz mono int16, same length), video frames with
timestamps, word timings for both speakers, typed user text, background-job events and the
task's annotations (the expected-response windows scoring uses). `to_example`/`from_example`
convert to the flat dict of numpy arrays stored in ArrayRecord (data_pipelines/array_records.py).

Event dicts (`events`), by `type`:
  {"type": "typed", "time_s": t, "text": "..."}                           typed user text
  {"type": "delegate", "time_s": t, "task": "...",                        a background job
   "result_words": [{"text": w, "time_s": arrival}, ...]}
  task-specific facts (bounces, colour changes, ...) with at least "type" and "time_s".
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from typing import Any

import numpy as np

from jax_interact.errors import InputError
from jax_interact.streams.timing import SAMPLE_RATE

SPEAKERS = ("user", "model")


@dataclasses.dataclass
class Word:
  speaker: str  # "user" | "model"
  text: str
  start_s: float
  end_s: float

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


@dataclasses.dataclass
class Episode:
  index: int
  task: str
  user_audio: np.ndarray  # int16 [S] at SAMPLE_RATE
  model_audio: np.ndarray  # int16 [S]
  video: np.ndarray  # uint8 [F, H, W, 3]; F may be 0
  video_times_s: np.ndarray  # float32 [F]: frame timestamps
  words: list[Word]
  events: list[dict[str, Any]] = dataclasses.field(default_factory=list)
  annotations: dict[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def duration_s(self) -> float:
    return len(self.user_audio) / SAMPLE_RATE

  def num_turns(self, chunk_ms: int) -> int:
    return math.ceil(self.duration_s * 1000 / chunk_ms)

  def typed_text(self) -> list[dict[str, Any]]:
    return [e for e in self.events if e["type"] == "typed"]

  def user_words(self) -> list[Word]:
    return [w for w in self.words if w.speaker == "user"]

  def delegations(self) -> list[dict[str, Any]]:
    return [e for e in self.events if e["type"] == "delegate"]

  def task_events(self) -> list[dict[str, Any]]:
    """The task-specific facts (bounces, colour changes, ...): every event but typed text and
    background jobs."""
    return [e for e in self.events if e["type"] not in ("typed", "delegate")]

  def validate(self, where: str = "episode") -> None:
    """Raises InputError naming the first field that breaks the format."""
    for name in ("user_audio", "model_audio"):
      audio = getattr(self, name)
      if audio.dtype != np.int16 or audio.ndim != 1:
        raise InputError(f"{where}.{name}", f"expected int16 [samples], got "
                         f"{audio.dtype} {list(audio.shape)}")
    if len(self.user_audio) == 0:
      raise InputError(f"{where}.user_audio", "zero-length audio")
    if len(self.user_audio) != len(self.model_audio):
      raise InputError(f"{where}.model_audio", f"expected {len(self.user_audio)} samples "
                       f"(as user_audio), got {len(self.model_audio)}")
    if self.video.dtype != np.uint8 or self.video.ndim != 4 or self.video.shape[-1:] != (3,):
      raise InputError(f"{where}.video", f"expected uint8 [frames, H, W, 3], got "
                       f"{self.video.dtype} {list(self.video.shape)}")
    times = self.video_times_s
    if not np.issubdtype(times.dtype, np.floating) or times.shape != self.video.shape[:1]:
      raise InputError(f"{where}.video_times_s", f"expected float [{len(self.video)}] (one "
                       f"timestamp per frame), got {times.dtype} {list(times.shape)}")
    if not np.all(np.isfinite(times)):
      raise InputError(f"{where}.video_times_s", "contains NaN or inf")
    duration = self.duration_s
    for i, w in enumerate(self.words):
      field = f"{where}.words[{i}]"
      if w.speaker not in SPEAKERS:
        raise InputError(f"{field}.speaker", f"got {w.speaker!r}, expected one of {SPEAKERS}")
      if not (_is_number(w.start_s) and _is_number(w.end_s)):
        raise InputError(field, "start_s and end_s must be finite numbers")
      if w.end_s < w.start_s:
        raise InputError(field, f"end_s {w.end_s} is before start_s {w.start_s}")
      if w.start_s < 0 or w.end_s > duration + 1e-3:
        raise InputError(field, f"[{w.start_s}, {w.end_s}] s lies outside the audio "
                         f"[0, {duration:.3f}] s")
    for i, e in enumerate(self.events):
      if not isinstance(e, dict) or "type" not in e or not _is_number(e.get("time_s")):
        raise InputError(f"{where}.events[{i}]", "expected an object with 'type' and a finite "
                         "number 'time_s'")

  def to_example(self) -> dict[str, Any]:
    """Flat dict of arrays for the ArrayRecord store (structured fields as one JSON string)."""
    meta = {"task": self.task, "words": [w.to_dict() for w in self.words],
            "events": self.events, "annotations": self.annotations}
    return {
        "index": np.int64(self.index),
        "user_audio": self.user_audio,
        "model_audio": self.model_audio,
        "video": self.video,
        "video_times_s": self.video_times_s.astype(np.float32),
        "meta": json.dumps(meta),
    }

  @classmethod
  def from_example(cls, example: Any, where: str = "example") -> "Episode":
    """The episode of a stored record; raises InputError naming the first field that does not
    decode (arrays keep their stored dtype: `validate` checks them)."""
    if not isinstance(example, dict) or set(example) != set(EXAMPLE_KEYS):
      keys = sorted(map(str, example)) if isinstance(example, dict) else type(example).__name__
      raise InputError(where, f"expected the keys {list(EXAMPLE_KEYS)}, got {keys}")
    index = _array(example["index"], f"{where}.index")
    if index.shape != () or not np.issubdtype(index.dtype, np.integer):
      raise InputError(f"{where}.index", f"expected an integer, got {index.dtype} "
                       f"{list(index.shape)}")
    meta = _decode_meta(example["meta"], f"{where}.meta")
    arrays = {key: _array(example[key], f"{where}.{key}")
              for key in ("user_audio", "model_audio", "video", "video_times_s")}
    return cls(index=int(index), task=meta["task"], words=meta["words"], events=meta["events"],
               annotations=meta["annotations"], **arrays)

  def manifest_entry(self) -> dict[str, Any]:
    return {"index": self.index, "task": self.task, "duration_s": round(self.duration_s, 3),
            "words": [w.to_dict() for w in self.words], "events": self.events}


EXAMPLE_KEYS = ("index", "user_audio", "model_audio", "video", "video_times_s", "meta")


def _array(value: Any, where: str) -> np.ndarray:
  try:
    return np.asarray(value)
  except (TypeError, ValueError) as e:  # e.g. ragged nested lists
    raise InputError(where, f"expected an array ({e})") from None


def _is_number(value: Any) -> bool:
  """A finite real number (numpy's included), not a bool."""
  return (isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
          and math.isfinite(value))


def _decode_meta(meta: Any, where: str) -> dict[str, Any]:
  """The `meta` JSON of a record: task, words (as Word), events and annotations."""
  if isinstance(meta, np.ndarray) and meta.shape == ():
    meta = meta.item()
  try:
    meta = json.loads(meta.decode() if isinstance(meta, bytes) else meta)
  except (TypeError, ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
    raise InputError(where, f"expected JSON text ({type(e).__name__}: {e})") from None
  kinds = {"task": str, "words": list, "events": list, "annotations": dict}
  if not isinstance(meta, dict) or set(meta) != set(kinds):
    raise InputError(where, f"expected an object with the keys {list(kinds)}")
  for key, kind in kinds.items():
    if not isinstance(meta[key], kind):
      raise InputError(f"{where}.{key}", f"expected a {kind.__name__}")
  words = []
  for i, word in enumerate(meta["words"]):
    if not (isinstance(word, dict) and set(word) == {"speaker", "text", "start_s", "end_s"}
            and isinstance(word["speaker"], str) and isinstance(word["text"], str)
            and _is_number(word["start_s"]) and _is_number(word["end_s"])):
      raise InputError(f"{where}.words[{i}]", "expected {speaker, text, start_s, end_s} with "
                       "finite times")
    words.append(Word(**word))
  return {**meta, "words": words}
