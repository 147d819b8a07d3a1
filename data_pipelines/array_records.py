"""Episodes on disk: TFDS-readable ArrayRecord shards, written as a stream (no TensorFlow).

    <dir>/interaction_episodes/1.0.0/interaction_episodes-<split>.array_record-0000K-of-0000N
    <dir>/interaction_episodes/1.0.0/dataset_info.json, features.json   (TFDS metadata)

One record per episode (the flat dict of `Episode.to_example`, serialized by TFDS's feature
connectors), in the order written; a shard is closed once it holds SHARD_BYTES, so memory holds
one record at a time however many episodes there are. Reading goes through
`tfds.builder_from_directory(...).as_data_source(split)`, which needs neither TensorFlow nor
this module's writer.
"""

from __future__ import annotations

import functools
import os
import pathlib
import shutil
from typing import Any, Sequence

import numpy as np
import tensorflow_datasets as tfds
from array_record.python import array_record_module

SPLITS = ("train", "validation")
NAME = "interaction_episodes"
VERSION = "1.0.0"
SHARD_BYTES = 256 * 2**20


@functools.cache
def features() -> tfds.features.FeaturesDict:
  """The stored fields of one episode (see `Episode.to_example`)."""
  tensor = tfds.features.Tensor
  return tfds.features.FeaturesDict({
      "index": tensor(shape=(), dtype=np.int64),
      "user_audio": tensor(shape=(None,), dtype=np.int16),
      "model_audio": tensor(shape=(None,), dtype=np.int16),
      # Several unknown dimensions need an encoding; procedural frames compress well.
      "video": tensor(shape=(None, None, None, 3), dtype=np.uint8, encoding="zlib"),
      "video_times_s": tensor(shape=(None,), dtype=np.float32),
      "meta": tensor(shape=(), dtype=np.str_),  # JSON: task, words, events, annotations
  })


def dataset_dir(root: pathlib.Path) -> pathlib.Path:
  """Where the shards and metadata of a store under `root` live (what `open_builder` reads)."""
  return root / NAME / VERSION


def _shard_name(split: str, shard: int, shards: int) -> str:
  return f"{NAME}-{split}.array_record-{shard:05d}-of-{shards:05d}"


class SplitWriter:
  """Streams one split's examples into shards; `close()` names them and returns the split info.

  The shard count is known only at the end, so shards are written under temporary names.
  """

  def __init__(self, root: pathlib.Path, split: str):
    self.directory = dataset_dir(root)
    self.directory.mkdir(parents=True, exist_ok=True)
    self.split = split
    self.shard_lengths: list[int] = []
    self.num_bytes = 0
    self._writer = None
    self._shard_bytes = 0

  def _partial(self, shard: int) -> pathlib.Path:
    return self.directory / f".{self.split}-{shard:05d}.partial"

  def write(self, example: dict[str, Any]) -> None:
    record = features().serialize_example(example)
    if self._writer is None or self._shard_bytes >= SHARD_BYTES:
      self._close_shard()
      self._writer = array_record_module.ArrayRecordWriter(
          str(self._partial(len(self.shard_lengths))), "group_size:1")  # random access
      self.shard_lengths.append(0)
      self._shard_bytes = 0
    self._writer.write(record)
    self.shard_lengths[-1] += 1
    self._shard_bytes += len(record)
    self.num_bytes += len(record)

  def _close_shard(self) -> None:
    if self._writer is not None:
      self._writer.close()
      self._writer = None

  def close(self) -> tfds.core.SplitInfo:
    self._close_shard()
    shards = len(self.shard_lengths)
    for shard in range(shards):
      os.replace(self._partial(shard), self.directory / _shard_name(self.split, shard, shards))
    return tfds.core.SplitInfo(name=self.split, shard_lengths=self.shard_lengths,
                               num_bytes=self.num_bytes)


def write_metadata(root: pathlib.Path, splits: Sequence[tfds.core.SplitInfo]) -> None:
  """The TFDS metadata (dataset_info.json, features.json) of the shards under `root`."""
  tfds.folder_dataset.write_metadata(
      data_dir=dataset_dir(root), features=features(), split_infos=list(splits),
      check_data=False, disable_shuffling=True,
      description="jax_interact episodes (jax_interact/streams/episode.py)")


def join(roots: Sequence[pathlib.Path], out: pathlib.Path) -> None:
  """One store under `out` holding the shards of the stores under `roots`, in that order: each
  split's shards are renumbered and hard-linked (copied across filesystems), and the metadata
  written anew."""
  infos = [open_builder(dataset_dir(root)).info.splits for root in roots]
  directory = dataset_dir(out)
  directory.mkdir(parents=True, exist_ok=True)
  joined = []
  for split in SPLITS:
    lengths = [(root, len(info[split].shard_lengths)) for root, info in zip(roots, infos)]
    shards = sum(n for _, n in lengths)
    shard = 0
    for root, n in lengths:
      for k in range(n):
        source = dataset_dir(root) / _shard_name(split, k, n)
        target = directory / _shard_name(split, shard, shards)
        try:
          os.link(source, target)
        except OSError:
          shutil.copyfile(source, target)
        shard += 1
    joined.append(tfds.core.SplitInfo(
        name=split, shard_lengths=[n for info in infos for n in info[split].shard_lengths],
        num_bytes=sum(info[split].num_bytes for info in infos)))
  write_metadata(out, joined)


def open_builder(directory: pathlib.Path) -> tfds.core.DatasetBuilder:
  return tfds.builder_from_directory(str(directory))
