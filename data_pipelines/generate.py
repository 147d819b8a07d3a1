"""`jax-interact data generate`: the synthetic interaction suite written as a dataset.

Episodes go round-robin over the chosen task families, are generated in a pool of spawned
processes (results kept in order) and written through `dataset.write_dataset`, which also
trains the tokenizer on the episodes plus everything the generator can say.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import pathlib
import time
from typing import Iterator, Sequence

import ml_collections
import tqdm

from data_pipelines import dataset
from data_pipelines import synthetic
from data_pipelines import worker_lifetime
from data_pipelines.episode import Episode
from jax_interact.errors import InputError

TOKENIZER_VOCAB = 512  # fits every model config (tiny has model.vocab_size = 512)


def parse_tasks(text: str) -> tuple[str, ...]:
  """'a,b' -> ('a', 'b'); empty -> all tasks; unknown names raise InputError('--tasks', ...)."""
  names = tuple(name.strip() for name in text.split(",") if name.strip())
  for name in names:
    if name not in synthetic.TASKS:
      raise InputError("--tasks", f"unknown task {name!r}; expected some of "
                       f"{', '.join(synthetic.TASKS)}")
  return names or tuple(synthetic.TASKS)


def _generate(job: tuple[str, int, int]) -> Episode:
  task, index, seed = job
  return synthetic.generate_episode(task, index, seed)


def generate_episodes(tasks: Sequence[str], n: int, seed: int, workers: int,
                      progress: bool = True) -> Iterator[Episode]:
  """Episode i has task tasks[i % len(tasks)]; yielded in index order."""
  jobs = [(tasks[i % len(tasks)], i, seed) for i in range(n)]
  bar = tqdm.tqdm(total=n, unit="episode", desc="generating", disable=not progress)
  with bar:
    if workers <= 1:
      for job in jobs:
        yield _generate(job)
        bar.update()
      return
    with multiprocessing.get_context("spawn").Pool(
        workers, worker_lifetime.follow_parent, (os.getpid(),)) as pool:
      for episode in pool.imap(_generate, jobs):
        yield episode
        bar.update()


def generate_dataset(out: str | os.PathLike, n: int, *, tasks: Sequence[str], seed: int = 0,
                     workers: int = 0, vocab_size: int = TOKENIZER_VOCAB, progress: bool = True,
                     stream_config: ml_collections.ConfigDict | None = None) -> dict:
  """Generates and writes `n` episodes to `out` (workers=0: all cores); returns the manifest."""
  return dataset.write_dataset(
      out, generate_episodes(tasks, n, seed, workers or os.cpu_count() or 1, progress),
      tokenizer_sentences=synthetic.vocabulary(), vocab_size=vocab_size,
      stream_config=stream_config)


def main(args: argparse.Namespace) -> int:
  tasks = parse_tasks(args.tasks)
  out = pathlib.Path(args.out)
  dataset.check_replaceable(out)
  start = time.perf_counter()
  manifest = generate_dataset(out, args.episodes, tasks=tasks, seed=args.seed,
                              workers=args.workers)
  stats = manifest["stats"]
  print(f"wrote {stats['episodes']} episodes ({stats['hours']:.3f} h of audio, "
        f"{stats['split_sizes']['train']} train / {stats['split_sizes']['validation']} "
        f"validation) in {time.perf_counter() - start:.1f} s to {out}")
  return 0
