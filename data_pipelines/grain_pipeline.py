"""The Grain input pipeline: random windows of micro-turns from a dataset directory, batched.

Episodes are featurized once into a cache beside the dataset (features.py); each element is one
episode of the process's shard, and a seeded random map slices a window of `config.data.window`
micro-turns out of it, whose start is a function of (seed, element index), so the batches are
the same for a seed whatever the worker count. Training shuffles and repeats forever
(reshuffled each epoch, an epoch holding each episode as many times as `config.data.task_repeats`
says for its task, once by default); evaluation reads every episode once, in order, and fills up
with copies whose turn_mask is all False (they add nothing to a masked loss) so that the last
batch is full and every process yields the same number of batches.

Batches are host-local: `config.data.batch_size / jax.process_count()` windows in the format of
jax_interact/streams/layout.py. `make_iterator` records the worker count in the iterator state,
because a Grain state saved with one worker count cannot resume with another.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any

import absl.flags
import grain
import jax
import ml_collections
import numpy as np

from data_pipelines import dataset
from data_pipelines import features
from data_pipelines import worker_lifetime
from jax_interact import cli
from jax_interact import config as config_lib
from jax_interact.errors import ConfigError
from jax_interact.errors import InputError
from jax_interact.streams.tokenizer import Tokenizer

Batch = dict[str, np.ndarray]


class SampleWindow(grain.transforms.RandomMap):
  """Episode index -> one random window of its featurized micro-turns (picklable for workers):
  with probability `edge_shares[i][0]` episode i's first, with `edge_shares[i][1]` its last, else
  one starting uniformly at random."""

  def __init__(self, episodes: features.Features, window: int,
               edge_shares: list[tuple[float, float]]):
    self._episodes = episodes
    self._window = window
    self._edge_shares = edge_shares

  def random_map(self, i: int, rng: np.random.Generator) -> Batch:
    last_start = max(self._episodes.num_turns(i) - self._window, 0)
    start = int(rng.integers(0, last_start + 1))
    first, last = self._edge_shares[i]
    if first or last:
      edge = rng.random()
      if edge < first:
        start = 0
      elif edge < first + last:
        start = last_start
    return self._episodes.window(i, start, self._window)


class MaskOut(grain.transforms.Map):
  """A window that counts for nothing: turn_mask all False."""

  def map(self, window: Batch) -> Batch:
    return {**window, "turn_mask": np.zeros_like(window["turn_mask"])}


def _refuse_unknown_tasks(key: str, named, tasks: list[str]) -> None:
  """ConfigError naming `config.data.<key>` if it names a task no episode of `tasks` has."""
  unknown = sorted(set(named) - set(tasks))
  if unknown:
    raise ConfigError(f"config.data.{key}", f"names {', '.join(unknown)}, not a task of this "
                      f"dataset ({', '.join(sorted(set(tasks)))})")


def epoch_order(episodes: range, tasks: list[str], repeats: dict[str, int]) -> list[int]:
  """The episodes an epoch draws a window from (before shuffling): each of `episodes` as many
  times as `repeats` says for its task (`tasks[i]` is episode i's; a task not named: once)."""
  _refuse_unknown_tasks("task_repeats", repeats, tasks)
  order = [i for i in episodes for _ in range(repeats.get(tasks[i], 1))]
  if not order:
    raise ConfigError("config.data.task_repeats", "leaves no training episode (every task of "
                      "this process's episodes repeated 0 times)")
  return order


def edge_window_shares(tasks: list[str],
                       data: ml_collections.ConfigDict) -> list[tuple[float, float]]:
  """Per episode (`tasks[i]` is episode i's), the shares of its windows that start at its first
  micro-turn and that end at its last: `data.first_window_share` for the tasks named in
  `data.first_window_tasks`, `data.last_window_share` for those in `data.last_window_tasks`
  ("task,task"; "": every task), else 0."""
  if data.first_window_share + data.last_window_share > 1:
    raise ConfigError("config.data.last_window_share",
                      f"{data.last_window_share}, with data.first_window_share "
                      f"{data.first_window_share}; expected the two to add up to at most 1")
  shares = []
  for edge in ("first", "last"):
    named = cli.comma_list(data[f"{edge}_window_tasks"])
    _refuse_unknown_tasks(f"{edge}_window_tasks", named, tasks)
    share = data[f"{edge}_window_share"]
    shares.append([share if not named or task in named else 0.0 for task in tasks])
  return list(zip(*shares))


def _eval_windows(episodes: grain.MapDataset, sample: SampleWindow, seed: int,
                  batch_size: int) -> grain.MapDataset:
  """This process's episodes once, then masked-out fillers up to the same count everywhere."""
  processes = jax.process_count()
  mine = episodes[jax.process_index()::processes]
  total = math.ceil(math.ceil(len(episodes) / processes) / batch_size) * batch_size
  missing = total - len(mine)
  real = mine.random_map(sample, seed=seed)
  if missing == 0:
    return real
  copied = mine if len(mine) else episodes  # a process may hold no episode of a small split
  fillers = copied.repeat(math.ceil(missing / len(copied)))[:missing]
  fillers = fillers.random_map(sample, seed=seed).map(MaskOut())
  return grain.MapDataset.concatenate([real, fillers]) if len(mine) else fillers


def host_batch_size(config: ml_collections.ConfigDict) -> int:
  processes = jax.process_count()
  if config.data.batch_size % processes:
    raise ConfigError("config.data.batch_size", f"got {config.data.batch_size}, expected a "
                      f"multiple of the number of processes ({processes})")
  return config.data.batch_size // processes


def make_dataset(config: ml_collections.ConfigDict, data_dir: str | os.PathLike, split: str, *,
                 seed: int, train: bool = True,
                 tokenizer: Tokenizer | None = None) -> grain.IterDataset:
  """Host-local batches of `split`: infinite and shuffled if `train`, else one ordered pass;
  text encoded by `tokenizer` (default: the dataset's)."""
  batch_size = host_batch_size(config)
  dataset.read_manifest(data_dir)  # a bad directory fails here, before any featurizing
  tokenizer = tokenizer or dataset.load_tokenizer(data_dir)
  if tokenizer.size > config.model.vocab_size:
    raise ConfigError("config.model.vocab_size", f"{config.model.vocab_size}, but the tokenizer of "
                      f"{data_dir} has {tokenizer.size} pieces; expected at least that many "
                      "(or generate the data with --vocab-size)")
  featurized = features.Features(features.ensure(data_dir, config.stream, split,
                                                 tokenizer=tokenizer))
  episodes = grain.MapDataset.range(len(featurized))
  tasks = dataset.split_tasks(data_dir, split)
  edge_shares = edge_window_shares(tasks, config.data) if train else [(0.0, 0.0)] * len(tasks)
  sample = SampleWindow(featurized, config.data.window, edge_shares)
  if train:
    mine = range(len(featurized))[jax.process_index()::jax.process_count()]
    if len(mine) == 0:
      raise InputError(f"{data_dir}", f"split {split!r} has {len(episodes)} episodes, fewer "
                       f"than the {jax.process_count()} processes training on it")
    epoch = epoch_order(mine, tasks, config_lib.task_repeats(config.data.task_repeats))
    windows = grain.MapDataset.source(epoch).shuffle(seed).repeat(None).random_map(sample,
                                                                                   seed=seed)
  else:
    windows = _eval_windows(episodes, sample, seed, batch_size)
  batches = windows.batch(batch_size, drop_remainder=True)
  # Threads overlap featurization of the windows of a batch (numpy releases the GIL).
  read = grain.ReadOptions(num_threads=2, prefetch_buffer_size=config.data.prefetch)
  return prefetched(batches.to_iter_dataset(read), config)


def prefetched(iterable: grain.IterDataset,
               config: ml_collections.ConfigDict) -> grain.IterDataset:
  """`iterable` read ahead by config.data.num_workers worker processes (none: as it is)."""
  if config.data.num_workers == 0:
    return iterable
  if not absl.flags.FLAGS.is_parsed():  # Grain reads flags in its workers
    absl.flags.FLAGS.mark_as_parsed()
  return iterable.mp_prefetch(grain.MultiprocessingOptions(
      num_workers=config.data.num_workers, per_worker_buffer_size=config.data.prefetch),
      worker_init_fn=functools.partial(worker_lifetime.follow_parent, os.getpid()))


class DataIterator(grain.DatasetIterator):
  """A pipeline iterator whose state also records the worker count it was saved with."""

  def __init__(self, parent: grain.DatasetIterator, num_workers: int):
    super().__init__(parent)
    self._num_workers = num_workers

  def __next__(self) -> Batch:
    batch = next(self._parent)
    if self._num_workers:  # worker batches live in shared memory; copies can be kept freely
      batch = {key: np.array(value) for key, value in batch.items()}
    return batch

  def get_state(self) -> dict[str, Any]:
    return {"num_workers": self._num_workers, "pipeline": self._parent.get_state()}

  def set_state(self, state: dict[str, Any]) -> None:
    saved = state.get("num_workers")
    if saved != self._num_workers:
      raise InputError("config.data.num_workers", f"the data iterator state was saved with "
                       f"num_workers={saved} but this run uses {self._num_workers}; resume with "
                       f"--config.data.num_workers={saved}")
    self._parent.set_state(state["pipeline"])


def make_iterator(config: ml_collections.ConfigDict, data_dir: str | os.PathLike, split: str,
                  *, seed: int, train: bool = True,
                  tokenizer: Tokenizer | None = None) -> DataIterator:
  """An iterator over `make_dataset(...)` with get_state()/set_state() for checkpoints."""
  pipeline = make_dataset(config, data_dir, split, seed=seed, train=train, tokenizer=tokenizer)
  return DataIterator(iter(pipeline), config.data.num_workers)
