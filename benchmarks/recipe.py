"""The recipe that learns the graded task families: generate, train, evaluate, check targets.

    python benchmarks/recipe.py [--config configs/recipe_cpu.py] [--out out/recipe]
    python benchmarks/record.py out/recipe/recipe.json --command "python benchmarks/recipe.py"

Runs the same commands a user would (`data generate` once, then cached; `train`; `eval`) and
writes OUT/recipe.json: for every target of TARGETS, the model's value, both baselines' values,
the target and whether the model met it, plus the time of each stage. A rerun in the same OUT
resumes training from its last checkpoint, so the train time then covers only the remaining steps.
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import pathlib
import sys

from jax_interact import cli
from jax_interact import config as config_lib
from jax_interact.demo import generate_once, stage

GRADED_TASKS = ("turn_taking", "interruption", "rep_count", "time_speak", "delegate")
# (family, metric in report.json, comparison, threshold): issue 6's bar for "learns the tasks".
TARGETS = (
    ("rep_count", "obo_accuracy", ">=", 0.8),
    ("turn_taking", "latency_p50_s", "<=", 0.4),
    ("turn_taking", "takeover", ">=", 0.9),
    ("interruption", "stop", ">=", 0.9),  # silent by 0.6 s after the barge-in
    ("time_speak", "beat_on_time", ">=", 0.7),
    ("delegate", "score", ">=", 0.8),  # delegated, result correct and on time, never over user
)
_COMPARE = {">=": operator.ge, "<=": operator.le}


def targets(report: dict) -> list[dict]:
  """Each target's row: the model's value, the baselines', the bar and whether it was met."""
  rows = []
  for family, metric, comparison, threshold in TARGETS:
    value = report.get(family, {}).get(metric)
    baseline = {name: report["baselines"][name].get(family, {}).get(metric)
                for name in report["baselines"]}
    rows.append({"family": family, "metric": metric, "target": f"{comparison} {threshold}",
                 "model": value, **baseline,
                 "met": value is not None and _COMPARE[comparison](value, threshold)})
  return rows


def _fmt(value: float | None) -> str:
  return "–" if value is None else f"{value:.3f}"


def summarize(report: dict, times: dict[str, float]) -> dict:
  """recipe.json: the target rows, and a headline of one readable entry per target."""
  rows = targets(report)
  headline = {f"{r['family']}.{r['metric']}":
              f"{_fmt(r['model'])} (silent {_fmt(r['silent'])}, turn-based "
              f"{_fmt(r['turn_based'])}; target {r['target']}: {'met' if r['met'] else 'not met'})"
              for r in rows}
  headline |= {f"{k}_s": round(v) for k, v in times.items()}
  return {"benchmark": "recipe", "config": report["meta"]["config"], "targets": rows,
          "headline": headline, "eval_episodes": report["meta"]["episodes"],
          "checkpoint_step": report["meta"].get("checkpoint_step"), "times_s": times}


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="configs/recipe_cpu.py")
  parser.add_argument("--out", default="out/recipe")
  parser.add_argument("--episodes", type=cli.count, default=1200)
  parser.add_argument("--tasks", default=",".join(GRADED_TASKS))
  parser.add_argument("--eval-episodes", type=cli.count, default=120)
  parser.add_argument("--seed", type=cli.seed, default=1)
  args = parser.parse_args(argv)

  out = pathlib.Path(args.out)
  data, workdir, eval_dir = out / "data", out / "train", out / "eval"
  config_path = str(config_lib.resolve(args.config))
  times = {}
  generate_once(data, times, "--episodes", str(args.episodes), "--tasks", args.tasks,
                "--seed", str(args.seed))
  times["train"] = stage("train", [
      "train", "--config", config_path, "--workdir", str(workdir), f"--config.data.dir={data}"])
  times["eval"] = stage("evaluate on held-out episodes", [
      "eval", "--workdir", str(workdir), "--data", str(data), "--out", str(eval_dir),
      "--max-episodes", str(args.eval_episodes)])

  result = summarize(json.loads((eval_dir / "report.json").read_text()), times)
  tmp = out / ".recipe.json.tmp"
  tmp.write_text(json.dumps(result, indent=1))
  os.replace(tmp, out / "recipe.json")
  rows = result["targets"]

  print(f"\n{'target':<28} {'bar':>7} {'model':>7} {'silent':>7} {'turn_based':>10}  met")
  for r in rows:
    print(f"{r['family'] + '.' + r['metric']:<28} {r['target']:>7} {_fmt(r['model']):>7} "
          f"{_fmt(r['silent']):>7} {_fmt(r['turn_based']):>10}  {'yes' if r['met'] else 'no'}")
  print("time: " + ", ".join(f"{k} {v:.0f}s" for k, v in times.items()))
  print(f"wrote {out / 'recipe.json'}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
