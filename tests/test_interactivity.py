"""Interactivity while training: streaming eval rows in metrics.jsonl, the best step kept."""

import json

import pytest

from data_pipelines import dataset, synthetic
from jax_interact import config as config_lib
from jax_interact import trainer
from jax_interact.errors import ConfigError, InputError
from jax_interact.inference import trained as trained_lib
from jax_interact.training import checkpointing
from test_trainer import SMALL, read_metrics

TASKS = ("turn_taking", "interruption", "turn_taking", "interruption")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  out = tmp_path_factory.mktemp("interact") / "data"
  episodes = [synthetic.generate_episode(task, i, 0) for i, task in enumerate(TASKS)]
  dataset.write_dataset(out, episodes, tokenizer_sentences=synthetic.vocabulary(),
                        vocab_size=512)
  return out


def test_training_scores_interactivity_and_keeps_the_best_step(data_dir, tmp_path):
  steps = 4
  overrides = [o for o in SMALL
               if not o.startswith(("mesh.", "train.steps", "model.vocab", "data.source"))]
  config = config_lib.load("configs/tiny.py", overrides + [
      f"data.dir={data_dir}", "data.num_workers=0", "data.batch_size=8", f"train.steps={steps}",
      "train.interact_every_steps=2", "train.interact_episodes=2", "train.interact_batch=2",
      "model.vocab_size=512", "data.eval_split=train"])
  workdir = tmp_path / "run"
  trainer.train(config, workdir)

  rows = [r for r in read_metrics(workdir) if "interact_score" in r]
  assert [r["step"] for r in rows] == [2, 4]
  for row in rows:  # the first two episodes of the split: one of each family
    for family in ("turn_taking", "interruption"):
      assert 0 <= row[f"interact_{family}_score"] <= 1
    assert 0 <= row["interact_interruption_quiet_violation_rate"] <= 1
    assert row["interact_score"] == pytest.approx(
        (row["interact_turn_taking_score"] + row["interact_interruption_score"]) / 2)

  best = checkpointing.Checkpoints(workdir, config.checkpoint, checkpointing.BEST)
  scores = best.best_scores()
  best.close()
  first_best = max(rows, key=lambda r: r["interact_score"])  # ties keep the earlier step
  assert scores["step"] == first_best["step"]
  assert scores["score"] == pytest.approx(first_best["interact_score"])
  run = trained_lib.load(workdir, checkpointing.BEST)
  assert run.step == first_best["step"]
  assert trained_lib.load(workdir).step == steps


def test_interactivity_needs_a_dataset():
  with pytest.raises(ConfigError, match="train.interact_every_steps"):
    config_lib.load("configs/tiny.py", ["train.interact_every_steps=10"])


def test_best_checkpoint_missing_is_a_clear_error(tmp_path):
  config = config_lib.load("configs/tiny.py", [o for o in SMALL if not o.startswith("mesh.")]
                           + ["train.steps=1"])
  trainer.train(config, tmp_path / "run")
  with pytest.raises(Exception, match="interact_every_steps"):
    trained_lib.load(tmp_path / "run", checkpointing.BEST)
  with pytest.raises(InputError, match="trained on random batches"):  # no tokenizer to serve with
    trained_lib.load(tmp_path / "run")
  assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["steps"] == 1
