"""A dataset directory: episodes in TFDS/ArrayRecord, `manifest.json` and the SentencePiece model.

    DIR/manifest.json      {"episodes": [Episode.manifest_entry() ...], "splits": {split: [index
                            ...]}, "tfds_dir": ..., "stats": ...}
    DIR/tokenizer.model    trained on the episodes' words plus any extra sentences
    DIR/tfds/...           the ArrayRecord shards (data_pipelines/array_records.py)

`write_dataset` streams the episodes to disk as they come (memory holds one at a time besides
the manifest's text) and is atomic: everything is built in a temporary directory beside DIR and
renamed into place at the end, so a failure leaves nothing half-written and an existing DIR is
replaced only after success.

A large dataset can be written in independent parts (`write_dataset(..., part=(I, N))`, e.g. by
`data generate --shard I/N` on several machines): a part holds its episodes and a manifest with
"part" and "tokenizer" entries but no tokenizer or statistics yet; `merge_parts` joins all N parts
into one dataset and trains the tokenizer on all of them.
"""

from __future__ import annotations

import collections
import functools
import json
import math
import os
import pathlib
from typing import Any, Iterable, Sequence

import ml_collections
import tqdm

from data_pipelines import array_records, featurize, worker_lifetime
from jax_interact import atomic
from jax_interact import config as config_lib
from jax_interact.errors import InputError
from jax_interact.streams import tokenizer as tokenizer_lib
from jax_interact.streams.episode import Episode
from jax_interact.streams.layout import Layout

MANIFEST = "manifest.json"
TOKENIZER = tokenizer_lib.FILENAME
TFDS_DIR = "tfds"
VALIDATION_EVERY = 10  # every 10th episode of each task is held out (at least one; `_write_splits`)
MERGE_HINT = "join all parts with `jax-interact data merge --out DIR PART...`"
EPISODES_PER_WORKER = 50  # episodes that repay spawning a featurizing worker (seconds)


def write_dataset(out_dir: str | os.PathLike, episodes: Iterable[Episode], *,
                  tokenizer_sentences: Iterable[str] | None = None, vocab_size: int = 1024,
                  stream_config: ml_collections.ConfigDict | None = None,
                  part: tuple[int, int] | None = None, workers: int = 0,
                  origin: dict[str, Any] | None = None) -> dict[str, Any]:
  """Writes the episodes, manifest and tokenizer to `out_dir`; returns the manifest (recording
  `origin`, what made the episodes, where given).

  `stream_config` (default: `config.defaults().stream`) sets the slot counts with which the
  episodes are featurized once, in `workers` processes (0: one per core), to count overflow
  for the manifest's statistics. With `part` (I, N) it writes part I of N instead: the
  episodes and a manifest recording how to finish (`merge_parts` does, with the default stream
  config).
  """
  out = pathlib.Path(out_dir)
  check_replaceable(out)
  with atomic.directory(out) as tmp:
    entries, splits = _write_splits(tmp / TFDS_DIR, episodes, where=str(out))
    manifest = {"episodes": entries, "splits": splits,
                "tfds_dir": str(array_records.dataset_dir(pathlib.Path(TFDS_DIR)))}
    if origin is not None:
      manifest["origin"] = origin
    tokenizer_settings = {"vocab_size": vocab_size,
                          "extra_sentences": list(tokenizer_sentences or [])}
    if part is None:
      manifest["stats"] = _finish(tmp, manifest, tokenizer_settings, stream_config, workers)
    else:
      manifest.update(part={"index": part[0], "of": part[1]}, tokenizer=tokenizer_settings)
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
  return manifest


