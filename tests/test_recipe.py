"""The recipe's verdict (benchmarks/recipe.py): each target read from report.json and judged."""

import importlib.util
import json
import pathlib

import pytest

from jax_interact import config as config_lib
from jax_interact.demo import generate_heldout
from jax_interact.errors import InputError
from jax_interact.evaluation import report as report_lib

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
      pause_handling={"false_takeover": 0.1},
      interruption={"stop": 0.89},
      time_speak={"beat_on_time": None},  # no samples: not met
      delegate={"score": 1.0},
      overall={"user_wer": 0.31}))  # lower is better, over the bar
  met = {(r["family"], r["metric"]): r["met"] for r in rows}
  assert met == {("rep_count", "obo_accuracy"): True, ("turn_taking", "latency_p50_s"): False,
                 ("turn_taking", "takeover"): True, ("pause_handling", "false_takeover"): True,
                 ("interruption", "stop"): False,
                 ("time_speak", "beat_on_time"): False, ("delegate", "score"): True,
                 ("overall", "user_wer"): False}
  takeover = next(r for r in rows if r["metric"] == "takeover")
  assert (takeover["model"], takeover["silent"], takeover["turn_based"]) == (0.95, 0.0, 0.95)


def test_a_family_missing_from_the_report_is_not_met():
  result = recipe.summarize(report(turn_taking={"latency_p50_s": 0.3, "takeover": 1.0}),
                            {"train": 12.4})
  met = {r["family"]: r["met"] for r in result["targets"]}
  assert met["turn_taking"] and not met["rep_count"] and not met["delegate"]
  assert result["headline"]["train_s"] == 12
  assert "not met" in result["headline"]["rep_count.obo_accuracy"]


def test_beating_a_baseline_takes_a_higher_score_or_a_tie_at_lower_latency():
  assert report_lib.beats({"score": 0.6}, {"score": 0.5}, "turn_taking")
  assert not report_lib.beats({"score": 0.4, "latency_p50_s": 0.1}, {"score": 0.5}, "turn_taking")
  tie = {"score": 1.0, "latency_p50_s": 0.7}
  assert report_lib.beats({"score": 1.0, "latency_p50_s": 0.3}, tie, "turn_taking")
  assert not report_lib.beats({"score": 1.0, "latency_p50_s": 0.7}, tie, "turn_taking")
  assert not report_lib.beats({"score": 1.0}, tie, "turn_taking")  # no latency to compare
  # Scoring zero like the silent baseline is no win, however fast the model's words came.
  assert not report_lib.beats({"score": 0.0, "latency_p50_s": 0.2}, {"score": 0.0}, "delegate")
  # Each family is compared on its own latency (interruption: how fast speech stops).
  assert report_lib.beats({"score": 0.5, "stop_latency_p50_s": 0.2},
                      {"score": 0.5, "stop_latency_p50_s": 0.4}, "interruption")


def test_every_trained_family_must_keep_quiet_and_beat_both_baselines():
  good = {"score": 0.9, "quiet_violation_rate": 0.05, "latency_p50_s": 0.3}
  noisy = {"score": 0.9, "quiet_violation_rate": 0.3, "latency_p50_s": 0.3}
  result = recipe.summarize(report(turn_taking=good, pause_handling=noisy), {},
                            trained=("turn_taking", "pause_handling"))
  rows = {r["family"]: r for r in result["families"]}
  assert rows["turn_taking"]["quiet_met"] and not rows["pause_handling"]["quiet_met"]
  # report() makes the turn-based baseline identical to the model: a tie at equal latency.
  assert rows["turn_taking"]["beats_silent"] and not rows["turn_taking"]["beats_turn_based"]
  assert not result["all_met"]


