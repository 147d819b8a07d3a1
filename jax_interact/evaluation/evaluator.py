"""The interactivity evaluation of a model on held-out episodes (`jax-interact eval`, and training
every `train.interact_every_steps`).

Streams the held-out episodes through the engine (`batch_size` sessions at a time), turns every
session's outputs into behaviour, scores each task family for the model and both baselines and
adds the teacher-forced mel L1 of the audio head and the decision accuracies (report.py builds
the report). The episodes and their featurized split come from the caller as a `HeldOut`
(data_pipelines/held_out.py reads one from a dataset).
"""

from __future__ import annotations

import collections
import dataclasses
import math
import time
from typing import Any, Iterator, Protocol

import ml_collections
import numpy as np
import tqdm
from flax import nnx

from jax_interact.evaluation import (baselines, diagnostics, mel, report, scoring, sessions,
                                     transcripts)
from jax_interact.inference import engine as engine_lib
from jax_interact.inference import session as session_lib
from jax_interact.models.interaction import InteractionModel
from jax_interact.streams import dmel
from jax_interact.streams.episode import Episode
from jax_interact.streams.tokenizer import Tokenizer


class HeldOut(Protocol):
  """The held-out episodes an Evaluator scores, and their split's featurized streams."""

  data_dir: str  # where they were read from (the report's meta)
  split: str
  max_episodes: int  # the first `max_episodes` of the split were asked for;
  episodes: list[Episode]  # these, of the tasks `scoring.SCORERS` scores, are scored,
  skipped: int  # and this many of other tasks are not

  def teacher_forced_windows(self, stream: ml_collections.ConfigDict, tokenizer: Tokenizer,
                             indices: list[int], progress: bool
                             ) -> tuple[dict[str, np.ndarray], list[int]]:
    """The featurized streams of `episodes[i]` for i in `indices`, stacked [B, N, ...] and
    padded to the longest, and the length of each in micro-turns."""
    ...

  def batches(self, config: ml_collections.ConfigDict,
              tokenizer: Tokenizer) -> Iterator[dict[str, np.ndarray]]:
    """One ordered pass over the split's training windows, batched as `config` says."""
    ...


@dataclasses.dataclass
class Evaluation:
  report: dict[str, Any]  # report.json
  results: report.Results  # pooled samples per system and family
  strips: dict[str, list[report.Strip]]  # per family, a few episodes to draw on a time axis
  episodes: list[dict[str, Any]]  # per episode streamed, report.episode_row