def _write_splits(root: pathlib.Path, episodes: Iterable[Episode],
                  where: str) -> tuple[list[dict[str, Any]], dict[str, list[int]]]:
  """Streams one pass over the episodes into the train and validation shards; returns the
  manifest entries and the episode indices of each split.

  Counting per task keeps every task in both splits whatever order the tasks come in (every
  10th of a stream that cycles through 5 tasks would always be the same task). One episode of
  lookahead is held back: with fewer than VALIDATION_EVERY episodes of every task the last one
  is held out, and a single episode serves both splits.
  """
  writers = {split: array_records.SplitWriter(root, split) for split in array_records.SPLITS}
  splits: dict[str, list[int]] = {split: [] for split in array_records.SPLITS}
  entries: list[dict[str, Any]] = []
  tasks: collections.Counter[str] = collections.Counter()

  def write(split: str, episode: Episode) -> None:
    writers[split].write(episode.to_example())
    splits[split].append(episode.index)

  held: Episode | None = None
  seen: set[int] = set()
  for position, episode in enumerate(episodes):
    episode.validate(f"episodes[{position}] (index {episode.index})")
    if episode.index in seen:
      raise InputError(f"episodes[{position}].index", f"{episode.index} appears twice")
    seen.add(episode.index)
    entries.append(episode.manifest_entry())
    tasks[episode.task] += 1
    if tasks[episode.task] % VALIDATION_EVERY == 0:
      write("validation", episode)
      continue
    if held is not None:
      write("train", held)
    held = episode
  if held is None:
    raise InputError(where, "no episodes to write")
  if splits["validation"]:
    write("train", held)
  else:
    write("validation", held)
    if len(entries) == 1:
      write("train", held)
  array_records.write_metadata(root, [writer.close() for writer in writers.values()])
  return entries, splits


def _finish(out: pathlib.Path, manifest: dict[str, Any], tokenizer_settings: dict[str, Any],
            stream_config: ml_collections.ConfigDict | None, workers: int) -> dict[str, Any]:
  """Trains the tokenizer on the manifest's episodes plus the extra sentences; returns the
  statistics."""
  sentences = [line for entry in manifest["episodes"] for line in _episode_sentences(entry)]
  tokenizer_lib.train_tokenizer(sentences + tokenizer_settings["extra_sentences"],
                                str(out / TOKENIZER), tokenizer_settings["vocab_size"])
  return _statistics(out, manifest, stream_config, workers)


def _episode_sentences(entry: dict[str, Any]) -> list[str]:
  """Tokenizer corpus lines of a manifest entry: each speaker's words in order, typed text,
  background jobs and their results."""
  lines = [" ".join(w["text"] for w in entry["words"] if w["speaker"] == speaker)
           for speaker in ("user", "model")]
  for event in entry["events"]:
    if event["type"] == "typed":
      lines.append(event["text"])
    elif event["type"] == "delegate":
      lines.append(str(event.get("task", "")))
      lines.append(" ".join(str(w["text"]) for w in event.get("result_words", [])))
  return [line for line in lines if line.strip()]


@functools.cache
def featurizing_inputs(tfds_dir: str, split: str, where: str, tokenizer_path: str,
                       stream_json: str):
  """(episodes of `split` in the store at `tfds_dir`, named `where` in errors, layout,
  tokenizer, stream config): what a featurizing worker reads, opened once per process."""
  stream = ml_collections.ConfigDict(json.loads(stream_json))
  source = EpisodeSource(array_records.open_builder(pathlib.Path(tfds_dir)).as_data_source(split),
                         where)
  return source, Layout.from_config(stream), tokenizer_lib.Tokenizer.load(tokenizer_path), stream


def _episode_counts(job: tuple[str, str, str, str, str, int]) -> tuple[int, int, dict[str, int]]:
  """(episode index, micro-turns, featurization counts) of episode i of a split."""
  *inputs, i = job
  episodes, layout, tokenizer, stream = featurizing_inputs(*inputs)
  episode = episodes[i]
  tracks, counts = featurize.featurize_episode(episode, layout, tokenizer, stream)
  return episode.index, len(tracks["turn"]), {k: int(v) for k, v in counts.items()}


