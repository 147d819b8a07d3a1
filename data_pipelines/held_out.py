"""The held-out episodes of a dataset's split that an evaluation scores (evaluation/evaluator.py's
`HeldOut`): the first `max_episodes` of the split whose task has a scorer, their featurized
streams from the feature cache (features.py), and the split's batched windows (grain_pipeline.py).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator

import ml_collections
import numpy as np

from data_pipelines import dataset, features, grain_pipeline
from jax_interact.errors import InputError
from jax_interact.streams.tokenizer import Tokenizer


class DatasetSplit:
  """A `HeldOut` read from `split` of the dataset at `data_dir`; reading it checks the data, so
  a bad dataset fails before any model is loaded."""

  def __init__(self, data_dir: str | os.PathLike, split: str, max_episodes: int,
               scored_tasks: Collection[str]):
    manifest = dataset.read_manifest(data_dir)
    if split not in manifest["splits"]:
      raise InputError("--split", f"got {split!r}, expected one of {sorted(manifest['splits'])}")
    tasks = {e["index"]: e.get("task") for e in manifest["episodes"]}
    indices = manifest["splits"][split][:max_episodes]
    self.positions = [i for i, index in enumerate(indices) if tasks.get(index) in scored_tasks]
    if not self.positions:
      raise InputError(str(data_dir), f"split {split!r} holds no episode of a scored task "
                       f"({', '.join(scored_tasks)})")
    self.data_dir, self.split, self.max_episodes = str(data_dir), split, max_episodes
    self.skipped = len(indices) - len(self.positions)
    source = dataset.open_split(data_dir, split)
    self.episodes = [source[p] for p in self.positions]
    self._features: dict[str, features.Features] = {}

  def teacher_forced_windows(self, stream: ml_collections.ConfigDict, tokenizer: Tokenizer,
                             indices: list[int], progress: bool
                             ) -> tuple[dict[str, np.ndarray], list[int]]:
    key = features.cache_key(stream, tokenizer)
    if key not in self._features:
      self._features[key] = features.Features(features.ensure(
          self.data_dir, stream, self.split, tokenizer=tokenizer, progress=progress))
    cache = self._features[key]
    positions = [self.positions[i] for i in indices]
    lengths = [cache.num_turns(p) for p in positions]
    windows = [cache.window(p, 0, max(lengths)) for p in positions]
    return {k: np.stack([w[k] for w in windows]) for k in windows[0]}, lengths

  def batches(self, config: ml_collections.ConfigDict,
              tokenizer: Tokenizer) -> Iterator[dict[str, np.ndarray]]:
    config = ml_collections.ConfigDict(config.to_dict())
    config.data.num_workers = 0  # one pass over a few windows: worker start-up would dominate
    return grain_pipeline.make_iterator(config, self.data_dir, self.split, seed=0, train=False,
                                       tokenizer=tokenizer)
