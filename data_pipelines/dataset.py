"""A dataset directory: episodes in TFDS/ArrayRecord, `manifest.json` and the SentencePiece model.

    DIR/manifest.json      {"episodes": [Episode.manifest_entry() ...], "splits": {split: [index
                            ...]}, "tfds_dir": ..., "stats": ...}
    DIR/tokenizer.model    trained on the episodes' words plus any extra sentences
    DIR/tfds/...           the ArrayRecord files (data_pipelines/tfds_builder.py)

`write_dataset` is atomic: everything is built in a temporary directory beside DIR and renamed
into place at the end, so a failure leaves nothing half-written and an existing DIR is replaced
only after success.
"""

from __future__ import annotations

import collections
import json
import os
import pathlib
import pickle
import shutil
from typing import Any, Iterable, Iterator

import ml_collections

from data_pipelines import featurize
from data_pipelines import tfds_builder
from data_pipelines.episode import Episode
from jax_interact import atomic, config as config_lib
from jax_interact.errors import InputError
from jax_interact.streams import tokenizer as tokenizer_lib
from jax_interact.streams.layout import Layout

MANIFEST = "manifest.json"
TOKENIZER = tokenizer_lib.FILENAME
TFDS_DIR = "tfds"
VALIDATION_EVERY = 10  # every 10th episode of each task is held out (at least one; `_SplitWriter`)


