"""report.json, report.md and the plots of one evaluation, written atomically.

    report.json  {family: {metric: value}, "overall": {...}, "baselines": {"silent": {family:
                  {...}, "overall": {...}}, "turn_based": {...}}, "meta": {...}}
    report.md    a table per family: every metric for the model, silent and turn_based

"overall" holds the mean of the family scores (families weighted equally), the user-transcript
WER over all episodes and the teacher-forced mel L1 (mel.py; turn_based shares the model's).
    scores.png   each family's `score` for the three systems, with its standard error
    latency.png  per family, the distribution of its main latency for model and turn_based
    timelines/<family>.png  a few episodes on a time axis: user speech, the reference's and the
                 model's speech (words written in), the quiet intervals
    episodes.jsonl  one line per scored episode (`episode_row`): its score samples, the words the
                 model said and the reference said (with start times), what the user said and
                 what the model's transcript heard, and when it emitted `<delegate>`: why an
                 episode failed, without streaming it again

Everything is written to a temporary directory beside OUT and renamed into place.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jax_interact import atomic  # noqa: E402
from jax_interact.errors import InputError  # noqa: E402
from jax_interact.evaluation import scoring, transcripts  # noqa: E402
from jax_interact.evaluation.baselines import BASELINES  # noqa: E402

SYSTEMS = ("model",) + BASELINES
STRIPS_PER_FAMILY = 3
# The latency each family's histogram shows (an Observations key of its scorer).
LATENCY_KEYS = {
    "turn_taking": "latency_s", "pause_handling": "latency_s", "interruption": "stop_latency_s",
    "rep_count": "rep_latency_s", "visual_cue": "latency_s", "start_stop": "start_offset_s",
    "time_speak": "beat_error_s", "live_translation": "lag_s", "delegate": "result_latency_s",
}
Results = dict[str, dict[str, scoring.Observations]]  # system -> family -> pooled samples


@dataclasses.dataclass(frozen=True)
class Strip:
  """One episode to draw: who spoke when, and when the model had to be quiet."""

  title: str
  duration_s: float
  user_s: tuple[transcripts.Interval, ...]
  quiet_s: tuple[transcripts.Interval, ...]
  reference: transcripts.Behaviour
  model: transcripts.Behaviour

  @classmethod
  def of(cls, episode, behaviour: transcripts.Behaviour,
         reference: transcripts.Behaviour) -> "Strip":
    return cls(title=f"{episode.task} episode {episode.index}", duration_s=episode.duration_s,
               user_s=transcripts.user_speech_s(episode),
               quiet_s=tuple(tuple(q) for q in episode.annotations.get("quiet_s", [])),
               reference=reference, model=behaviour)


def _timed(behaviour: transcripts.Behaviour) -> list[tuple[str, float]]:
  return [(w.text, round(w.start_s, 2)) for w in behaviour.words]


def episode_row(episode, behaviour: transcripts.Behaviour, reference: transcripts.Behaviour,
                obs: scoring.Observations) -> dict[str, Any]:
  """One line of episodes.jsonl: how the model did in `episode` and what it said and heard,
  beside `reference` (`transcripts.reference`, whose user transcript is what the user said)."""
  return {"task": episode.task, "index": episode.index, "score": obs["score"],
          "said": _timed(behaviour), "reference": _timed(reference),
          "user": " ".join(reference.user_transcript),
          "heard": " ".join(behaviour.user_transcript),
          "delegate_s": [round(t, 2) for t in behaviour.delegate_s]}


def build(results: Results, overall_extra: dict[str, dict[str, Any]],
          meta: dict[str, Any]) -> dict[str, Any]:
  """The report.json dict. `overall_extra[system]` adds whole-run metrics (e.g. mel L1)."""
  def system_report(system: str) -> dict[str, Any]:
    families = {family: scoring.summarize(obs) for family, obs in results[system].items()}
    scores = [m["score"] for m in families.values() if m.get("score") is not None]
    overall = {"score": float(np.mean(scores)) if scores else None,
               "user_wer": scoring.user_wer(scoring.pool(list(results[system].values()))),
               **overall_extra.get(system, {})}
    return {**families, "overall": overall}

  report = system_report("model")
  report["baselines"] = {system: system_report(system) for system in BASELINES}
  report["meta"] = meta
  return report


def beats(model: dict[str, Any], baseline: dict[str, Any], family: str) -> bool:
  """Whether a family's metrics beat a baseline's: a higher score, or the same score with a
  lower p50 of the family's main latency (LATENCY_KEYS). A tie with a baseline that has no
  latency (the silent one, or nobody answered) is not a win."""
  score, other = model.get("score"), baseline.get("score")
  if score is None:
    return False
  if other is None or score > other:
    return True
  if score < other:
    return False
  key = LATENCY_KEYS[family].removesuffix("_s") + "_p50_s"
  latency, other_latency = model.get(key), baseline.get(key)
  return latency is not None and other_latency is not None and latency < other_latency


def learned(report: dict[str, Any]) -> tuple[list[str], list[str]]:
  """(families where the model beats both baselines, the other families)."""
  families = [k for k in report if k not in ("overall", "baselines", "meta")]
  won = [f for f in families if all(beats(report[f], report["baselines"][b].get(f, {}), f)
                                    for b in BASELINES)]
  return won, [f for f in families if f not in won]


def _format(value: Any) -> str:
  if value is None:
    return "–"
  if isinstance(value, float):
    return f"{value:.3f}"
  return str(value)


def markdown(report: dict[str, Any]) -> str:
  meta = report["meta"]
  lines = ["# Interactivity evaluation", ""]
  lines += [f"- {key}: {_format(value)}" for key, value in meta.items()
            if not isinstance(value, dict)]
  lines += ["", "Columns: the model; `silent` (never speaks); `turn_based` (a cascade: the model's "
            "outputs held until the user has been silent for 600 ms, and only its replies to "
            "turns it was given played, jax_interact/evaluation/baselines.py; `gate_changed`: "
            "the share of episodes in which that changed anything the user hears, so at 0 the "
            "two columns are the same system). Rates in [0, 1]; `*_s` in seconds. "
            "`words_without_voice`, `voice_without_words` and the `tf_`/`free_` decision "
            "accuracies are explained in jax_interact/evaluation/diagnostics.py.",
            "", "![scores](scores.png)", "", "![latency](latency.png)", ""]
  sections = [k for k in report if k not in ("baselines", "meta")]
  for section in sections:
    columns = [report[section]] + [report["baselines"][s].get(section, {}) for s in BASELINES]
    metrics = list(dict.fromkeys(k for c in columns for k in c))
    metrics.sort(key=lambda k: k != "score")
    count = meta.get("episodes_per_family", {}).get(section)
    lines += [f"## {section}" + (f" ({count} episodes)" if count else ""), ""]
    if section != "overall":
      lines += [f"![{section} timelines](timelines/{section}.png)", ""]
    lines += [
              "| metric | " + " | ".join(SYSTEMS) + " |", "|---" * (len(SYSTEMS) + 1) + "|"]
    lines += ["| " + " | ".join([metric] + [_format(c.get(metric)) for c in columns]) + " |"
              for metric in metrics]
    lines.append("")
  return "\n".join(lines)


def plot_scores(report: dict[str, Any]) -> plt.Figure:
  families = [k for k in report if k not in ("baselines", "meta", "overall")]
  fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(families) + 2), 4))
  width = 0.8 / len(SYSTEMS)
  for i, system in enumerate(SYSTEMS):
    source = report if system == "model" else report["baselines"][system]
    values = [source.get(f, {}).get("score") or 0.0 for f in families]
    errors = [source.get(f, {}).get("score_se") or 0.0 for f in families]
    ax.bar(np.arange(len(families)) + (i - 1) * width, values, width, yerr=errors, capsize=2,
           label=system)
  ax.set_xticks(np.arange(len(families)), families, rotation=30, ha="right")
  ax.set_ylim(0, 1.05)
  ax.set_ylabel("score")
  ax.set_title("per-task score (bars: one standard error over episodes)")
  ax.legend()
  fig.tight_layout()
  return fig


def plot_latencies(results: Results) -> plt.Figure:
  families = [f for f in results["model"] if f in LATENCY_KEYS]
  cols = min(3, max(1, len(families)))
  rows = max(1, -(-len(families) // cols))
  fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
  for ax in axes.flat[len(families):]:
    ax.axis("off")
  for ax, family in zip(axes.flat, families):
    key = LATENCY_KEYS[family]
    samples = {s: results[s].get(family, {}).get(key, []) for s in ("model", "turn_based")}
    values = [v for vs in samples.values() for v in vs]
    ax.set_title(f"{family}: {key}", fontsize=9)
    ax.set_xlabel("seconds")
    if not values:
      ax.text(0.5, 0.5, "no samples", ha="center", va="center", transform=ax.transAxes)
      continue
    lo = min(0.0, min(values))
    bins = np.linspace(lo, max(max(values), lo + 1.0) + 0.05, 21)
    for system, vs in samples.items():
      if vs:
        ax.hist(vs, bins=bins, alpha=0.6, label=system)
    ax.legend(fontsize=7)
  fig.tight_layout()
  return fig


def plot_strips(strips: list[Strip]) -> plt.Figure:
  """One row per episode: user speech (grey), reference (orange) and model (blue) speech with
  their words, quiet intervals (red)."""
  width = max(8.0, max(s.duration_s for s in strips) * 0.9)
  fig, axes = plt.subplots(len(strips), 1, figsize=(width, 1.9 * len(strips)), squeeze=False)
  for ax, strip in zip(axes[:, 0], strips):
    for lo, hi in strip.quiet_s:
      ax.axvspan(lo, hi, color="tab:red", alpha=0.12, lw=0)
    bands = (("user", strip.user_s, (), "0.55", 2), ("reference", strip.reference.active_s,
             strip.reference.words, "tab:orange", 1), ("model", strip.model.active_s,
             strip.model.words, "tab:blue", 0))
    for _, intervals, words, colour, y in bands:
      ax.broken_barh([(lo, hi - lo) for lo, hi in intervals], (y + 0.1, 0.5), color=colour)
      for word in words:
        ax.text(word.start_s, y + 0.7, word.text, fontsize=6, clip_on=True)
    ax.set_yticks([2.35, 1.35, 0.35], [b[0] for b in bands])
    ax.set_ylim(0, 3)
    ax.set_xlim(0, strip.duration_s)
    ax.set_title(strip.title, fontsize=8, loc="left")
  axes[-1, 0].set_xlabel("wall time (s); red: the model should be quiet")
  fig.tight_layout()
  return fig


def check_writable(out: pathlib.Path) -> None:
  """Raises unless `out` is absent, empty or an earlier report (which gets replaced)."""
  if out.exists() and (not out.is_dir() or (not (out / "report.json").is_file()
                                            and any(out.iterdir()))):
    raise InputError(str(out), "exists and is not an evaluation report; refusing to replace it")


def write(evaluation, out: str | os.PathLike) -> pathlib.Path:
  """Writes an `Evaluation` (command.py) into the folder `out`, atomically."""
  out = pathlib.Path(out)
  check_writable(out)
  report = evaluation.report
  with atomic.directory(out) as tmp:
    (tmp / "report.json").write_text(json.dumps(report, indent=1))
    (tmp / "report.md").write_text(markdown(report))
    (tmp / "episodes.jsonl").write_text("".join(json.dumps(row) + "\n"
                                                for row in evaluation.episodes))
    figures = {"scores.png": lambda: plot_scores(report),
               "latency.png": lambda: plot_latencies(evaluation.results)}
    figures |= {f"timelines/{family}.png": functools.partial(plot_strips, strips)
                for family, strips in evaluation.strips.items()}
    for name, draw in figures.items():
      (tmp / name).parent.mkdir(exist_ok=True)
      fig = draw()
      fig.savefig(tmp / name, dpi=100)
      plt.close(fig)
  return out
