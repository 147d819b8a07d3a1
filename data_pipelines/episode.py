"""The episode format (SPEC §8): one recorded or generated interaction.

An episode holds both speakers' audio (16 kHz mono int16, same length), video frames with
timestamps, word timings for both speakers, typed user text, background-job events and the
task's annotations (the expected-response windows scoring uses). `to_example`/`from_example`
convert to the flat dict of numpy arrays stored by the TFDS builder.

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
from typing import Any

import numpy as np

from jax_interact.errors import InputError

SAMPLE_RATE = 16000
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

  def delegations(self) -> list[dict[str, Any]]:
    return [e for e in self.events if e["type"] == "delegate"]

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
    if len(self.video_times_s) != len(self.video):
      raise InputError(f"{where}.video_times_s", "expected one timestamp per frame")
    duration = self.duration_s
    for i, w in enumerate(self.words):
      field = f"{where}.words[{i}]"
      if w.speaker not in SPEAKERS:
        raise InputError(f"{field}.speaker", f"got {w.speaker!r}, expected one of {SPEAKERS}")
      if not (math.isfinite(w.start_s) and math.isfinite(w.end_s)):
        raise InputError(field, "start_s and end_s must be finite numbers")
      if w.end_s < w.start_s:
        raise InputError(field, f"end_s {w.end_s} is before start_s {w.start_s}")
      if w.start_s < 0 or w.end_s > duration + 1e-3:
        raise InputError(field, f"[{w.start_s}, {w.end_s}] s lies outside the audio "
                         f"[0, {duration:.3f}] s")
    for i, e in enumerate(self.events):
      if "type" not in e or "time_s" not in e:
        raise InputError(f"{where}.events[{i}]", "expected keys 'type' and 'time_s'")

  def to_example(self) -> dict[str, Any]:
    """Flat dict of arrays for the TFDS builder (structured fields as one JSON string)."""
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
  def from_example(cls, example: dict[str, Any]) -> "Episode":
    meta = example["meta"]
    meta = json.loads(meta.decode() if isinstance(meta, bytes) else str(meta))
    return cls(index=int(example["index"]), task=meta["task"],
               user_audio=np.asarray(example["user_audio"], np.int16),
               model_audio=np.asarray(example["model_audio"], np.int16),
               video=np.asarray(example["video"], np.uint8),
               video_times_s=np.asarray(example["video_times_s"], np.float32),
               words=[Word(**w) for w in meta["words"]], events=meta["events"],
               annotations=meta["annotations"])

  def manifest_entry(self) -> dict[str, Any]:
    return {"index": self.index, "task": self.task, "duration_s": round(self.duration_s, 3),
            "words": [w.to_dict() for w in self.words], "events": self.events}
