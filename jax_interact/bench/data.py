"""`jax-interact bench data`: episode generation speed and input-pipeline throughput.

Generates one episode per task family into a temporary directory (seconds of episode audio per
second of wall time, pool start-up, tokenizer training and statistics included), featurizes it
once into the feature cache (data_pipelines/features.py, timed), then reads training batches of
the config's shape with 0, 1 and 2 worker processes and reports windows/s, micro-turns/s and,
in-process, the CPU seconds one window costs (the share of the cores the train step loses to
the input pipeline) after a warm-up. The pipeline is compared with what a train step consumes; the
train step time is an estimate (model FLOPs at an assumed sustained rate, `"estimated": true`);
`bench train` measures the real one.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import tempfile
import time
from typing import Any

import ml_collections

from data_pipelines import dataset, features, generate, grain_pipeline, synthetic
from jax_interact import atomic, bench, trainer
from jax_interact.models import counting

WORKER_COUNTS = (0, 1, 2)
WARMUP_BATCHES = 2
TIMED_BATCHES = 10
# Sustained training throughput assumed for the estimate: `jax-interact train` on configs/tiny.py
# took 3.2-3.5 s per step of 16 GFLOP on a shared 2-core CPU.
ASSUMED_TRAIN_FLOP_PER_S = 5e9


def measure_generation(out: pathlib.Path, stream: ml_collections.ConfigDict) -> dict[str, Any]:
  start = time.perf_counter()
  manifest = generate.generate_dataset(out, len(synthetic.TASKS), tasks=synthetic.TASKS,
                                       seed=0, progress=False, stream_config=stream)
  wall_s = time.perf_counter() - start
  audio_s = manifest["stats"]["hours"] * 3600
  return {"episodes": manifest["stats"]["episodes"], "audio_s": round(audio_s, 2),
          "wall_s": round(wall_s, 2), "workers": os.cpu_count(),
          "audio_s_per_wall_s": round(audio_s / wall_s, 3)}


def measure_pipeline(config: ml_collections.ConfigDict, data_dir: pathlib.Path,
                     num_workers: int) -> dict[str, Any]:
  config = ml_collections.ConfigDict(config.to_dict())
  config.data.num_workers = num_workers
  start = time.perf_counter()
  iterator = grain_pipeline.make_iterator(config, data_dir, "train", seed=0)
  try:
    for _ in range(WARMUP_BATCHES):
      next(iterator)
    warm_s = time.perf_counter() - start
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(TIMED_BATCHES):
      batch = next(iterator)
    elapsed, cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
  finally:
    iterator.close()
  windows = TIMED_BATCHES * len(batch["turn"])
  windows_per_s = windows / elapsed
  result = {"num_workers": num_workers, "warmup_s": round(warm_s, 2),
            "windows_per_s": round(windows_per_s, 2),
            "micro_turns_per_s": round(windows_per_s * config.data.window, 1)}
  if num_workers == 0:  # with workers the work happens in other processes
    result["cpu_s_per_window"] = round(cpu_s / windows, 5)
  return result


def measure_featurization(config: ml_collections.ConfigDict,
                          data_dir: pathlib.Path) -> dict[str, Any]:
  """Seconds to build the feature cache of the generated episodes, once, in this process."""
  start = time.perf_counter()
  features.ensure(data_dir, config.stream, "train", workers=1, progress=False)
  wall_s = time.perf_counter() - start
  episodes = len(dataset.open_split(data_dir, "train"))
  return {"episodes": episodes, "wall_s": round(wall_s, 2),
          "s_per_episode": round(wall_s / episodes, 4)}


def train_consumption(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """Windows/s one host's train steps consume, from an estimated step time."""
  tokens_per_step = trainer.tokens_per_step(config)
  step_s = counting.train_flops_per_token(config) * tokens_per_step / ASSUMED_TRAIN_FLOP_PER_S
  return {"estimated": True, "assumed_flop_per_s": ASSUMED_TRAIN_FLOP_PER_S,
          "tokens_per_step": tokens_per_step, "step_s": round(step_s, 4),
          "windows_per_s": round(config.data.batch_size / step_s, 2)}


def run(config: ml_collections.ConfigDict, config_path: str) -> dict[str, Any]:
  with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
    data_dir = pathlib.Path(tmp) / "data"
    generation = measure_generation(data_dir, config.stream)
    featurization = measure_featurization(config, data_dir)
    pipeline = [measure_pipeline(config, data_dir, n) for n in WORKER_COUNTS]
  consumption = train_consumption(config)
  best = max(p["windows_per_s"] for p in pipeline)
  return {
      "benchmark": "data",
      "config": config_path,
      "machine": f"{platform.machine()}, {os.cpu_count()} cores",
      "window": config.data.window,
      "batch_size": config.data.batch_size,
      "generation": generation,
      "featurization": featurization,
      "pipeline": pipeline,
      "train_step": consumption,
      "pipeline_to_train_ratio": round(best / consumption["windows_per_s"], 3),
      "headline": {
          "generation_audio_s_per_s": generation["audio_s_per_wall_s"],
          "featurize_s_per_episode": featurization["s_per_episode"],
          "cpu_s_per_window": pipeline[0]["cpu_s_per_window"],
          **{f"windows_per_s_{p['num_workers']}w": p["windows_per_s"] for p in pipeline},
          "pipeline_to_train_ratio(est)": round(best / consumption["windows_per_s"], 3),
      },
  }


def main(args: argparse.Namespace) -> int:
  config = bench.load_config(args)
  result = run(config, args.config)
  atomic.write_json(args.out, result)
  g = result["generation"]
  print(f"generation: {g['episodes']} episodes, {g['audio_s']} s of audio in {g['wall_s']} s "
        f"({g['audio_s_per_wall_s']} audio s/s, {g['workers']} processes)")
  f = result["featurization"]
  print(f"featurized once: {f['episodes']} episodes in {f['wall_s']} s; in-process pipeline: "
        f"{result['pipeline'][0]['cpu_s_per_window']} CPU s per window")
  print(f"{'workers':>8} {'windows/s':>10} {'turns/s':>9} {'warm-up s':>10}")
  for p in result["pipeline"]:
    print(f"{p['num_workers']:>8} {p['windows_per_s']:>10} {p['micro_turns_per_s']:>9} "
          f"{p['warmup_s']:>10}")
  t = result["train_step"]
  print(f"train step (estimated {t['step_s']} s) consumes {t['windows_per_s']} windows/s; "
        f"pipeline/train = {result['pipeline_to_train_ratio']}")
  print(f"wrote {args.out}")
  return 0
