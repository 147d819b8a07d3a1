"""Benchmarks behind `jax-interact bench {data,train,decode}`, each writing one JSON file.

Every benchmark JSON carries "benchmark" (its name), "config" and a flat "headline" dict of the
numbers worth tracking; benchmarks/record.py appends those to docs/BENCHMARKS.md.
"""


def print_headline(result: dict) -> None:
  width = max(map(len, result["headline"]), default=0)
  for key, value in result["headline"].items():
    print(f"{key:>{width}}: {value}")
