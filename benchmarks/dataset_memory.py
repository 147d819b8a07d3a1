"""Peak memory of writing a dataset as its episode count grows (`dataset.write_dataset`).

    python benchmarks/dataset_memory.py --counts 200 2000 --out out/dataset_memory.json

Generating thousands of synthetic episodes takes hours on a small machine, so the episodes come
from a cheap source: one episode of each task family is generated once, and the stream repeats
them with new indices. Everything else is what `data generate` does: the streamed shards, the
tokenizer and the statistics pass that featurizes every episode. Each count runs in a fresh
process whose peak resident memory (ru_maxrss) is reported with the wall time and the size of
the dataset on disk.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

from jax_interact import atomic

ROOT = pathlib.Path(__file__).resolve().parent.parent


def write(count: int, out: pathlib.Path) -> dict:
  """Writes `count` repeated episodes to `out` in this process; returns its measurements."""
  from data_pipelines import dataset, generate, synthetic

  originals = [synthetic.generate_episode(task, i, 0) for i, task in enumerate(synthetic.TASKS)]
  episodes = (dataclasses.replace(originals[i % len(originals)], index=i) for i in range(count))
  start = time.perf_counter()
  dataset.write_dataset(out, episodes, tokenizer_sentences=synthetic.vocabulary(),
                        vocab_size=generate.TOKENIZER_VOCAB)
  return {"episodes": count, "wall_s": round(time.perf_counter() - start, 1),
          "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
          "dataset_mb": round(sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
                              / 2**20, 1)}


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--counts", type=int, nargs="+", default=[200, 2000])
  parser.add_argument("--out", required=True, help="JSON to write")
  parser.add_argument("--child", type=int, help=argparse.SUPPRESS)  # one count, this process
  args = parser.parse_args(argv)
  if args.child:
    with tempfile.TemporaryDirectory() as tmp:
      print(json.dumps(write(args.child, pathlib.Path(tmp) / "ds")))
    return 0

  runs = []
  for count in args.counts:
    child = subprocess.run([sys.executable, __file__, "--child", str(count), "--out", "-"],
                           cwd=ROOT, capture_output=True, text=True, check=True)
    runs.append(json.loads(child.stdout.splitlines()[-1]))
    print(runs[-1], flush=True)
  first, last = runs[0], runs[-1]
  headline = {f"peak_rss_mb_{r['episodes']}": r["peak_rss_mb"] for r in runs}
  headline.update({f"dataset_mb_{r['episodes']}": r["dataset_mb"] for r in runs})
  headline["rss_ratio"] = round(last["peak_rss_mb"] / first["peak_rss_mb"], 3)
  result = {"benchmark": "dataset_memory", "config": "defaults().stream", "runs": runs,
            "headline": headline}
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  atomic.write_json(out, result)
  return 0


if __name__ == "__main__":
  sys.exit(main())
