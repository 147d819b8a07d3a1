"""`jax-interact eval` end to end with a random model on a three-episode dataset."""

import json

import numpy as np
import pytest
from flax import nnx

from data_pipelines import dataset, synthetic
from jax_interact import cli, models
from jax_interact import config as config_lib
from jax_interact import evaluate as command
from jax_interact.evaluation import diagnostics
from jax_interact.inference import trained as trained_lib

TASKS = ("turn_taking", "delegate", "interruption")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  out = tmp_path_factory.mktemp("eval") / "data"
  episodes = [synthetic.generate_episode(task, i, 0) for i, task in enumerate(TASKS)]
  dataset.write_dataset(out, episodes, tokenizer_sentences=synthetic.vocabulary(), vocab_size=512)
  return out


def test_eval_writes_a_report_with_every_metric_for_model_and_baselines(data_dir, tmp_path,
                                                                        monkeypatch):
  config = config_lib.load("configs/tiny.py", [f"data.dir={data_dir}"])
  run = trained_lib.Trained(config, models.build(config, nnx.Rngs(0)),
                            dataset.load_tokenizer(data_dir), step=0)
  monkeypatch.setattr(command.trained_lib, "load", lambda workdir, checkpoint, overrides: run)
  out = tmp_path / "report"
  # The train split holds two episodes: one engine row is refilled once.
  code = cli.main(["eval", "--workdir", str(tmp_path / "run"), "--data", str(data_dir),
                   "--out", str(out), "--split", "train", "--batch", "1"])
  assert code == 0
  assert sorted(p.name for p in out.iterdir()) == ["episodes.jsonl", "latency.png", "report.json",
                                                   "report.md", "scores.png", "timelines"]
  assert sorted(p.name for p in (out / "timelines").iterdir()) == ["delegate.png",
                                                                   "turn_taking.png"]
  report = json.loads((out / "report.json").read_text())
  families = {"turn_taking", "delegate"}
  assert set(report) == families | {"overall", "baselines", "meta"}
  assert set(report["baselines"]) == {"silent", "turn_based"}
  for name, system in report["baselines"].items():
    assert set(system) == families | {"overall"}
    for family in families | {"overall"}:
      # Only the model has teacher-forced diagnostics and only the gate's baseline says whether
      # it changed anything; every other metric is in all columns.
      model_metrics = {k for k in report[family] if not k.startswith("tf_")}
      gate = {"gate_changed"} if name == "turn_based" and family != "overall" else set()
      assert set(system[family]) == model_metrics | gate, (name, family)
  for family in families:
    assert {"tf_start_accuracy", "tf_heard_start_accuracy", "tf_word_accuracy",
            "free_start_accuracy", "free_quiet_accuracy", "words_without_voice",
            "voice_without_words"} <= set(report[family])
    assert 0.0 <= report[family]["tf_word_accuracy"] <= 1.0
    assert report["baselines"]["silent"][family]["free_start_accuracy"] == 0.0
    assert report["baselines"]["turn_based"][family]["gate_changed"] in (0.0, 1.0)
  assert report["baselines"]["silent"]["turn_taking"]["score"] == 0.0
  assert report["overall"]["mel_l1"] > 0 and report["meta"]["episodes"] == 2
  assert report["meta"]["episodes_per_family"] == {"delegate": 1, "turn_taking": 1}
  assert "## turn_taking" in (out / "report.md").read_text()
  # episodes.jsonl says per episode what the report pools: each family's score is the mean of
  # its episodes' score samples.
  rows = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
  source = dataset.open_split(data_dir, "train")
  episodes = {e.index: e for e in (source[i] for i in range(len(source)))}
  assert sorted(row["index"] for row in rows) == sorted(episodes)
  for row in rows:
    episode = episodes[row["index"]]
    assert row["task"] == episode.task
    said = sorted((w for w in episode.words if w.speaker == "model"), key=lambda w: w.start_s)
    assert [word for word, _ in row["reference"]] == [w.text for w in said]
    assert row["user"].split() == [w.text for w in episode.words if w.speaker == "user"]
  for family in families:
    samples = [x for row in rows if row["task"] == family for x in row["score"]]
    assert report[family]["score"] == pytest.approx(sum(samples) / len(samples))


def test_the_shuffled_decisions_see_each_episodes_own_frames_out_of_order(tmp_path,
                                                                           monkeypatch):
  """The teacher-forced decisions run twice for rep_count (its bounces are task events), the
  second time on the same frames in another order; once for turn_taking, whose scene is a
  distractor. The stand-in speaks where a frame is brighter than the episode's median, so the
  two passes' decisions differ and land under their own names."""
  data = tmp_path / "data"
  episodes = [synthetic.generate_episode(task, i, 0)
              for i, task in enumerate(("turn_taking", "rep_count", "rep_count"))]
  dataset.write_dataset(data, episodes, tokenizer_sentences=synthetic.vocabulary(),
                        vocab_size=512)
  config = config_lib.load("configs/tiny.py", [f"data.dir={data}"])
  run = trained_lib.Trained(config, models.build(config, nnx.Rngs(0)),
                            dataset.load_tokenizer(data), step=0)
  monkeypatch.setattr(command.trained_lib, "load", lambda workdir, checkpoint, overrides: run)
  calls = []

  def bright_frames_speak(self, params, windows):
    calls.append({k: np.array(windows[k]) for k in ("video", "turn_mask")})
    brightness_BN = windows["video"].mean(axis=(2, 3, 4, 5))
    speaks_BN = brightness_BN > np.median(brightness_BN, axis=1, keepdims=True)
    return speaks_BN, speaks_BN, np.zeros_like(windows["text_out"])

  monkeypatch.setattr(diagnostics.TeacherForced, "__call__", bright_frames_speak)
  out = tmp_path / "report"
  assert cli.main(["eval", "--workdir", str(tmp_path / "run"), "--data", str(data), "--out",
                   str(out), "--split", "train", "--batch", "2"]) == 0
  report = json.loads((out / "report.json").read_text())
  assert report["meta"]["episodes_per_family"] == {"rep_count": 1, "turn_taking": 1}
  both, rep_count_only = calls
  assert len(both["video"]) == 2 and len(rep_count_only["video"]) == 1
  n = int(rep_count_only["turn_mask"][0].sum())
  seen, shuffled = both["video"][1, :n], rep_count_only["video"][0, :n]  # in split order
  assert not np.array_equal(shuffled, seen)
  assert sorted(map(bytes, shuffled)) == sorted(map(bytes, seen))
  assert "tf_shuffled_start_accuracy" in report["rep_count"]
  assert (report["rep_count"]["tf_shuffled_quiet_accuracy"]
          != report["rep_count"]["tf_quiet_accuracy"])
  assert not [k for k in report["turn_taking"] if k.startswith("tf_shuffled_")]


def test_eval_rejects_a_missing_dataset_or_workdir(data_dir, tmp_path, capsys):
  out = tmp_path / "report"
  code = cli.main(["eval", "--workdir", str(tmp_path), "--data", str(tmp_path / "nothing"),
                   "--out", str(out)])
  assert code == 2 and "nothing" in capsys.readouterr().err
  code = cli.main(["eval", "--workdir", str(tmp_path / "run"), "--data", str(data_dir),
                   "--out", str(out)])
  assert code == 2 and "config.json" in capsys.readouterr().err
  assert not out.exists()
