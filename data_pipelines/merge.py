"""`jax-interact data merge`: one dataset from the parts that `data generate --shard I/N` wrote."""

from __future__ import annotations

import argparse
import time

from data_pipelines import dataset


def main(args: argparse.Namespace) -> int:
  start = time.perf_counter()
  manifest = dataset.merge_parts(args.out, args.parts)
  print(f"merged {len(args.parts)} parts into {dataset.summary(manifest)} in "
        f"{time.perf_counter() - start:.1f} s at {args.out}")
  return 0
