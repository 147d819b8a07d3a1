"""`jax-interact eval --workdir W --data DIR --out OUT`: the interactivity report of a trained run.

Streams the first `--max-episodes` episodes of the held-out split through the engine
(`--batch` sessions at a time), turns every session's outputs into behaviour, scores each task
family for the model and both baselines, adds the teacher-forced mel L1 of the audio head and
writes OUT/report.json, OUT/report.md and the plots (report.py). Episodes of tasks without a
scorer (e.g. converted real conversations) are counted in the report's meta and skipped.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import pathlib
import time
from typing import Any

import ml_collections
import numpy as np
import tqdm
from flax import nnx

from data_pipelines import dataset, features
from jax_interact.errors import InputError
from jax_interact.evaluation import (baselines, diagnostics, mel, report, scoring, sessions,
                                     transcripts)
from jax_interact.inference import engine as engine_lib
from jax_interact.inference import session as session_lib
from jax_interact.inference import trained as trained_lib
from jax_interact.models.interaction import InteractionModel
from jax_interact.streams import dmel
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


@dataclasses.dataclass
class Evaluation:
  report: dict[str, Any]  # report.json
  results: report.Results  # pooled samples per system and family
  strips: dict[str, list[report.Strip]]  # per family, a few episodes to draw on a time axis


class Evaluator:
  """Scores a model on a fixed list of held-out episodes, as often as asked.

  The episodes are read and one engine (`batch_size` rows) is compiled when it is built;
  `run(params)` streams every episode with those parameters, so training can score each new
  step without recompiling.
  """

  def __init__(self, model: InteractionModel, config: ml_collections.ConfigDict,
               tokenizer: Tokenizer, data_dir: str | os.PathLike, *, split: str = "validation",
               max_episodes: int = 45, batch_size: int = 8):
    self.positions, self.skipped = _scorable(data_dir, split, max_episodes)
    source = dataset.open_split(data_dir, split)
    self.episodes = [source[p] for p in self.positions]
    self.model, self.config, self.tokenizer = model, config, tokenizer
    self.data_dir, self.split, self.max_episodes = data_dir, split, max_episodes
    self.engine = engine_lib.Engine(session_lib.program(model, config),
                                    batch_size=min(batch_size, len(self.positions)))
    self._teacher_forced: diagnostics.TeacherForced | None = None

  def run(self, params=None, *, progress: bool = True, mel_l1: bool = True,
          teacher_forced: bool = True) -> Evaluation:
    """Streams and scores every episode; `params` default: the model's own. `mel_l1` adds the
    teacher-forced mel L1 of the audio head, `teacher_forced` the decision accuracies of
    diagnostics.py (each a few forward passes)."""
    start = time.perf_counter()
    engine = self.engine
    if params is not None:
      engine.set_params(params)
    layout = engine.layout
    chunk_ms = layout.chunk_ms
    observed: dict[str, dict[str, list[scoring.Observations]]] = {s: {} for s in report.SYSTEMS}
    strips: dict[str, list[report.Strip]] = {}
    step_ms = []
    stream = sessions.stream_episodes(engine, self.episodes, self.tokenizer)
    for episode, outputs in tqdm.tqdm(stream, total=len(self.episodes), unit="episode",
                                      desc="evaluating", disable=not progress):
      step_ms += [o.step_ms for o in outputs]
      behaviour = transcripts.from_outputs(outputs, layout, self.tokenizer)
      gated = baselines.turn_based(outputs, transcripts.user_speech_s(episode), chunk_ms)
      turn_based = dataclasses.replace(transcripts.from_outputs(gated, layout, self.tokenizer),
                                       delegate_s=behaviour.delegate_s)
      silent = baselines.silent_outputs(outputs)
      systems = {"model": (behaviour, outputs), "silent": (baselines.silent(), silent),
                 "turn_based": (turn_based, gated)}
      for system, (b, streamed) in systems.items():
        obs = scoring.observe(episode, b)
        obs.update(diagnostics.speech_sources(streamed))
        speak_T = diagnostics.speaking(np.stack([o.text_out for o in streamed]),
                                       np.stack([o.audio_out for o in streamed]))
        obs.update(diagnostics.decision_accuracy(speak_T, speak_T, episode.annotations,
                                                 chunk_ms, "free_"))
        observed[system].setdefault(episode.task, []).append(obs)
      family_strips = strips.setdefault(episode.task, [])
      if len(family_strips) < report.STRIPS_PER_FAMILY:
        family_strips.append(report.Strip.of(episode, behaviour, chunk_ms))
    if teacher_forced:
      for episode, obs in zip(self.episodes, self._teacher_forced_decisions(progress)):
        observed["model"][episode.task].append(obs)
    results = {system: {family: scoring.pool(obs) for family, obs in sorted(families.items())}
               for system, families in observed.items()}

    overall_extra: dict[str, dict[str, Any]] = {}
    meta_mel = {}
    if mel_l1:
      mel_metrics = mel.mel_l1(self._model(), self.config, self.data_dir, self.split,
                               max_batches=math.ceil(self.max_episodes /
                                                     self.config.data.batch_size))
      overall_extra = {"model": {"mel_l1": mel_metrics["mel_l1"]},
                       "silent": {"mel_l1": mel_metrics["silent_mel_l1"]},
                       "turn_based": {"mel_l1": mel_metrics["mel_l1"]}}
      meta_mel = {"mel_slots": mel_metrics["mel_slots"]}
    families = collections.Counter(e.task for e in self.episodes)
    meta = {
        "data": str(self.data_dir), "split": self.split, "episodes": len(self.episodes),
        "unscored_episodes": self.skipped, "config": self.config.name,
        "chunk_ms": chunk_ms, "engine_rows": engine.batch_size,
        "p50_step_ms": float(np.percentile(step_ms, 50)), **meta_mel,
        "voiced_margin_bins": dmel.VOICED_MARGIN_BINS,
        "merge_gap_s": transcripts.MERGE_GAP_S, "quiet_tolerance_s": scoring.QUIET_TOLERANCE_S,
        "turn_based_gate_silence_s": baselines.GATE_SILENCE_S,
        "seconds": round(time.perf_counter() - start, 1),
        "episodes_per_family": dict(sorted(families.items())),
    }
    return Evaluation(report.build(results, overall_extra, meta), results, strips)

  def _model(self) -> InteractionModel:
    return nnx.merge(nnx.graphdef(self.model), self.engine.params)

  def _teacher_forced_decisions(self, progress: bool) -> list[scoring.Observations]:
    """Per episode, the `tf_*` decision accuracies (diagnostics.py)."""
    cache = features.Features(features.ensure(self.data_dir, self.config.stream, self.split,
                                              progress=progress))
    if self._teacher_forced is None:
      self._teacher_forced = diagnostics.TeacherForced(
          self.model, session_lib.Sampling.from_config(self.config.sample))
    rows = self.engine.batch_size
    observations = []
    for first in range(0, len(self.positions), rows):
      positions = self.positions[first:first + rows]
      lengths = [cache.num_turns(p) for p in positions]
      windows = [cache.window(p, 0, max(lengths)) for p in positions]
      stacked = {k: np.stack([w[k] for w in windows]) for k in windows[0]}
      starts_BN, speaks_BN = self._teacher_forced(self.engine.params, stacked)
      for i, length in enumerate(lengths):
        episode = self.episodes[first + i]
        observations.append(diagnostics.decision_accuracy(
            starts_BN[i, :length], speaks_BN[i, :length], episode.annotations,
            self.engine.layout.chunk_ms, "tf_"))
    return observations


def main(args) -> int:
  out = pathlib.Path(args.out)
  report.check_writable(out)
  _scorable(args.data, args.split, args.max_episodes)  # bad data fails before the model loads
  run = trained_lib.load(args.workdir, args.checkpoint, args.overrides)
  evaluator = Evaluator(run.model, run.config, run.tokenizer, args.data, split=args.split,
                        max_episodes=args.max_episodes, batch_size=args.batch)
  evaluation = evaluator.run()
  result = evaluation.report
  result["meta"] = {"workdir": str(args.workdir), "checkpoint": args.checkpoint,
                    "checkpoint_step": run.step, **result["meta"]}
  report.write(evaluation, out)
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
