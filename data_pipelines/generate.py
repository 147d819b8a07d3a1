"""`jax-interact data generate`: the synthetic interaction suite written as a dataset.

Episodes go round-robin over the chosen task families, are generated in a pool of spawned
processes (results kept in order) and written through `dataset.write_dataset`, which also
trains the tokenizer on the episodes plus everything the generator can say. `--shard I/N`
generates only the I-th of N contiguous blocks of episode indices, a part that
`jax-interact data merge` joins with the others (the same episodes as one run would write).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import time
from typing import Iterator, Sequence

import ml_collections
import tqdm

from data_pipelines import dataset, synthetic, worker_lifetime
from jax_interact import cli
from jax_interact.errors import InputError
from jax_interact.streams.episode import Episode

TOKENIZER_VOCAB = 512  # fits every model config (tiny has model.vocab_size = 512)


def parse_tasks(text: str) -> tuple[str, ...]:
  """'a,b' -> ('a', 'b'); empty -> all tasks; unknown or repeated names raise
  InputError('--tasks', ...)."""
  try:
    names = cli.known_names(text, tuple(synthetic.TASKS), required=False)
  except ValueError as error:
    raise InputError("--tasks", str(error)) from None
  return names or tuple(synthetic.TASKS)


def _generate(job: tuple[str, int, int]) -> Episode:
  task, index, seed = job
  return synthetic.generate_episode(task, index, seed)


def generate_episodes(tasks: Sequence[str], indices: range, seed: int, workers: int,
                      progress: bool = True) -> Iterator[Episode]:
  """Episode i has task tasks[i % len(tasks)]; yielded in index order."""
  jobs = [(tasks[i % len(tasks)], i, seed) for i in indices]
  bar = tqdm.tqdm(total=len(jobs), unit="episode", desc="generating", disable=not progress)
  with bar:
    for episode in worker_lifetime.ordered_map(_generate, jobs, workers):
      yield episode
      bar.update()


def part_indices(n: int, part: tuple[int, int] | None) -> range:
  """The episode indices of part (I, N) of n episodes: the I-th of N contiguous blocks."""
  if part is None:
    return range(n)
  index, parts = part
  return range(index * n // parts, (index + 1) * n // parts)


def origin(n: int, tasks: Sequence[str], seed: int, vocab_size: int) -> dict:
  """What a generated dataset's manifest records it is (`origin`): the same origin, the same
  dataset."""
  return {"suite_version": synthetic.SUITE_VERSION, "episodes": n, "tasks": list(tasks),
          "seed": seed, "vocab_size": vocab_size}


def describe(recorded: dict | None) -> str:
  """A manifest's `origin` in words (None: a dataset written before origins were recorded)."""
  if recorded is None:
    return "no recorded origin (written before datasets recorded one)"
  return (f"{recorded['episodes']} episodes of {','.join(recorded['tasks'])}, seed "
          f"{recorded['seed']}, {recorded['vocab_size']} tokenizer pieces, suite version "
          f"{recorded['suite_version']}")


def generate_dataset(out: str | os.PathLike, n: int, *, tasks: Sequence[str], seed: int = 0,
                     workers: int = 0, vocab_size: int = TOKENIZER_VOCAB, progress: bool = True,
                     stream_config: ml_collections.ConfigDict | None = None,
                     part: tuple[int, int] | None = None) -> dict:
  """Generates and writes `n` episodes to `out` (workers=0: all cores), or with `part` (I, N)
  only the episodes of part I of N, for `dataset.merge_parts`; returns the manifest."""
  return dataset.write_dataset(
      out, generate_episodes(tasks, part_indices(n, part), seed, workers, progress),
      tokenizer_sentences=synthetic.vocabulary(), vocab_size=vocab_size,
      stream_config=stream_config, part=part, workers=workers,
      origin=origin(n, tasks, seed, vocab_size))


def main(args: argparse.Namespace) -> int:
  tasks = parse_tasks(args.tasks)
  out = pathlib.Path(args.out)
  dataset.check_replaceable(out)
  if args.shard and not part_indices(args.episodes, args.shard):
    raise InputError("--shard", f"part {args.shard[0]} of {args.shard[1]} of {args.episodes} "
                     "episodes holds none; expected fewer parts than episodes")
  start = time.perf_counter()
  manifest = generate_dataset(out, args.episodes, tasks=tasks, seed=args.seed,
                              workers=args.workers, vocab_size=args.vocab_size or TOKENIZER_VOCAB,
                              part=args.shard)
  what = f"part {args.shard[0]} of {args.shard[1]}: " if args.shard else ""
  hint = f"; {dataset.MERGE_HINT}" if args.shard else ""
  print(f"wrote {what}{dataset.summary(manifest)} in {time.perf_counter() - start:.1f} s to "
        f"{out}{hint}")
  return 0
