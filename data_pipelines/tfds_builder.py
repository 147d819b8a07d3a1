"""The TFDS builder that stores episodes as ArrayRecord (no TensorFlow needed).

One record per episode, the flat dict of `Episode.to_example`; shuffling is disabled so record i
of a split is the i-th episode written to it. Reading back goes through
`tfds.builder_from_directory(...).as_data_source(split)`, which needs neither this class nor
TensorFlow.
"""

from __future__ import annotations

import pathlib
import sys
from typing import Any, Callable, Iterator
from unittest import mock

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core import shuffle

SPLITS = ("train", "validation")
VERSION = "1.0.0"

Examples = Iterator[tuple[str, dict[str, Any]]]


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


class InteractionEpisodes(tfds.core.GeneratorBasedBuilder):
  """Episodes of the interaction format; the examples of each split come from the caller."""

  VERSION = tfds.core.Version(VERSION)
  # Nothing is downloaded, so there is no checksums file beside the code to look for (the lookup
  # fails for packages installed in editable mode).
  code_path = None

  def __init__(self, *, split_examples: Callable[[str], Examples] | None = None, **kwargs):
    """`split_examples(split)` yields (key, example) pairs; splits are built in SPLITS order."""
    self._split_examples = split_examples
    super().__init__(file_format="array_record", **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(builder=self, features=features(), disable_shuffling=True,
                                 description="jax_interact episodes (data_pipelines/episode.py)")

  # TFDS prints where it builds, which is a temporary directory here; the caller reports progress.
  def _log_download_bytes(self) -> None:
    pass

  def _log_download_done(self) -> None:
    pass

  def _split_generators(self, dl_manager) -> dict[str, Examples]:
    del dl_manager
    return {split: self._generate_examples(split) for split in SPLITS}

  def _generate_examples(self, split: str) -> Examples:
    yield from self._split_examples(split)


def build(data_dir: pathlib.Path, split_examples: Callable[[str], Examples]) -> pathlib.Path:
  """Writes both splits under `data_dir`; returns the directory `open_builder` reads."""
  tfds.disable_progress_bar()  # callers show their own progress
  builder = InteractionEpisodes(data_dir=str(data_dir), split_examples=split_examples)
  # The TFDS writer holds a split in memory up to 1 GB, then spills it to temporary files
  # through tf.io.gfile, which needs TensorFlow. Keep whole splits in memory instead (a
  # split's memory is its size on disk).
  with mock.patch.object(shuffle, "MAX_MEM_BUFFER_SIZE", sys.maxsize):
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS))
  return pathlib.Path(builder.data_dir)


def open_builder(dataset_dir: pathlib.Path) -> tfds.core.DatasetBuilder:
  return tfds.builder_from_directory(str(dataset_dir))