class Evaluator:
  """Scores a model on a fixed list of held-out episodes, as often as asked.

  One engine (`batch_size` rows) is compiled when it is built; `run(params)` streams every
  episode with those parameters, so training can score each new step without recompiling.
  """

  def __init__(self, model: InteractionModel, config: ml_collections.ConfigDict,
               tokenizer: Tokenizer, held_out: HeldOut, *, batch_size: int = 8):
    self.held_out = held_out
    self.episodes = held_out.episodes
    self.model, self.config, self.tokenizer = model, config, tokenizer
    self.engine = engine_lib.Engine(session_lib.program(model, config),
                                    batch_size=min(batch_size, len(self.episodes)))
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
    rows: list[dict[str, Any]] = []
    step_ms = []
    stream = sessions.stream_episodes(engine, self.episodes, self.tokenizer)
    for episode, outputs in tqdm.tqdm(stream, total=len(self.episodes), unit="episode",
                                      desc="evaluating", disable=not progress):
      step_ms += [o.step_ms for o in outputs]
      behaviour = transcripts.from_outputs(outputs, layout, self.tokenizer)
      gated = baselines.turn_based(outputs, episode, behaviour, chunk_ms)
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
        if system == "turn_based":
          obs["gate_changed"] = [float(baselines.gate_changed(outputs, gated))]
        observed[system].setdefault(episode.task, []).append(obs)
      reference = transcripts.reference(episode, chunk_ms)
      rows.append(report.episode_row(episode, behaviour, reference,
                                     observed["model"][episode.task][-1]))
      family_strips = strips.setdefault(episode.task, [])
      if len(family_strips) < report.STRIPS_PER_FAMILY:
        family_strips.append(report.Strip.of(episode, behaviour, reference))
    if teacher_forced:
      for episode, obs in zip(self.episodes, self._teacher_forced_decisions(progress)):
        observed["model"][episode.task].append(obs)
    results = {system: {family: scoring.pool(obs) for family, obs in sorted(families.items())}
               for system, families in observed.items()}

    overall_extra: dict[str, dict[str, Any]] = {}
    meta_mel = {}
    if mel_l1:
      mel_metrics = mel.mel_l1(self._model(), self.held_out.batches(self.config, self.tokenizer),
                               max_batches=math.ceil(self.held_out.max_episodes /
                                                     self.config.data.batch_size),
                               voicing_threshold=self.config.sample.voicing_threshold)
      overall_extra = {"model": {"mel_l1": mel_metrics["mel_l1"]},
                       "silent": {"mel_l1": mel_metrics["silent_mel_l1"]},
                       "turn_based": {"mel_l1": mel_metrics["mel_l1"]}}
      meta_mel = {"mel_slots": mel_metrics["mel_slots"]}
    families = collections.Counter(e.task for e in self.episodes)
    meta = {
        "data": self.held_out.data_dir, "split": self.held_out.split,
        "episodes": len(self.episodes), "unscored_episodes": self.held_out.skipped,
        "config": self.config.name, "chunk_ms": chunk_ms, "engine_rows": engine.batch_size,
        "p50_step_ms": float(np.percentile(step_ms, 50)), **meta_mel,
        "voiced_margin_bins": dmel.VOICED_MARGIN_BINS,
        "merge_gap_s": transcripts.MERGE_GAP_S, "quiet_tolerance_s": scoring.QUIET_TOLERANCE_S,
        "turn_based_gate_silence_s": baselines.GATE_SILENCE_S,
        "seconds": round(time.perf_counter() - start, 1),
        "episodes_per_family": dict(sorted(families.items())),
    }
    return Evaluation(report.build(results, overall_extra, meta), results, strips, rows)

  def _model(self) -> InteractionModel:
    return nnx.merge(nnx.graphdef(self.model), self.engine.params)

  def _teacher_forced_decisions(self, progress: bool) -> list[scoring.Observations]:
    """Per episode, the `tf_*` decision and word accuracies and the `tf_heard_*` decision
    accuracies, and for episodes with task events (what happens in the scene) the
    `tf_shuffled_*` decision accuracies with the video shuffled in time (diagnostics.py)."""
    if self._teacher_forced is None:
      self._teacher_forced = diagnostics.TeacherForced(
          self.model, session_lib.Sampling.from_config(self.config.sample))
    chunk_ms, rows = self.engine.layout.chunk_ms, self.engine.batch_size
    observations: list[scoring.Observations] = [{} for _ in self.episodes]
    in_scene = [i for i, episode in enumerate(self.episodes) if episode.task_events()]
    for indices, shuffled in ((range(len(self.episodes)), False), (in_scene, True)):
      for first in range(0, len(indices), rows):
        batch = list(indices[first:first + rows])
        stacked, lengths = self.held_out.teacher_forced_windows(self.config.stream,
                                                                self.tokenizer, batch, progress)
        if shuffled:
          stacked = diagnostics.shuffle_in_time(stacked, lengths)
        starts_BN, speaks_BN, words_BNK = self._teacher_forced(self.engine.params, stacked)
        heard_BN = None if shuffled else self._teacher_forced.heard(self.engine.params, stacked)
        for row, (i, length) in enumerate(zip(batch, lengths)):
          episode, obs = self.episodes[i], observations[i]
          obs.update(diagnostics.decision_accuracy(starts_BN[row, :length],
                                                   speaks_BN[row, :length], episode.annotations,
                                                   chunk_ms, "tf_shuffled_" if shuffled else "tf_"))
          if shuffled:
            continue
          obs.update(diagnostics.decision_accuracy(heard_BN[row, :length], heard_BN[row, :length],
                                                   episode.annotations, chunk_ms, "tf_heard_"))
          targets_TK = stacked["text_out"][row, :length]
          obs.update(diagnostics.word_accuracy(words_BNK[row, :length], targets_TK))
          obs.update(diagnostics.answer_accuracy(words_BNK[row, :length], targets_TK,
                                                 episode.annotations, self.tokenizer.encode,
                                                 chunk_ms))
    return observations
