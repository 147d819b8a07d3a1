"""`jax-interact eval --workdir W --data DIR --out OUT`: the interactivity report of a trained run.

Streams the first `--max-episodes` episodes of the held-out split through the engine
(`--batch` sessions at a time), turns every session's outputs into behaviour, scores each task
family for the model and both baselines, adds the teacher-forced mel L1 of the audio head and
writes OUT/report.json, OUT/report.md and the plots (report.py). Episodes of tasks without a
scorer (e.g. converted real conversations) are counted in the report's meta and skipped.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import time
from typing import Any

import ml_collections
import numpy as np
import tqdm

from data_pipelines import dataset
from jax_interact.errors import InputError
from jax_interact.evaluation import baselines, mel, report, scoring, sessions, transcripts
from jax_interact.inference import engine as engine_lib
from jax_interact.inference import trained as trained_lib
from jax_interact.models.interaction import InteractionModel
from jax_interact.streams.tokenizer import Tokenizer


def _scorable(data_dir: str | os.PathLike, split: str, max_episodes: int) -> tuple[list[int], int]:
  """(positions in the split of the episodes to score, number of unscorable ones skipped)."""
  manifest = dataset.read_manifest(data_dir)
  if split not in manifest["splits"]:
    raise InputError("--split", f"got {split!r}, expected one of {sorted(manifest['splits'])}")
  tasks = {e["index"]: e.get("task") for e in manifest["episodes"]}
  indices = manifest["splits"][split][:max_episodes]
  positions = [i for i, index in enumerate(indices) if tasks.get(index) in scoring.SCORERS]
  if not positions:
    raise InputError(str(data_dir), f"split {split!r} holds no episode of a scored task "
                     f"({', '.join(scoring.SCORERS)})")
  return positions, len(indices) - len(positions)


def evaluate(model: InteractionModel, config: ml_collections.ConfigDict, tokenizer: Tokenizer,
             data_dir: str | os.PathLike, *, split: str = "validation", max_episodes: int = 45,
             batch_size: int = 8, progress: bool = True) -> tuple[dict[str, Any], report.Results]:
  """(report.json dict, pooled samples per system and family) of the model on `data_dir`."""
  start = time.perf_counter()
  positions, skipped = _scorable(data_dir, split, max_episodes)
  source = dataset.open_split(data_dir, split)
  layout = model.layout
  engine = engine_lib.Engine(model, config, batch_size=min(batch_size, len(positions)))
  observed: dict[str, dict[str, list[scoring.Observations]]] = {s: {} for s in report.SYSTEMS}
  step_ms = []
  stream = sessions.stream_episodes(engine, (source[p] for p in positions), tokenizer)
  for episode, outputs in tqdm.tqdm(stream, total=len(positions), unit="episode",
                                    desc="evaluating", disable=not progress):
    step_ms += [o.step_ms for o in outputs]
    behaviour = transcripts.from_outputs(outputs, layout, tokenizer)
    gated = baselines.turn_based(outputs, transcripts.user_speech_s(episode), layout.chunk_ms)
    turn_based = dataclasses.replace(transcripts.from_outputs(gated, layout, tokenizer),
                                     delegate_s=behaviour.delegate_s)
    for system, b in (("model", behaviour), ("silent", baselines.silent()),
                      ("turn_based", turn_based)):
      observed[system].setdefault(episode.task, []).append(scoring.observe(episode, b))
  results = {system: {family: scoring.pool(obs) for family, obs in sorted(families.items())}
             for system, families in observed.items()}

  mel_metrics = mel.mel_l1(model, config, data_dir, split,
                           max_batches=math.ceil(max_episodes / config.data.batch_size))
  overall_extra = {"model": {"mel_l1": mel_metrics["mel_l1"]},
                   "silent": {"mel_l1": mel_metrics["silent_mel_l1"]},
                   "turn_based": {"mel_l1": mel_metrics["mel_l1"]}}
  meta = {
      "data": str(data_dir), "split": split, "episodes": len(positions),
      "unscored_episodes": skipped, "config": config.name, "chunk_ms": layout.chunk_ms,
      "engine_rows": engine.batch_size,
      "p50_step_ms": float(np.percentile(step_ms, 50)),
      "mel_slots": mel_metrics["mel_slots"],
      "voiced_margin_bins": transcripts.VOICED_MARGIN_BINS,
      "merge_gap_s": transcripts.MERGE_GAP_S, "quiet_tolerance_s": scoring.QUIET_TOLERANCE_S,
      "turn_based_gate_silence_s": baselines.GATE_SILENCE_S,
      "seconds": round(time.perf_counter() - start, 1),
      "episodes_per_family": {f: len(obs) for f, obs in sorted(observed["model"].items())},
  }
  return report.build(results, overall_extra, meta), results


def main(args) -> int:
  for name in ("max_episodes", "batch"):
    if getattr(args, name) <= 0:
      raise InputError(f"--{name.replace('_', '-')}", f"got {getattr(args, name)}, expected > 0")
  out = pathlib.Path(args.out)
  report.check_writable(out)
  _scorable(args.data, args.split, args.max_episodes)  # bad data fails before the model loads
  run = trained_lib.load(args.workdir)
  result, results = evaluate(run.model, run.config, run.tokenizer, args.data, split=args.split,
                             max_episodes=args.max_episodes, batch_size=args.batch)
  result["meta"] = {"workdir": str(args.workdir), "checkpoint_step": run.step, **result["meta"]}
  report.write(result, results, out)
  families = [k for k in result if k not in ("overall", "baselines", "meta")]
  width = max(len(f) for f in families + ["overall"])
  print(f"{'family':<{width}}  {'model':>6} {'silent':>6} {'turn_based':>10}")
  for family in families + ["overall"]:
    values = [result[family].get("score")] + [result["baselines"][s].get(family, {}).get("score")
                                              for s in baselines.BASELINES]
    print(f"{family:<{width}}  " + " ".join(f"{'–' if v is None else f'{v:.3f}':>{w}}"
                                             for v, w in zip(values, (6, 6, 10))))
  print(f"wrote {out}/report.json and report.md")
  return 0
