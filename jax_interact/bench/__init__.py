"""Benchmarks behind `jax-interact bench {data,train,decode}`, each writing one JSON file.

Every benchmark JSON carries "benchmark" (its name), "config" and a flat "headline" dict of the
numbers worth tracking; benchmarks/record.py appends those to docs/BENCHMARKS.md.
"""

from jax_interact import config as config_lib


def load_config(args):
  """The config a benchmark measures (`--config` and its overrides), without the streaming
  evaluation during training, which needs a dataset and is no part of what is timed."""
  return config_lib.load(args.config, ["train.interact_every_steps=0", *args.overrides])


def print_headline(result: dict) -> None:
  width = max(map(len, result["headline"]), default=0)
  for key, value in result["headline"].items():
    print(f"{key:>{width}}: {value}")
