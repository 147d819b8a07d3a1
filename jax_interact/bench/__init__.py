"""Benchmarks behind `jax-interact bench {data,train,decode}`, each writing one JSON file.

Every benchmark JSON carries "benchmark" (its name), "config" and a flat "headline" dict of the
numbers worth tracking; benchmarks/record.py appends those to docs/BENCHMARKS.md.
"""

import json
import os
import pathlib


def write_result(result: dict, out: str | os.PathLike) -> None:
  """Writes a benchmark's JSON to `out` atomically (a reader never sees half of it)."""
  out = pathlib.Path(out)
  out.parent.mkdir(parents=True, exist_ok=True)
  tmp = out.with_name(f".{out.name}.tmp")
  tmp.write_text(json.dumps(result, indent=2) + "\n")
  tmp.replace(out)


def print_headline(result: dict) -> None:
  width = max(map(len, result["headline"]), default=0)
  for key, value in result["headline"].items():
    print(f"{key:>{width}}: {value}")