def write_dataset(out_dir: str | os.PathLike, episodes: Iterable[Episode], *,
                  tokenizer_sentences: Iterable[str] | None = None, vocab_size: int = 1024,
                  stream_config: ml_collections.ConfigDict | None = None) -> dict[str, Any]:
  """Writes the episodes, manifest and tokenizer to `out_dir`; returns the manifest.

  `stream_config` (default: `config.defaults().stream`) sets the slot counts with which the
  episodes are featurized once to count overflow for the manifest's statistics.
  """
  out = pathlib.Path(out_dir)
  check_replaceable(out)
  with atomic.directory(out) as tmp:
    writer = _SplitWriter(episodes, tmp / "stash", where=str(out))
    dataset_dir = tfds_builder.build(tmp / TFDS_DIR, writer.examples)
    shutil.rmtree(tmp / "stash", ignore_errors=True)
    shutil.rmtree(tmp / TFDS_DIR / "downloads", ignore_errors=True)
    sentences = writer.sentences + list(tokenizer_sentences or [])
    tokenizer_lib.train_tokenizer(sentences, str(tmp / TOKENIZER), vocab_size)
    tokenizer = tokenizer_lib.Tokenizer.load(str(tmp / TOKENIZER))

    manifest = {
        "episodes": writer.entries,
        "splits": writer.splits,
        "tfds_dir": str(dataset_dir.relative_to(tmp)),
        "stats": _statistics(writer, _open_source(dataset_dir), tokenizer, stream_config),
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
  return manifest


class _SplitWriter:
  """Splits one pass over the episodes into TFDS's train and validation example streams.

  TFDS builds the splits one after the other, so while the train split is written the
  validation episodes are stashed on disk and replayed afterwards. Counting per task keeps
  every task in both splits whatever order the tasks come in (every 10th of a stream that
  cycles through 5 tasks would always be the same task). With fewer than VALIDATION_EVERY
  episodes of every task the last one is held out; a single episode serves both splits.
  """

  def __init__(self, episodes: Iterable[Episode], stash_dir: pathlib.Path, where: str):
    self._episodes = episodes
    self._stash_dir = stash_dir
    self._where = where
    self._stashed: list[pathlib.Path] = []
    self.entries: list[dict[str, Any]] = []
    self.splits: dict[str, list[int]] = {split: [] for split in tfds_builder.SPLITS}
    self.sentences: list[str] = []
    self.durations_s: list[float] = []
    self.tasks: collections.Counter[str] = collections.Counter()
    self.words: collections.Counter[str] = collections.Counter()

  def examples(self, split: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if split == "train":
      for episode in self._train_episodes():
        self.splits["train"].append(episode.index)
        yield str(episode.index), episode.to_example()
    else:
      for path in self._stashed:
        example = pickle.loads(path.read_bytes())
        self.splits["validation"].append(int(example["index"]))
        yield str(example["index"]), example

  def _train_episodes(self) -> Iterator[Episode]:
    held: Episode | None = None  # one episode of lookahead decides the held-out one at the end
    seen: set[int] = set()
    for position, episode in enumerate(self._episodes):
      episode.validate(f"episodes[{position}] (index {episode.index})")
      if episode.index in seen:
        raise InputError(f"episodes[{position}].index", f"{episode.index} appears twice")
      seen.add(episode.index)
      self._record(episode)
      if self.tasks[episode.task] % VALIDATION_EVERY == 0:
        self._stash(episode)
        continue
      if held is not None:
        yield held
      held = episode
    if held is None:
      raise InputError(self._where, "no episodes to write")
    if self._stashed:
      yield held
    else:
      self._stash(held)
      if len(self.entries) == 1:
        yield held

  def _stash(self, episode: Episode) -> None:
    self._stash_dir.mkdir(exist_ok=True)
    path = self._stash_dir / f"{len(self._stashed)}.pkl"
    path.write_bytes(pickle.dumps(episode.to_example(), protocol=pickle.HIGHEST_PROTOCOL))
    self._stashed.append(path)

  def _record(self, episode: Episode) -> None:
    self.entries.append(episode.manifest_entry())
    self.durations_s.append(episode.duration_s)
    self.tasks[episode.task] += 1
    self.sentences.extend(_episode_sentences(episode))
    for word in episode.words:
      self.words[word.speaker] += 1


def _episode_sentences(episode: Episode) -> list[str]:
  """Tokenizer corpus lines: each speaker's words in order, typed text, background results."""
  lines = [" ".join(w.text for w in episode.words if w.speaker == speaker)
           for speaker in ("user", "model")]
  for event in episode.events:
    if event["type"] == "typed":
      lines.append(event["text"])
    elif event["type"] == "delegate":
      lines.append(str(event.get("task", "")))
      lines.append(" ".join(str(w["text"]) for w in event.get("result_words", [])))
  return [line for line in lines if line.strip()]


def _statistics(writer: _SplitWriter, train_and_validation: dict[str, "EpisodeSource"],
                tokenizer, stream_config: ml_collections.ConfigDict | None) -> dict[str, Any]:
  """Dataset totals plus featurization counts (overflow spilled or dropped) per episode summed."""
  stream = stream_config if stream_config is not None else config_lib.defaults().stream
  layout = Layout.from_config(stream)
  featurize_totals: collections.Counter[str] = collections.Counter()
  micro_turns = 0
  counted: set[int] = set()
  for source in train_and_validation.values():
    for i in range(len(source)):
      episode = source[i]
      if episode.index in counted:  # a single episode is in both splits
        continue
      counted.add(episode.index)
      tracks, stats = featurize.featurize_episode(episode, layout, tokenizer, stream)
      micro_turns += len(tracks["turn"])
      featurize_totals.update({k: int(v) for k, v in stats.items()})
  return {
      "episodes": len(writer.entries),
      "split_sizes": {split: len(ids) for split, ids in writer.splits.items()},
      "hours": round(sum(writer.durations_s) / 3600, 4),
      "mean_duration_s": round(sum(writer.durations_s) / len(writer.durations_s), 3),
      "tasks": dict(sorted(writer.tasks.items())),
      "words": dict(writer.words),
      "micro_turns": micro_turns,
      "tokenizer_size": tokenizer.size,
      "featurize": dict(sorted(featurize_totals.items())),
      "featurize_slots": {kind.name.lower(): n for kind, n in layout.counts},
  }


def check_replaceable(out: pathlib.Path) -> None:
  """Raises unless `out` is absent, an empty directory or a dataset (which gets replaced)."""
  if not out.exists():
    return
  if not out.is_dir() or (not (out / MANIFEST).is_file() and any(out.iterdir())):
    raise InputError(str(out), "exists and is not a dataset directory; refusing to replace it")


class EpisodeSource:
  """Random access to the episodes of one split (len, [i] -> Episode); picklable for workers."""

  def __init__(self, records):
    self._records = records

  def __len__(self) -> int:
    return len(self._records)

  def __getitem__(self, i: int) -> Episode:
    return Episode.from_example(self._records[i])

  def __repr__(self) -> str:
    return f"EpisodeSource({self._records!r})"


def _open_source(dataset_dir: pathlib.Path) -> dict[str, EpisodeSource]:
  builder = tfds_builder.open_builder(dataset_dir)
  return {split: EpisodeSource(builder.as_data_source(split)) for split in tfds_builder.SPLITS}


def read_manifest(data_dir: str | os.PathLike) -> dict[str, Any]:
  path = pathlib.Path(data_dir) / MANIFEST
  if not pathlib.Path(data_dir).is_dir():
    raise InputError(str(data_dir), "not a directory; expected a dataset written by "
                     "`jax-interact data generate` or `data convert`")
  if not path.is_file():
    raise InputError(str(path), "not found; expected a dataset written by "
                     "`jax-interact data generate` or `data convert`")
  try:
    manifest = json.loads(path.read_text())
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise InputError(str(path), f"not valid JSON ({e})") from None
  for key in ("episodes", "splits", "tfds_dir"):
    if not isinstance(manifest, dict) or key not in manifest:
      raise InputError(f"{path}.{key}", "missing; expected a manifest written by write_dataset")
  return manifest


def open_split(data_dir: str | os.PathLike, split: str) -> EpisodeSource:
  """The episodes of `split` ("train" or "validation") in the order they were written."""
  if split not in tfds_builder.SPLITS:
    raise InputError("split", f"got {split!r}, expected one of {tfds_builder.SPLITS}")
  manifest = read_manifest(data_dir)
  dataset_dir = pathlib.Path(data_dir) / manifest["tfds_dir"]
  try:
    builder = tfds_builder.open_builder(dataset_dir)
  except Exception as e:  # missing or corrupt TFDS metadata is a bad input directory
    raise InputError(str(dataset_dir), f"cannot be read as a TFDS dataset ({e})") from None
  return EpisodeSource(builder.as_data_source(split))


def episode_by_index(data_dir: str | os.PathLike, index: int) -> Episode:
  """The episode whose `Episode.index` is `index`, from whichever split holds it."""
  manifest = read_manifest(data_dir)
  for split, indices in manifest["splits"].items():
    if index in indices:
      return open_split(data_dir, split)[indices.index(index)]
  known = sorted(e["index"] for e in manifest["episodes"])
  raise InputError("--index", f"got {index}, expected an episode index in "
                   f"{_ranges(known)}")


def _ranges(values: list[int]) -> str:
  if values and values == list(range(values[0], values[-1] + 1)):
    return f"{values[0]}..{values[-1]}"
  return ", ".join(map(str, values[:20])) + (" ..." if len(values) > 20 else "")


def load_tokenizer(data_dir: str | os.PathLike):
  """The dataset's `jax_interact.streams.tokenizer.Tokenizer`."""
  path = pathlib.Path(data_dir) / TOKENIZER
  if not path.is_file():
    raise InputError(str(path), "not found; expected the tokenizer written with the dataset")
  return tokenizer_lib.Tokenizer.load(str(path))