def _statistics(out: pathlib.Path, manifest: dict[str, Any],
                stream_config: ml_collections.ConfigDict | None, workers: int) -> dict[str, Any]:
  """Dataset totals plus featurization counts (overflow spilled or dropped) per episode summed."""
  stream = stream_config if stream_config is not None else config_lib.defaults().stream
  layout = Layout.from_config(stream)
  tokenizer = tokenizer_lib.Tokenizer.load(str(out / TOKENIZER))
  tfds_dir, stream_json = str(out / manifest["tfds_dir"]), json.dumps(stream.to_dict())
  jobs = [(tfds_dir, split, str(out), str(out / TOKENIZER), stream_json, i)
          for split in array_records.SPLITS for i in range(len(manifest["splits"][split]))]
  featurize_totals: collections.Counter[str] = collections.Counter()
  micro_turns = 0
  counted: set[int] = set()
  for index, turns, counts in tqdm.tqdm(
      worker_lifetime.ordered_map(_episode_counts, jobs, workers,
                                  jobs_per_worker=EPISODES_PER_WORKER, chunksize=8),
      total=len(jobs), unit="episode", desc="statistics", leave=False):
    if index not in counted:  # a single episode is in both splits
      counted.add(index)
      micro_turns += turns
      featurize_totals.update(counts)
  entries = manifest["episodes"]
  durations_s = [entry["duration_s"] for entry in entries]
  words = collections.Counter(w["speaker"] for entry in entries for w in entry["words"])
  return {
      "episodes": len(entries),
      "split_sizes": {split: len(ids) for split, ids in manifest["splits"].items()},
      "hours": round(sum(durations_s) / 3600, 4),
      "mean_duration_s": round(sum(durations_s) / len(durations_s), 3),
      "tasks": dict(sorted(collections.Counter(entry["task"] for entry in entries).items())),
      "words": dict(words),
      "micro_turns": micro_turns,
      "tokenizer_size": tokenizer.size,
      "featurize": dict(sorted(featurize_totals.items())),
      "featurize_slots": {kind.name.lower(): n for kind, n in layout.counts},
  }


def merge_parts(out_dir: str | os.PathLike, part_dirs: Sequence[str | os.PathLike],
                workers: int = 0) -> dict:
  """Joins the N parts written with `write_dataset(..., part=(I, N))` into one dataset at
  `out_dir` (atomic; the parts are left as they are; statistics counted in `workers` processes,
  0: one per core); returns its manifest."""
  out = pathlib.Path(out_dir)
  check_replaceable(out)
  parts = sorted((_read_part(p) for p in part_dirs), key=lambda part: part[1]["part"]["index"])
  counts = {manifest["part"]["of"] for _, manifest in parts}
  if len(counts) != 1:
    raise InputError(str(part_dirs[0]), f"the parts say different totals {sorted(counts)}; "
                     "expected the N parts of one dataset")
  total = counts.pop()
  indices = [manifest["part"]["index"] for _, manifest in parts]
  if indices != list(range(total)):
    missing = sorted(set(range(total)) - set(indices))
    problem = f"part {missing[0]} of {total} is missing" if missing else "a part appears twice"
    raise InputError("parts", f"{problem} (got parts {indices}); {MERGE_HINT}")
  for key, what in (("tokenizer", "tokenizer settings"), ("origin", "generation settings")):
    if any(m.get(key) != parts[0][1].get(key) for _, m in parts):
      raise InputError("parts", f"the parts were written with different {what} (their "
                       f"manifests' {key!r}); expected the N parts of one `data generate`")
  settings, origin = parts[0][1]["tokenizer"], parts[0][1].get("origin")
  seen: dict[int, pathlib.Path] = {}
  for directory, manifest in parts:
    for entry in manifest["episodes"]:
      if entry["index"] in seen:
        raise InputError(str(directory), f"episode index {entry['index']} is also in "
                         f"{seen[entry['index']]}; parts must hold different episodes")
      seen[entry["index"]] = directory
  with atomic.directory(out) as tmp:
    array_records.join([directory / TFDS_DIR for directory, _ in parts], tmp / TFDS_DIR)
    manifest = {
        "episodes": [entry for _, m in parts for entry in m["episodes"]],
        "splits": {split: [i for _, m in parts for i in m["splits"][split]]
                   for split in array_records.SPLITS},
        "tfds_dir": str(array_records.dataset_dir(pathlib.Path(TFDS_DIR))),
        **({"origin": origin} if origin is not None else {}),
    }
    manifest["stats"] = _finish(tmp, manifest, settings, None, workers)
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
  return manifest