def test_stages_pick_training_and_scoring(tmp_path, monkeypatch):
  """`--stages eval` scores the checkpoint the workdir holds without training on (a run stopped
  by its time limit would otherwise resume); `--stages train` stops before scoring. Scoring
  covers the own validation split and episodes of each held-out seed, each judged in its own
  recipe*.json; the seed trained on cannot be a held-out one."""
  ran, heldout = [], []
  monkeypatch.setattr(recipe, "generate_once", lambda *args, **kwargs: None)
  monkeypatch.setattr(recipe, "generate_heldout",
                      lambda data, times, seed, tasks, episodes: heldout.append(seed) or
                      ["--data", str(data)])
  monkeypatch.setattr(recipe, "stage", lambda title, argv: ran.append(argv[:5]) or 1.0)
  monkeypatch.setattr(recipe, "summarize", lambda report, *args: {
      "targets": [], "families": [], "all_met": False, "eval_data": report["data"],
      "eval_episodes": 1})
  for name, data in (("eval", "own"), ("eval_seed19", "seed 19"), ("eval_seed20", "seed 20"),
                     ("eval_seed7", "seed 7")):
    (tmp_path / name).mkdir()
    (tmp_path / name / "report.json").write_text(json.dumps({"data": data}))
  evaluate = ["eval", "--workdir", str(tmp_path / "train"), "--data"]
  train = ["train", "--config", str(config_lib.resolve("configs/recipe_cpu.py")), "--workdir",
           str(tmp_path / "train")]
  scored = [evaluate + [str(tmp_path / data)]
            for data in ("data", "heldout_seed19", "heldout_seed20")]
  for stages, expected in (("eval", scored), ("train", [train]), ("train,eval", [train, *scored])):
    ran.clear()
    assert recipe.main(["--out", str(tmp_path), "--stages", stages]) == 0
    assert ran == expected
  assert json.loads((tmp_path / "recipe_seed19.json").read_text())["eval_data"] == "seed 19"
  assert json.loads((tmp_path / "recipe_seed20.json").read_text())["eval_data"] == "seed 20"
  assert json.loads((tmp_path / "recipe.json").read_text())["eval_data"] == "own"
  ran.clear()
  recipe.main(["--out", str(tmp_path), "--stages", "eval", "--heldout-seeds", "none"])
  assert ran == [evaluate + [str(tmp_path / "data")]]
  heldout.clear()
  recipe.main(["--out", str(tmp_path), "--stages", "eval", "--heldout-seeds", "7"])
  assert heldout == [7]
  for argv in (["--stages", "generate"], ["--heldout-seeds", "12,1"]):
    with pytest.raises(SystemExit):
      recipe.main(["--out", str(tmp_path), *argv])


def test_a_held_out_seed_dataset_holds_the_episodes_asked_for_in_its_scored_split(tmp_path):
  """The demo's and the recipe's never-trained-on episodes: generated once, scored on the train
  split, which must hold `episodes` of every family's share."""
  times = {}
  data = tmp_path / "heldout"
  args = generate_heldout(data, times, 5, ("turn_taking", "pause_handling"), 10)
  assert args == ["--data", str(data), "--split", "train", "--max-episodes", "10"]
  splits = json.loads((data / "manifest.json").read_text())["stats"]["split_sizes"]
  assert splits["train"] >= 10 and "generate_eval" in times
  again = {}
  generate_heldout(data, again, 5, ("turn_taking", "pause_handling"), 10)
  assert again == {}  # cached


def test_a_cached_dataset_is_reused_only_for_the_very_dataset_asked_for(tmp_path):
  """Another seed, other tasks or an older generator (no origin in its manifest) is refused by
  name, never scored or trained on in place of the one asked for."""
  data = tmp_path / "heldout"
  generate_heldout(data, {}, 5, ("turn_taking",), 6)
  with pytest.raises(InputError, match=f"{data}: holds .*seed 5.*needs .*seed 6"):
    generate_heldout(data, {}, 6, ("turn_taking",), 6)
  with pytest.raises(InputError, match="holds .*of turn_taking,.*needs .*of turn_taking,pause"):
    generate_heldout(data, {}, 5, ("turn_taking", "pause_handling"), 6)
  manifest = json.loads((data / "manifest.json").read_text())
  del manifest["origin"]
  (data / "manifest.json").write_text(json.dumps(manifest))
  with pytest.raises(InputError, match="holds no recorded origin"):
    generate_heldout(data, {}, 5, ("turn_taking",), 6)
