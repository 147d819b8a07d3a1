"""Interactivity while training: the streaming evaluation of a fixed held-out subset, every
`train.interact_every_steps` steps.

Loss curves say little about whether a model interacts: its timing shows only when it runs free
on its own samples. So the trainer streams the first `train.interact_episodes` episodes of the
evaluation split through the engine (compiled once, the new parameters swapped in), scores them
with the evaluation's scorers, logs per-family scores and quiet-interval violation rates, and
keeps the step with the best mean score in `W/best` beside the periodic checkpoints.
"""

from __future__ import annotations

import math
import pathlib
from typing import Any

import jax
import ml_collections
from flax import nnx
from jax.experimental import multihost_utils

from jax_interact.evaluation.evaluator import Evaluator, HeldOut
from jax_interact.streams.tokenizer import Tokenizer
from jax_interact.training import checkpointing

PREFIX = "interact_"


def host_copy(state: nnx.State) -> nnx.State:
  """The whole (possibly sharded, possibly multi-process) state as host arrays, on every
  process."""
  if jax.process_count() == 1:
    return jax.device_get(state)
  return multihost_utils.process_allgather(state, tiled=True)


def summary_row(report: dict[str, Any]) -> dict[str, float]:
  """metrics.jsonl keys of one evaluation: the mean score, and each family's score and quiet
  violation rate."""
  row = {f"{PREFIX}score": report["overall"]["score"]}
  for family, metrics in report.items():
    if family in ("overall", "baselines", "meta"):
      continue
    for key in ("score", "quiet_violation_rate"):
      if metrics.get(key) is not None:
        row[f"{PREFIX}{family}_{key}"] = metrics[key]
  return row


class Interactivity:
  """Scores the training state and keeps the best one; one per training run."""

  def __init__(self, config: ml_collections.ConfigDict, graphdef: nnx.GraphDef,
               tokenizer: Tokenizer, held_out: HeldOut, workdir: pathlib.Path):
    self.config = config
    self.held_out = held_out
    self.graphdef = graphdef
    self.tokenizer = tokenizer
    self.best = checkpointing.Checkpoints(workdir, config.checkpoint, checkpointing.BEST)
    scores = self.best.best_scores()
    self.best_score = scores["score"] if scores else -math.inf
    self.best_step = self.best.latest_step()
    self._evaluator: Evaluator | None = None

  def due(self, step: int) -> bool:
    every = self.config.train.interact_every_steps
    return step % every == 0 or step == self.config.train.steps

  def evaluate(self, step: int, state: nnx.State) -> tuple[dict[str, float], str]:
    """(metrics row, one line for the log) of the model at `step`; saves it to W/best when it
    beats the best mean score so far."""
    params = host_copy(state)
    if self._evaluator is None:
      self._evaluator = Evaluator(nnx.merge(self.graphdef, params), self.config, self.tokenizer,
                                  self.held_out, batch_size=self.config.train.interact_batch)
    evaluation = self._evaluator.run(params, progress=False, mel_l1=False,
                                     teacher_forced=False)
    row = summary_row(evaluation.report)
    score = row[f"{PREFIX}score"]
    if score is not None and score > self.best_score:
      self.best.save_best(step, state, self.config, {"score": score, "step": step, **row})
      self.best_score, self.best_step = score, step
    families = ", ".join(f"{k.removeprefix(PREFIX).removesuffix('_score')} {v:.2f}"
                         for k, v in row.items() if k.endswith("_score") and k != f"{PREFIX}score")
    line = (f"step {step} interactivity: mean score {score:.3f} ({families}); best "
            f"{self.best_score:.3f} at step {self.best_step}")
    return row, line

  def close(self) -> None:
    self.best.close()