def summary(manifest: dict[str, Any]) -> str:
  """'N episodes (H h of audio, T train / V validation)' of a dataset's or a part's manifest."""
  hours = sum(entry["duration_s"] for entry in manifest["episodes"]) / 3600
  splits = manifest["splits"]
  return (f"{len(manifest['episodes'])} episodes ({hours:.3f} h of audio, "
          f"{len(splits['train'])} train / {len(splits['validation'])} validation)")


def check_replaceable(out: pathlib.Path) -> None:
  """Raises unless `out` is absent, an empty directory or a dataset (which gets replaced)."""
  if not out.exists():
    return
  if not out.is_dir() or (not (out / MANIFEST).is_file() and any(out.iterdir())):
    raise InputError(str(out), "exists and is not a dataset directory; refusing to replace it")


class EpisodeSource:
  """Random access to the episodes of one split (len, [i] -> Episode); picklable for workers.
  A record that does not decode to a valid episode raises InputError naming it."""

  def __init__(self, records, where: str):
    self._records = records
    self._where = where

  def __len__(self) -> int:
    return len(self._records)

  def __getitem__(self, i: int) -> Episode:
    if not 0 <= i < len(self):
      raise IndexError(f"{self._where}: no record {i} of {len(self)}")
    where = f"{self._where}[{i}]"
    try:
      record = self._records[i]
    except Exception as e:  # ArrayRecord and TFDS raise many kinds for a damaged shard
      raise InputError(where, f"cannot be read ({type(e).__name__}: {e})") from None
    episode = Episode.from_example(record, where)
    episode.validate(where)
    return episode

  def __repr__(self) -> str:
    return f"EpisodeSource({self._records!r}, {self._where!r})"


_WRITTEN_BY = "expected a dataset written by `jax-interact data generate` or `data convert`"


def _load_manifest(data_dir: str | os.PathLike) -> tuple[pathlib.Path, dict[str, Any]]:
  path = pathlib.Path(data_dir) / MANIFEST
  if not pathlib.Path(data_dir).is_dir():
    raise InputError(str(data_dir), f"not a directory; {_WRITTEN_BY}")
  if not path.is_file():
    raise InputError(str(path), f"not found; {_WRITTEN_BY}")
  try:
    manifest = json.loads(path.read_text())
  except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
    raise InputError(str(path), f"not valid JSON ({type(e).__name__}: {e})") from None
  _check_manifest(manifest, str(path))
  return path, manifest


