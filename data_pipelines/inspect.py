"""`jax-interact data inspect`: one episode drawn on a single time axis, and its micro-turns.

The PNG shows video thumbnails along the top, both speakers' waveforms with their words as
labelled spans, the 200 ms micro-turn grid, the task's events (delegation, bounces, ...) and,
when the episode carries them, the expected-response windows and quiet intervals. `--json`
writes the decoded text slots of every micro-turn as the model sees them.
"""

from __future__ import annotations

import argparse
import json
import pathlib
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import ml_collections  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from data_pipelines import dataset  # pylint: disable=wrong-import-position
from data_pipelines import featurize  # pylint: disable=wrong-import-position
from jax_interact import atomic  # pylint: disable=wrong-import-position
from jax_interact import config as config_lib  # pylint: disable=wrong-import-position
from jax_interact.errors import InputError  # pylint: disable=wrong-import-position
from jax_interact.streams.episode import Episode  # pylint: disable=wrong-import-position
from jax_interact.streams.layout import Layout  # pylint: disable=wrong-import-position
from jax_interact.streams.timing import SAMPLE_RATE  # pylint: disable=wrong-import-position

DEFAULT_CONFIG = pathlib.Path(__file__).resolve().parent.parent / "configs" / "tiny.py"
SPEAKER_COLOURS = {"user": "tab:blue", "model": "tab:orange"}
ENVELOPE_S = 0.01  # waveforms are drawn as min/max envelopes over 10 ms bins
THUMBNAIL_EVERY_S = 0.6


def stream_config(path: str | None, overrides=()) -> ml_collections.ConfigDict:
  """The stream section of `path`, else of configs/tiny.py, else of the defaults."""
  if path:
    return config_lib.load(path, overrides).stream
  if DEFAULT_CONFIG.is_file():
    return config_lib.load(DEFAULT_CONFIG, overrides).stream
  return config_lib.defaults().stream


def micro_turns(episode: Episode, tokenizer, stream: ml_collections.ConfigDict) -> dict[str, Any]:
  """The `--json` document: every micro-turn's text slots decoded."""
  layout = Layout.from_config(stream)
  tracks, _ = featurize.featurize_episode(episode, layout, tokenizer, stream)
  return {"chunk_ms": layout.chunk_ms,
          "micro_turns": featurize.describe_turns(tracks, tokenizer, layout.chunk_ms)}


def draw(episode: Episode, chunk_ms: int) -> plt.Figure:
  """The episode on one time axis (see the module docstring)."""
  duration = episode.duration_s
  fig, (ax_video, ax_user, ax_model, ax_events) = plt.subplots(
      4, 1, sharex=True, figsize=(min(max(12.0, duration * 1.2), 60.0), 9.0),
      gridspec_kw={"height_ratios": [1.2, 2, 2, 1]})
  fig.suptitle(f"episode {episode.index}: {episode.task}, {duration:.2f} s")
  _thumbnails(ax_video, episode)
  for ax, speaker, audio in ((ax_user, "user", episode.user_audio),
                             (ax_model, "model", episode.model_audio)):
    _waveform(ax, audio, SPEAKER_COLOURS[speaker])
    _words(ax, episode, speaker)
    ax.set_ylabel(speaker)
  _annotation_windows(ax_model, episode.annotations)
  _events(ax_events, episode, (ax_video, ax_user, ax_model))
  for ax in (ax_video, ax_user, ax_model, ax_events):
    for t in np.arange(0.0, duration + 1e-9, chunk_ms / 1000):
      ax.axvline(t, color="0.85", lw=0.5, zorder=0)
  ax_events.set_xlim(0, duration)
  ax_events.set_xlabel(f"time (s); grid: {chunk_ms} ms micro-turns")
  fig.tight_layout()
  return fig


def _thumbnails(ax: plt.Axes, episode: Episode) -> None:
  ax.set_yticks([])
  ax.set_ylabel("video")
  ax.set_ylim(0, 1)
  last = -np.inf
  for frame, t in zip(episode.video, episode.video_times_s):
    if t - last < THUMBNAIL_EVERY_S:
      continue
    last = t
    ax.imshow(frame, extent=(t, t + THUMBNAIL_EVERY_S * 0.95, 0, 1), aspect="auto")


def _waveform(ax: plt.Axes, audio: np.ndarray, colour: str) -> None:
  size = int(SAMPLE_RATE * ENVELOPE_S)
  bins = len(audio) // size
  x = audio[:bins * size].astype(np.float32).reshape(bins, size) / 32768
  times = (np.arange(bins) + 0.5) * ENVELOPE_S
  ax.fill_between(times, x.min(axis=1), x.max(axis=1), color=colour, lw=0)
  ax.set_ylim(-1, 1)


def _words(ax: plt.Axes, episode: Episode, speaker: str) -> None:
  for i, word in enumerate(w for w in episode.words if w.speaker == speaker):
    ax.axvspan(word.start_s, word.end_s, color=SPEAKER_COLOURS[speaker], alpha=0.15)
    ax.text(word.start_s, 0.9 - 0.15 * (i % 3), word.text, fontsize=7, va="top")


def _annotation_windows(ax: plt.Axes, annotations: dict[str, Any]) -> None:
  for lo, hi in annotations.get("quiet_s", []):
    ax.axvspan(lo, hi, ymin=0, ymax=0.06, color="0.4")
  for response in annotations.get("responses", []):
    if "window_s" in response:
      lo, hi = response["window_s"]
      ax.axvspan(lo, hi, ymin=0.94, ymax=1, color="tab:green")


def _events(ax: plt.Axes, episode: Episode, other_axes: tuple[plt.Axes, ...]) -> None:
  ax.set_yticks([])
  ax.set_ylabel("events")
  ax.set_ylim(0, 1)
  for i, event in enumerate(sorted(episode.events, key=lambda e: e["time_s"])):
    t = event["time_s"]
    colour = "tab:red" if event["type"] == "delegate" else "tab:purple"
    for other in (ax, *other_axes):
      other.axvline(t, color=colour, lw=0.8, ls="--")
    details = [f"{k}={v}" for k, v in event.items()
               if k not in ("type", "time_s", "result_words") and isinstance(v, (str, int, float))]
    label = " ".join([event["type"], *details])[:60]
    ax.text(t, 0.85 - 0.25 * (i % 3), label, fontsize=7, color=colour, va="top")
    for word in event.get("result_words", []):
      ax.plot(word["time_s"], 0.1, marker="v", color=colour)
      ax.text(word["time_s"], 0.15, word["text"], fontsize=6, color=colour, rotation=45)


def main(args: argparse.Namespace) -> int:
  if not args.out and not args.json:
    raise InputError("--out", "expected --out FILE.png and/or --json FILE.json")
  stream = stream_config(args.config, getattr(args, "overrides", ()))
  episode = dataset.episode_by_index(args.dir, args.index)
  if args.out:
    fig = draw(episode, stream.chunk_ms)
    with atomic.file(args.out) as tmp:
      fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    print(f"wrote {args.out}")
  if args.json:
    document = micro_turns(episode, dataset.load_tokenizer(args.dir), stream)
    atomic.write_text(args.json, json.dumps(document, indent=1))
    print(f"wrote {args.json}")
  return 0
