"""The recipe's verdict (benchmarks/recipe.py): each target read from report.json and judged."""

import importlib.util
import pathlib

spec = importlib.util.spec_from_file_location(
    "recipe", pathlib.Path(__file__).parent.parent / "benchmarks" / "recipe.py")
recipe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(recipe)


def report(**families):
  silent = {family: {metric: 0.0 for metric in metrics} for family, metrics in families.items()}
  return {**families, "baselines": {"silent": silent, "turn_based": families},
          "meta": {"config": "recipe_cpu", "episodes": 5, "checkpoint_step": 10}}


def test_targets_judge_each_bar_in_its_direction():
  rows = recipe.targets(report(
      rep_count={"obo_accuracy": 0.8},  # exactly on the bar: met
      turn_taking={"latency_p50_s": 0.41, "takeover": 0.95},  # latency is lower-is-better
      interruption={"stop": 0.89},
      time_speak={"beat_on_time": None},  # no samples: not met
      delegate={"score": 1.0}))
  met = {(r["family"], r["metric"]): r["met"] for r in rows}
  assert met == {("rep_count", "obo_accuracy"): True, ("turn_taking", "latency_p50_s"): False,
                 ("turn_taking", "takeover"): True, ("interruption", "stop"): False,
                 ("time_speak", "beat_on_time"): False, ("delegate", "score"): True}
  takeover = next(r for r in rows if r["metric"] == "takeover")
  assert (takeover["model"], takeover["silent"], takeover["turn_based"]) == (0.95, 0.0, 0.95)


def test_a_family_missing_from_the_report_is_not_met():
  result = recipe.summarize(report(turn_taking={"latency_p50_s": 0.3, "takeover": 1.0}),
                            {"train": 12.4})
  met = {r["family"]: r["met"] for r in result["targets"]}
  assert met["turn_taking"] and not met["rep_count"] and not met["delegate"]
  assert result["headline"]["train_s"] == 12
  assert "not met" in result["headline"]["rep_count.obo_accuracy"]
