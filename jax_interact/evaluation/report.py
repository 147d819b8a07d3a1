"""report.json, report.md and the plots of one evaluation, written atomically.

    report.json  {family: {metric: value}, "overall": {...}, "baselines": {"silent": {family:
                  {...}, "overall": {...}}, "turn_based": {...}}, "meta": {...}}
    report.md    a table per family: every metric for the model, silent and turn_based

"overall" holds the mean of the family scores (families weighted equally), the user-transcript
WER over all episodes and the teacher-forced mel L1 (mel.py; turn_based shares the model's).
    scores.png   each family's `score` for the three systems
    latency.png  per family, the distribution of its main latency for model and turn_based

Everything is written to a temporary directory beside OUT and renamed into place.
"""

from __future__ import annotations

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
from jax_interact.evaluation import scoring  # noqa: E402
from jax_interact.evaluation.baselines import BASELINES  # noqa: E402

SYSTEMS = ("model",) + BASELINES
# The latency each family's histogram shows (an Observations key of its scorer).
LATENCY_KEYS = {
    "turn_taking": "latency_s", "pause_handling": "latency_s", "interruption": "stop_latency_s",
    "rep_count": "rep_latency_s", "visual_cue": "latency_s", "start_stop": "start_offset_s",
    "time_speak": "beat_error_s", "live_translation": "lag_s", "delegate": "result_latency_s",
}
Results = dict[str, dict[str, scoring.Observations]]  # system -> family -> pooled samples


def build(results: Results, overall_extra: dict[str, dict[str, Any]],
          meta: dict[str, Any]) -> dict[str, Any]:
  """The report.json dict. `overall_extra[system]` adds whole-run metrics (e.g. mel L1)."""
  def system_report(system: str) -> dict[str, Any]:
    families = {family: scoring.summarize(obs) for family, obs in results[system].items()}
    scores = [m["score"] for m in families.values() if m.get("score") is not None]
    everything = scoring.summarize(scoring.pool(list(results[system].values())))
    overall = {"score": float(np.mean(scores)) if scores else None,
               "user_wer": everything.get("user_wer"), **overall_extra.get(system, {})}
    return {**families, "overall": overall}

  report = system_report("model")
  report["baselines"] = {system: system_report(system) for system in BASELINES}
  report["meta"] = meta
  return report


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
  lines += ["", "Columns: the model; `silent` (never speaks); `turn_based` (the model's outputs "
            "held until the user has been silent for 600 ms). Rates in [0, 1]; `*_s` in seconds.",
            "", "![scores](scores.png)", "", "![latency](latency.png)", ""]
  sections = [k for k in report if k not in ("baselines", "meta")]
  for section in sections:
    columns = [report[section]] + [report["baselines"][s].get(section, {}) for s in BASELINES]
    metrics = list(dict.fromkeys(k for c in columns for k in c))
    metrics.sort(key=lambda k: k != "score")
    count = meta.get("episodes_per_family", {}).get(section)
    lines += [f"## {section}" + (f" ({count} episodes)" if count else ""), "",
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
    ax.bar(np.arange(len(families)) + (i - 1) * width, values, width, label=system)
  ax.set_xticks(np.arange(len(families)), families, rotation=30, ha="right")
  ax.set_ylim(0, 1.05)
  ax.set_ylabel("score")
  ax.set_title("per-task score")
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


def check_writable(out: pathlib.Path) -> None:
  """Raises unless `out` is absent, empty or an earlier report (which gets replaced)."""
  if out.exists() and (not out.is_dir() or (not (out / "report.json").is_file()
                                            and any(out.iterdir()))):
    raise InputError(str(out), "exists and is not an evaluation report; refusing to replace it")


def write(report: dict[str, Any], results: Results, out: str | os.PathLike) -> pathlib.Path:
  out = pathlib.Path(out)
  check_writable(out)
  with atomic.directory(out) as tmp:
    (tmp / "report.json").write_text(json.dumps(report, indent=1))
    (tmp / "report.md").write_text(markdown(report))
    figures = {"scores.png": plot_scores(report), "latency.png": plot_latencies(results)}
    for name, fig in figures.items():
      fig.savefig(tmp / name, dpi=100)
      plt.close(fig)
  return out
