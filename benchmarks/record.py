"""Appends one benchmark result to docs/BENCHMARKS.md: date, machine, command, headline numbers.

    python benchmarks/record.py RESULT.json --command "jax-interact bench data ..." \
        [--machine "2-core CPU, 24 GiB"] [--note "..."] [--table docs/BENCHMARKS.md]

RESULT.json is what a `jax-interact bench` command wrote; its "headline" dict (or, without one,
its top-level numbers) becomes the last column.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import sys
from typing import Any

from jax_interact import atomic

ROOT = pathlib.Path(__file__).resolve().parent.parent
HEADER = """# Benchmarks

One line per run, appended by `benchmarks/record.py` (see benchmarks/README.md).

| date | benchmark | machine | command | headline |
|---|---|---|---|---|
"""


def this_machine() -> str:
  memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
  return f"{os.cpu_count()}-core CPU, {memory:.0f} GiB"


def headline(result: dict[str, Any]) -> dict[str, Any]:
  numbers = result.get("headline")
  if isinstance(numbers, dict):
    return numbers
  return {k: v for k, v in result.items()
          if isinstance(v, (int, float)) and not isinstance(v, bool)}


def row(result: dict[str, Any], command: str, machine: str, date: str, note: str = "") -> str:
  numbers = ", ".join(f"{k}={v}" for k, v in headline(result).items()) + (
      f" ({note})" if note else "")
  cells = [date, str(result.get("benchmark", "?")), machine, f"`{command}`", numbers]
  return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |\n"


def append(table: pathlib.Path, line: str) -> None:
  """Adds `line` after the last row of the file's first table (the record; sections of prose
  may follow it), rewriting the file through a temporary one (never half-written)."""
  lines = (table.read_text() if table.is_file() else HEADER).splitlines(keepends=True)
  end = next(i for i, row in enumerate(lines) if row.startswith("| date |"))
  while end < len(lines) and lines[end].startswith("|"):
    end += 1
  atomic.write_text(table, "".join(lines[:end]) + line + "".join(lines[end:]))


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("result", help="JSON written by a `jax-interact bench` command")
  parser.add_argument("--command", required=True, help="the command that produced it")
  parser.add_argument("--machine", default=this_machine())
  parser.add_argument("--note", default="", help="conditions worth knowing (e.g. machine load)")
  parser.add_argument("--table", default=str(ROOT / "docs" / "BENCHMARKS.md"))
  args = parser.parse_args(argv)
  try:
    result = json.loads(pathlib.Path(args.result).read_text())
  except (OSError, json.JSONDecodeError) as e:
    print(f"error: {args.result}: expected a benchmark JSON file ({e})", file=sys.stderr)
    return 2
  line = row(result, args.command, args.machine, datetime.date.today().isoformat(), args.note)
  append(pathlib.Path(args.table), line)
  print(line, end="")
  return 0


if __name__ == "__main__":
  sys.exit(main())
