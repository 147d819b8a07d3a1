"""`jax-interact demo`: the main job, end to end on whatever machine it runs on.

Generates a small synthetic dataset of the task families configs/demo.py learns in minutes
(cached: reused when its manifest is there), draws one episode, trains configs/demo.py on it,
evaluates it against the silent and turn-based baselines on episodes of another seed (cached
too, and never trained on: 45 a family, where the training set's validation split holds 10, too
few for a verdict), streams one held-out episode, and prints a table of the artifacts written
and a line on what the model learned. Each stage is the same command a user would run by hand,
so the demo doubles as a tour of the CLI.
"""

from __future__ import annotations

import json
import math
import pathlib
import time
from typing import Sequence

from data_pipelines import dataset, generate
from jax_interact import cli, config
from jax_interact.errors import InputError
from jax_interact.evaluation import report as report_lib

CONFIG = config.resolve("configs/demo.py")
# The families whose timing a model learns in the demo's few minutes (docs/BENCHMARKS.md).
TASKS = ("turn_taking", "pause_handling", "interruption")
TRAIN_SEED, EVAL_SEED = 0, 1
# The stages after training on 2 CPU cores (generate and score the held-out episodes, stream
# one) took about 60 s; training gets what --minutes leaves after this much for them.
AFTER_TRAINING_S = 90


def stage(title: str, argv: list[str]) -> float:
  print(f"\n== {title}\n$ jax-interact {' '.join(argv)}", flush=True)
  start = time.perf_counter()
  code = cli.main(argv)
  if code:
    raise SystemExit(code)
  return time.perf_counter() - start


def generate_once(data: pathlib.Path, timings: dict[str, float], *, episodes: int,
                  tasks: Sequence[str], seed: int, vocab_size: int = generate.TOKENIZER_VOCAB,
                  timing: str = "generate") -> None:
  """`data generate` into `data` unless it holds that very dataset already (a cache: the origin
  its manifest records is the one asked for; another is an InputError, never reused); a run that
  generates adds its seconds to `timings[timing]`."""
  wanted = generate.origin(episodes, tasks, seed, vocab_size)
  if (data / dataset.MANIFEST).is_file():
    held = dataset.read_manifest(data).get("origin")
    if held != wanted:
      raise InputError(str(data), f"holds {generate.describe(held)}; this run needs "
                       f"{generate.describe(wanted)}: remove it, or choose another --out")
    print(f"== using cached dataset {data}")
    return
  timings[timing] = stage(f"generate the synthetic dataset {data}", [
      "data", "generate", "--out", str(data), "--episodes", str(episodes), "--tasks",
      ",".join(tasks), "--seed", str(seed), "--vocab-size", str(vocab_size)])


def generate_heldout(eval_data: pathlib.Path, timings: dict[str, float], seed: int,
                     tasks: Sequence[str], episodes: int) -> list[str]:
  """Generates (once) a dataset of `seed` whose train split holds at least `episodes` episodes of
  `tasks`, and returns the `eval` arguments that score `episodes` of them. A dataset made only to
  be scored is scored on its train split: all but every VALIDATION_EVERY-th episode of a family."""
  every = dataset.VALIDATION_EVERY
  count = math.ceil(episodes * every / (every - 1)) + len(tasks)
  generate_once(eval_data, timings, episodes=count, tasks=tasks, seed=seed,
                timing="generate_eval")
  return ["--data", str(eval_data), "--split", "train", "--max-episodes", str(episodes)]


def train_time_limit(minutes: int, elapsed_s: float) -> float:
  """train.time_limit_s that leaves AFTER_TRAINING_S of a `minutes` budget, `elapsed_s` of it
  spent (0: no budget); at least a minute, so a model is always trained."""
  if not minutes:
    return 0.0
  return max(60 * minutes - elapsed_s - AFTER_TRAINING_S, 60.0)


def main(args) -> int:
  start = time.perf_counter()
  out = pathlib.Path(args.out)
  data, eval_data, workdir = out / "data", out / "eval_data", out / "train"
  timings = {}
  generate_once(data, timings, episodes=args.episodes, tasks=TASKS, seed=TRAIN_SEED)
  timings["inspect"] = stage("draw episode 0", [
      "data", "inspect", str(data), "--index", "0", "--config", str(CONFIG),
      "--out", str(out / "episode0.png"), "--json", str(out / "episode0.json")])
  steps = args.steps or config.load(str(CONFIG)).train.steps
  time_limit_s = train_time_limit(args.minutes, time.perf_counter() - start)
  timings["train"] = stage(f"train {CONFIG.stem}", [
      "train", "--config", str(CONFIG), "--workdir", str(workdir),
      f"--config.data.dir={data}", f"--config.train.steps={steps}",
      f"--config.train.time_limit_s={time_limit_s:.0f}"])
  heldout = generate_heldout(eval_data, timings, EVAL_SEED, TASKS, args.eval_episodes)
  timings["eval"] = stage(f"evaluate on episodes of seed {EVAL_SEED}, never trained on", [
      "eval", "--workdir", str(workdir), *heldout, "--out", str(out / "eval"), "--batch", "16"])
  manifest = json.loads((data / "manifest.json").read_text())
  episode = manifest["splits"]["validation"][0]
  timings["stream"] = stage(f"stream held-out episode {episode}", [
      "stream", "--workdir", str(workdir), "--episode", f"{data}:{episode}",
      "--out", str(out / "stream")])

  metrics = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  losses = [m["loss"] for m in metrics if "loss" in m]
  report = json.loads((out / "eval" / "report.json").read_text())
  latency = json.loads((out / "stream" / "latency.json").read_text())
  rows = [
      ("dataset", data, f"{len(manifest['episodes'])} episodes of seed {TRAIN_SEED}"),
      ("episode plot", out / "episode0.png", "audio, video, words, micro-turn grid"),
      ("episode slots", out / "episode0.json", "decoded slots per micro-turn"),
      ("checkpoints", workdir / "checkpoints",
       _trained(report["meta"]["checkpoint_step"], steps, args.minutes)),
      ("metrics", workdir / "metrics.jsonl", f"loss {losses[0]:.3f} -> {losses[-1]:.3f}"),
      ("tensorboard", workdir / "tensorboard", "tensorboard --logdir there"),
      ("eval report", out / "eval" / "report.md",
       f"mean task score {_fmt(report['overall']['score'])} (silent "
       f"{_fmt(report['baselines']['silent']['overall']['score'])}, turn-based "
       f"{_fmt(report['baselines']['turn_based']['overall']['score'])})"),
      ("stream", out / "stream", f"p50 step {latency['p50_step_ms']:.1f} ms, "
                                 f"rtf {latency['rtf']:.3f}"),
  ]
  width = max(len(r[0]) for r in rows)
  print("\n== summary")
  for name, path, what in rows:
    print(f"{name:<{width}}  {str(path):<44}  {what}")
  print("time: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))
  print(learned_line(report))
  return 0


def learned_line(report: dict) -> str:
  """One plain line: the families where the model beats both baselines, and the others."""
  won, lost = report_lib.learned(report)
  return (f"the model learned {', '.join(won) or 'no family yet'} (beats the silent and the "
          f"turn-based baseline there); not yet: {', '.join(lost) or 'none'}")


def _trained(step: int, steps: int, minutes: int) -> str:
  if step >= steps:
    return f"step {step}"
  return (f"step {step} of {steps}: training stopped early to keep to --minutes {minutes} "
          "(a slower machine than 2 free cores?)")


def _fmt(value) -> str:
  return "n/a" if value is None else f"{value:.3f}"