def _check_manifest(manifest: Any, where: str) -> None:
  """Raises InputError naming the first field that breaks the manifest format."""
  def fail(field: str, expected: str):
    raise InputError(f"{where}{field}", f"expected {expected}; not a manifest written by "
                     "write_dataset")

  def check(value: Any, kind: type | tuple[type, ...], field: str, expected: str) -> None:
    if isinstance(value, bool) or not isinstance(value, kind):  # no field is a bool
      fail(field, expected)

  check(manifest, dict, "", "a JSON object")
  for key, kind, expected in (("episodes", list, "a list"), ("splits", dict, "an object"),
                              ("tfds_dir", str, "a relative path")):
    if key not in manifest:
      fail(f".{key}", f"{expected} (missing)")
    check(manifest[key], kind, f".{key}", expected)
  if pathlib.Path(manifest["tfds_dir"]).is_absolute() or ".." in pathlib.Path(
      manifest["tfds_dir"]).parts:
    fail(".tfds_dir", "a path inside the dataset directory")
  indices = set()
  for i, entry in enumerate(manifest["episodes"]):
    field = f".episodes[{i}]"
    check(entry, dict, field, "an object")
    for key, kind, expected in (("index", int, "an integer"), ("task", str, "a string"),
                                ("duration_s", (int, float), "a finite number"),
                                ("words", list, "a list"), ("events", list, "a list")):
      if key not in entry:
        fail(f"{field}.{key}", f"{expected} (missing)")
      check(entry[key], kind, f"{field}.{key}", expected)
    if isinstance(entry["duration_s"], float) and not math.isfinite(entry["duration_s"]):
      fail(f"{field}.duration_s", "a finite number")
    if entry["index"] in indices:
      fail(f"{field}.index", "an index no other episode has")
    for j, word in enumerate(entry["words"]):
      check(word, dict, f"{field}.words[{j}]", "an object")
      for key in ("speaker", "text"):
        check(word.get(key), str, f"{field}.words[{j}].{key}", "a string")
    for j, event in enumerate(entry["events"]):
      event_field = f"{field}.events[{j}]"
      check(event, dict, event_field, "an object")
      check(event.get("type"), str, f"{event_field}.type", "a string")
      if event["type"] == "typed":  # what the tokenizer learns from (`_episode_sentences`)
        check(event.get("text"), str, f"{event_field}.text", "a string")
      check(event.get("result_words", []), list, f"{event_field}.result_words", "a list")
      for k, word in enumerate(event.get("result_words", [])):
        check(word, dict, f"{event_field}.result_words[{k}]", "an object with 'text'")
        check(word.get("text"), str, f"{event_field}.result_words[{k}].text", "a string")
    indices.add(entry["index"])
  for split in array_records.SPLITS:
    ids = manifest["splits"].get(split)
    check(ids, list, f".splits.{split}", "a list of episode indices")
    for j, index in enumerate(ids):
      if not isinstance(index, int) or isinstance(index, bool) or index not in indices:
        fail(f".splits.{split}[{j}]", "the index of an episode in .episodes")


def read_manifest(data_dir: str | os.PathLike) -> dict[str, Any]:
  """The manifest of a dataset (not of a part of one)."""
  path, manifest = _load_manifest(data_dir)
  if "part" in manifest:
    part = manifest["part"] if isinstance(manifest["part"], dict) else {}
    raise InputError(str(data_dir), f"is part {part.get('index', '?')} of "
                     f"{part.get('of', '?')} of a dataset; {MERGE_HINT}")
  return manifest


def _read_part(data_dir: str | os.PathLike) -> tuple[pathlib.Path, dict[str, Any]]:
  path, manifest = _load_manifest(data_dir)
  part, settings = manifest.get("part"), manifest.get("tokenizer")
  if not (isinstance(part, dict) and isinstance(part.get("index"), int) and
          isinstance(part.get("of"), int) and 0 <= part["index"] < part["of"] and
          isinstance(settings, dict)):
    raise InputError(str(path), "not a part of a dataset; expected a directory written by "
                     "`jax-interact data generate --shard I/N`")
  return pathlib.Path(data_dir), manifest


def open_split(data_dir: str | os.PathLike, split: str) -> EpisodeSource:
  """The episodes of `split` ("train" or "validation") in the order they were written."""
  if split not in array_records.SPLITS:
    raise InputError("split", f"got {split!r}, expected one of {array_records.SPLITS}")
  manifest = read_manifest(data_dir)
  directory = pathlib.Path(data_dir) / manifest["tfds_dir"]
  try:
    records = array_records.open_builder(directory).as_data_source(split)
  except Exception as e:  # missing or corrupt TFDS metadata is a bad input directory
    raise InputError(str(directory), f"cannot be read as a TFDS dataset ({e})") from None
  listed = len(manifest["splits"][split])
  if len(records) != listed:
    raise InputError(str(pathlib.Path(data_dir) / MANIFEST), f"lists {listed} episodes in "
                     f"split {split!r}, but {directory} holds {len(records)}")
  return EpisodeSource(records, f"{data_dir}:{split}")


def split_tasks(data_dir: str | os.PathLike, split: str) -> list[str]:
  """The task of each episode of `split`, in the order `open_split` reads them."""
  manifest = read_manifest(data_dir)
  task_of = {entry["index"]: entry["task"] for entry in manifest["episodes"]}
  return [task_of[index] for index in manifest["splits"][split]]


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
