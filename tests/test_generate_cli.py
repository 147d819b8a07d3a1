"""`jax-interact data generate` and `data inspect` through the command line."""

import json

from data_pipelines import dataset, generate, synthetic
from jax_interact import cli
from test_dataset import write_tiny_dataset

MICRO_TURN_KEYS = {"t", "start_s", "user_text_in", "background", "user_transcript", "model_text"}


def test_unknown_task_exits_2_and_writes_nothing(tmp_path, capsys):
  out = tmp_path / "ds"
  code = cli.main(["data", "generate", "--out", str(out), "--episodes", "2",
                   "--tasks", "turn_taking,juggling"])
  assert code == 2
  assert "--tasks" in capsys.readouterr().err
  assert list(tmp_path.iterdir()) == []


def test_inspect_writes_png_and_micro_turn_json(tmp_path):
  write_tiny_dataset(tmp_path / "ds", 3)
  png, doc = tmp_path / "out" / "episode.png", tmp_path / "out" / "episode.json"
  assert cli.main(["data", "inspect", str(tmp_path / "ds"), "--index", "1", "--out", str(png),
                   "--json", str(doc)]) == 0
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  turns = json.loads(doc.read_text())
  assert turns["chunk_ms"] == 200
  assert len(turns["micro_turns"]) == 8  # 1.6 s
  assert all(set(turn) == MICRO_TURN_KEYS for turn in turns["micro_turns"])
  assert "hello" in " ".join(turn["user_transcript"] for turn in turns["micro_turns"])


def test_inspect_bad_index_or_directory_exits_2(tmp_path, capsys):
  write_tiny_dataset(tmp_path / "ds", 2)
  assert cli.main(["data", "inspect", str(tmp_path / "ds"), "--index", "5",
                   "--out", str(tmp_path / "x.png")]) == 2
  assert "--index" in capsys.readouterr().err
  assert cli.main(["data", "inspect", str(tmp_path / "nothing"), "--index", "0",
                   "--out", str(tmp_path / "x.png")]) == 2
  assert not (tmp_path / "x.png").exists()


def test_generate_all_nine_tasks_end_to_end(tmp_path):
  out = tmp_path / "ds"
  assert cli.main(["data", "generate", "--out", str(out), "--episodes", "9", "--seed", "1",
                   "--workers", "2"]) == 0
  manifest = json.loads((out / "manifest.json").read_text())
  assert [e["task"] for e in manifest["episodes"]] == list(synthetic.TASKS)
  assert manifest["stats"]["split_sizes"] == {"train": 8, "validation": 1}
  assert cli.main(["data", "inspect", str(out), "--index", "8", "--out", str(tmp_path / "d.png"),
                   "--json", str(tmp_path / "d.json")]) == 0
  turns = json.loads((tmp_path / "d.json").read_text())["micro_turns"]
  assert any("<delegate>" in turn["model_text"] for turn in turns)  # episode 8 is `delegate`


def test_generate_in_parts_then_merge(tmp_path, capsys):
  for part in (0, 1):
    assert cli.main(["data", "generate", "--out", str(tmp_path / f"part{part}"), "--episodes", "2",
                     "--tasks", "turn_taking", "--workers", "1", "--shard", f"{part}/2"]) == 0
  assert "data merge" in capsys.readouterr().out
  assert cli.main(["data", "merge", "--out", str(tmp_path / "ds"), str(tmp_path / "part0"),
                   str(tmp_path / "part1")]) == 0
  manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
  assert [e["index"] for e in manifest["episodes"]] == [0, 1]
  assert manifest["stats"]["episodes"] == 2
  assert manifest["origin"] == generate.origin(2, ("turn_taking",), 0, generate.TOKENIZER_VOCAB)
  assert cli.main(["data", "inspect", str(tmp_path / "ds"), "--index", "1",
                   "--json", str(tmp_path / "d.json")]) == 0


def test_a_larger_vocabulary_makes_every_number_one_piece_and_needs_a_model_that_holds_it(
    tmp_path, capsys):
  """`--vocab-size 2048` gives every number a delegate can say (up to 30 times 30) and every word
  its own piece; a model whose vocabulary is smaller refuses the data, naming the key."""
  out = tmp_path / "ds"
  assert cli.main(["data", "generate", "--out", str(out), "--episodes", "2", "--tasks",
                   "turn_taking", "--workers", "1", "--vocab-size", "2048"]) == 0
  tokenizer = dataset.load_tokenizer(out)
  assert json.loads((out / "manifest.json").read_text())["stats"]["tokenizer_size"] == 2048
  assert all(len(tokenizer.encode(str(n))) == 1 for n in range(30 * 30 + 1))
  assert all(len(tokenizer.encode(word)) == 1
             for line in synthetic.vocabulary() for word in line.split())
  capsys.readouterr()
  assert cli.main(["train", "--config", "configs/tiny.py", "--workdir", str(tmp_path / "run"),
                   f"--config.data.dir={out}", "--config.train.steps=1",
                   "--config.data.batch_size=8"]) == 2
  assert "model.vocab_size: 512, but the tokenizer" in capsys.readouterr().err
  assert list((tmp_path / "run").iterdir()) == []
