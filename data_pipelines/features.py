"""Featurized episodes, cached beside their dataset: featurize once, then a window is a slice.

    DIR/features/<key>/<split>/layout.json   {"episodes", "micro_turns", "groups": {group:
                                             {"dtype", "shape"}}}
    DIR/features/<key>/<split>/offsets.npy   int64 [episodes + 1]: episode i owns micro-turns
                                             offsets[i]:offsets[i + 1]
    DIR/features/<key>/<split>/<group>.bin   every episode's `featurize.featurize_episode` arrays
                                             of that group, concatenated along the micro-turn
                                             axis (raw, memory-mapped when read)

`jax-interact data featurize DIR --config C` builds the caches C's training reads, before it
starts (`train` builds any that are missing).

`key` hashes the stream config (slot counts, mel channels, frame size) and the tokenizer the
text is encoded with (the dataset's, or a model's trained on another dataset) with
FORMAT_VERSION, so configs that lay micro-turns out differently, and models that read other
token ids, get caches of their own; each cache keeps its tokenizer as
DIR/features/<key>/tokenizer.model. `ensure` builds a missing
split once, in worker processes, streaming every group to disk (memory stays flat however many
episodes there are), in a temporary folder renamed into place: a crash leaves no half cache.
Reading (`Features`) opens the files lazily, so it pickles cheaply into Grain workers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import pathlib
import shutil
import tempfile
import threading
import time
from typing import Any

import ml_collections
import numpy as np
import tqdm

from data_pipelines import dataset
from data_pipelines import featurize
from data_pipelines import worker_lifetime
from jax_interact import atomic
from jax_interact import config as config_lib
from jax_interact.streams import tokenizer as tokenizer_lib

FORMAT_VERSION = 4
FEATURES_DIR = "features"
LAYOUT = "layout.json"

Tracks = dict[str, np.ndarray]


def cache_key(stream_config: ml_collections.ConfigDict,
              tokenizer: tokenizer_lib.Tokenizer) -> str:
  text = json.dumps({"format": FORMAT_VERSION, "stream": stream_config.to_dict(),
                     "tokenizer": hashlib.sha256(tokenizer.model_bytes()).hexdigest()},
                    sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_dir(data_dir: str | os.PathLike, stream_config: ml_collections.ConfigDict,
              tokenizer: tokenizer_lib.Tokenizer) -> pathlib.Path:
  return pathlib.Path(data_dir) / FEATURES_DIR / cache_key(stream_config, tokenizer)


def _featurize(job: tuple[str, str, str, str, str, int]) -> Tracks:
  *inputs, i = job
  episodes, layout, tokenizer, stream = dataset.featurizing_inputs(*inputs)
  tracks, _ = featurize.featurize_episode(episodes[i], layout, tokenizer, stream)
  return tracks


def ensure(data_dir: str | os.PathLike, stream_config: ml_collections.ConfigDict, split: str, *,
           tokenizer: tokenizer_lib.Tokenizer | None = None, workers: int = 0,
           progress: bool = True) -> pathlib.Path:
  """The feature cache of one split of `data_dir` for `stream_config`, its text encoded by
  `tokenizer` (default: the dataset's), built first if missing.

  `workers` processes featurize (0: all cores; 1: this process). Safe to call from several
  processes at once: each builds privately and the first rename wins.
  """
  tokenizer = tokenizer or dataset.load_tokenizer(data_dir)
  target = cache_dir(data_dir, stream_config, tokenizer) / split
  if (target / LAYOUT).is_file():
    return target
  target.parent.mkdir(parents=True, exist_ok=True)
  tokenizer_path = target.parent / tokenizer_lib.FILENAME
  if not tokenizer_path.is_file():
    atomic.write_bytes(tokenizer_path, tokenizer.model_bytes())
  tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{split}.", dir=target.parent))
  try:
    stream_json = json.dumps(stream_config.to_dict())
    n = len(dataset.open_split(data_dir, split))  # checks the split against the manifest
    tfds_dir = pathlib.Path(data_dir) / dataset.read_manifest(data_dir)["tfds_dir"]
    jobs = [(str(tfds_dir), split, f"{data_dir}:{split}", str(tokenizer_path), stream_json, i)
            for i in range(n)]
    with tqdm.tqdm(total=n, unit="episode", desc=f"featurizing {split}",
                   disable=not progress) as bar:
      tracks = worker_lifetime.ordered_map(_featurize, jobs, workers, chunksize=4,
                                           jobs_per_worker=dataset.EPISODES_PER_WORKER)
      layout = _write(tmp, tracks, bar)
    (tmp / LAYOUT).write_text(json.dumps(layout, indent=1))
    try:
      os.rename(tmp, target)
    except OSError:  # another process finished first; its cache is the same
      if not (target / LAYOUT).is_file():
        raise
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return target


def _write(out: pathlib.Path, episodes, bar: tqdm.tqdm) -> dict[str, Any]:
  """Streams each episode's tracks to `<group>.bin`; returns the split's layout."""
  files, groups, offsets = {}, {}, [0]
  try:
    for tracks in episodes:
      for group, array in tracks.items():
        if group not in files:
          files[group] = open(out / f"{group}.bin", "wb")
          groups[group] = {"dtype": array.dtype.str, "shape": list(array.shape[1:])}
        files[group].write(np.ascontiguousarray(array).tobytes())
      offsets.append(offsets[-1] + len(tracks["turn"]))
      bar.update()
  finally:
    for f in files.values():
      f.close()
  np.save(out / "offsets.npy", np.asarray(offsets, np.int64))
  return {"episodes": len(offsets) - 1, "micro_turns": offsets[-1], "groups": groups}


# Grain's reader threads open a split's files on first use. numpy parses a .npy header with
# `ast`, which on CPython 3.11 can fail when two threads parse at once (a spurious "AST
# constructor recursion depth mismatch" SystemError, cpython gh-106905), so opening is serialised.
_OPEN_LOCK = threading.Lock()


class Features:
  """One split's featurized episodes (the folder `ensure` returns): `len`, `num_turns(i)` and
  `window(i, start, n)`."""

  def __init__(self, directory: str | os.PathLike):
    self.directory = pathlib.Path(directory)
    entry = json.loads((self.directory / LAYOUT).read_text())
    self._groups = entry["groups"]
    self._episodes = entry["episodes"]
    self._micro_turns = entry["micro_turns"]
    self._arrays: dict[str, np.ndarray] | None = None

  def __getstate__(self) -> dict[str, Any]:
    return {**self.__dict__, "_arrays": None}  # memory maps are reopened where unpickled

  def _open(self) -> dict[str, np.ndarray]:
    if self._arrays is not None:
      return self._arrays
    with _OPEN_LOCK:
      if self._arrays is None:
        self._arrays = self._map_files()
    return self._arrays

  def _map_files(self) -> dict[str, np.ndarray]:
    arrays = {"offsets": np.load(self.directory / "offsets.npy")}
    for group, spec in self._groups.items():
      dtype, shape = np.dtype(spec["dtype"]), (self._micro_turns, *spec["shape"])
      # A group of no slots (e.g. stream.bg_slots = 0) wrote an empty file, which cannot be
      # memory-mapped.
      arrays[group] = (np.memmap(self.directory / f"{group}.bin", mode="r", dtype=dtype,
                                 shape=shape)
                       if math.prod(shape) else np.zeros(shape, dtype))
    return arrays

  def __len__(self) -> int:
    return self._episodes

  def num_turns(self, i: int) -> int:
    offsets = self._open()["offsets"]
    return int(offsets[i + 1] - offsets[i])

  def tracks(self, i: int) -> Tracks:
    """Episode i's arrays (read-only views), as `featurize.featurize_episode` returns them."""
    arrays = self._open()
    lo, hi = arrays["offsets"][i], arrays["offsets"][i + 1]
    return {group: arrays[group][lo:hi] for group in self._groups}

  def window(self, i: int, start: int, n: int) -> Tracks:
    """Micro-turns [start, start + n) of episode i (`featurize.window`: padded past its end)."""
    return featurize.window(self.tracks(i), start, n)


def main(args: argparse.Namespace) -> int:
  """`jax-interact data featurize`: the feature caches of a config's stream layout."""
  stream = config_lib.load(args.config, [*args.overrides, f"--config.data.dir={args.dir}"]).stream
  for split in args.splits.split(","):
    start = time.perf_counter()
    path = ensure(args.dir, stream, split, workers=args.workers)
    print(f"{split}: {len(Features(path))} episodes featurized at {path} "
          f"({time.perf_counter() - start:.1f} s)")
  return 0
