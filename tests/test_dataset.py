"""Dataset storage: TFDS/ArrayRecord round trip, streamed shards, parts, splits, manifest,
tokenizer, atomic writes."""

import json
import sys
import tracemalloc

import numpy as np
import pytest

from data_pipelines import array_records, dataset
from jax_interact import config as config_lib
from jax_interact.errors import InputError
from jax_interact.streams.episode import Episode, Word
from jax_interact.streams.timing import SAMPLE_RATE


def tiny_stream():
  """A stream config whose video size matches tiny_episode's frames (no resizing)."""
  stream = config_lib.defaults().stream
  stream.n_mels = 20
  stream.video_height = stream.video_width = 40
  return stream


def tiny_episode(index: int, seconds: float = 1.6) -> Episode:
  """A hand-built episode: a sine for the user, noise for the model, 5 fps random frames."""
  rng = np.random.default_rng(index)
  samples = int(seconds * SAMPLE_RATE)
  t = np.arange(samples) / SAMPLE_RATE
  frames = int(seconds * 5)
  return Episode(
      index=index, task=("turn_taking", "delegate")[index % 2],
      user_audio=(4000 * np.sin(2 * np.pi * (180 + 20 * index) * t)).astype(np.int16),
      model_audio=rng.normal(0, 800, samples).astype(np.int16),
      video=rng.integers(0, 256, (frames, 40, 40, 3), dtype=np.uint8),
      video_times_s=np.arange(frames, dtype=np.float32) * 0.2,
      words=[Word("user", f"hello number {index}", 0.1, 0.5), Word("model", "hi there", 0.9, 1.3)],
      events=[{"type": "typed", "time_s": 0.3, "text": "a typed line"}],
      annotations={"responses": [{"window_s": [0.6, 1.2]}], "seed": index})


def write_tiny_dataset(out, n: int, seconds=lambda i: 1.6):
  return dataset.write_dataset(out, (tiny_episode(i, seconds(i)) for i in range(n)),
                               tokenizer_sentences=["extra sentence for the tokenizer"],
                               vocab_size=64, stream_config=tiny_stream())


def assert_same_episode(a: Episode, b: Episode):
  assert (a.index, a.task, a.words, a.events, a.annotations) == (
      b.index, b.task, b.words, b.events, b.annotations)
  for field in ("user_audio", "model_audio", "video", "video_times_s"):
    x, y = getattr(a, field), getattr(b, field)
    assert x.dtype == y.dtype and np.array_equal(x, y), field


def test_round_trip_keeps_every_field_and_holds_out_every_tenth_of_each_task(tmp_path):
  # Tasks alternate, so every 10th episode overall would hold out turn_taking only.
  manifest = write_tiny_dataset(tmp_path / "ds", 22)
  assert manifest["splits"] == {"train": [i for i in range(22) if i not in (18, 19)],
                                "validation": [18, 19]}
  assert {tiny_episode(i).task for i in manifest["splits"]["validation"]} == {"turn_taking",
                                                                             "delegate"}
  for split, indices in manifest["splits"].items():
    source = dataset.open_split(tmp_path / "ds", split)
    assert len(source) == len(indices)
    for position, index in enumerate(indices):
      assert_same_episode(source[position], tiny_episode(index))
  assert_same_episode(dataset.episode_by_index(tmp_path / "ds", 19), tiny_episode(19))


def test_writing_streams_shards_in_memory_flat_in_the_episode_count(tmp_path, monkeypatch):
  """The writer used to hold each split in memory (1200 episodes: about 1 GB)."""
  episode_bytes = sum(np.asarray(v).nbytes for v in tiny_episode(0).to_example().values())
  monkeypatch.setattr(array_records, "SHARD_BYTES", 3 * episode_bytes)  # a few per shard
  write_tiny_dataset(tmp_path / "warm-up", 2)  # imports and caches, outside the measurement
  peaks = {}
  for n in (20, 80):
    tracemalloc.start()
    manifest = write_tiny_dataset(tmp_path / f"ds{n}", n)
    peaks[n] = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
  assert peaks[80] - peaks[20] < 10 * episode_bytes  # holding 60 more episodes would be 60x
  assert len(list((tmp_path / "ds80").rglob("*-train.array_record-*"))) > 5
  source = dataset.open_split(tmp_path / "ds80", "train")  # through TFDS, without TensorFlow
  for position, index in enumerate(manifest["splits"]["train"]):
    assert_same_episode(source[position], tiny_episode(index))
  assert "tensorflow" not in sys.modules


def test_parts_written_apart_merge_into_one_dataset(tmp_path):
  for part, indices in enumerate((range(0, 12), range(12, 24))):
    dataset.write_dataset(tmp_path / f"part{part}", (tiny_episode(i) for i in indices),
                          tokenizer_sentences=["extra sentence for the tokenizer"],
                          vocab_size=64, stream_config=tiny_stream(), part=(part, 2))
  with pytest.raises(InputError, match="part 0 of 2 of a dataset; join all parts"):
    dataset.open_split(tmp_path / "part0", "train")
  with pytest.raises(InputError, match="part 1 of 2 is missing"):
    dataset.merge_parts(tmp_path / "ds", [tmp_path / "part0"])

  manifest = dataset.merge_parts(tmp_path / "ds", [tmp_path / "part1", tmp_path / "part0"])
  assert [e["index"] for e in manifest["episodes"]] == list(range(24))
  assert manifest["splits"]["validation"] == [11, 23]  # each part holds out its last episode
  assert manifest["stats"]["episodes"] == 24
  for split, indices in manifest["splits"].items():
    source = dataset.open_split(tmp_path / "ds", split)
    assert len(source) == len(indices)
    for position, index in enumerate(indices):
      assert_same_episode(source[position], tiny_episode(index))
  tokenizer = dataset.load_tokenizer(tmp_path / "ds")
  assert tokenizer.decode(tokenizer.encode("extra sentence")) == "extra sentence"


def test_statistics_counted_by_workers_equal_those_counted_in_one_process(tmp_path):
  # 110 episodes: enough for two workers (dataset.EPISODES_PER_WORKER each at least).
  manifest = dataset.write_dataset(tmp_path, (tiny_episode(i) for i in range(110)),
                                   vocab_size=64, stream_config=tiny_stream(), workers=2)
  assert manifest["stats"]["micro_turns"] == 110 * 8
  assert manifest["stats"] == dataset._statistics(tmp_path, manifest, tiny_stream(), workers=1)


@pytest.mark.parametrize("n, expected", [
    (1, {"train": [0], "validation": [0]}),
    (3, {"train": [0, 1], "validation": [2]}),
])
def test_small_datasets_still_have_a_validation_episode(tmp_path, n, expected):
  assert write_tiny_dataset(tmp_path / "ds", n)["splits"] == expected


def test_manifest_schema_and_tokenizer(tmp_path):
  write_tiny_dataset(tmp_path / "ds", 3, seconds=lambda i: 1.6 + 0.4 * i)
  manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
  assert set(manifest) >= {"episodes", "splits", "stats"}
  assert [e["index"] for e in manifest["episodes"]] == [0, 1, 2]
  entry = manifest["episodes"][1]
  assert set(entry) == {"index", "task", "duration_s", "words", "events"}
  assert entry["duration_s"] == pytest.approx(2.0)
  assert entry["words"][0] == {"speaker": "user", "text": "hello number 1", "start_s": 0.1,
                               "end_s": 0.5}
  stats = manifest["stats"]
  assert stats["episodes"] == 3
  assert stats["hours"] == pytest.approx((1.6 + 2.0 + 2.4) / 3600, abs=1e-4)
  assert stats["micro_turns"] == 8 + 10 + 12
  assert stats["tasks"] == {"delegate": 1, "turn_taking": 2}
  assert {"spilled_tokens", "dropped_at_end"} <= set(stats["featurize"])
  tokenizer = dataset.load_tokenizer(tmp_path / "ds")
  assert tokenizer.decode(tokenizer.encode("hello there")) == "hello there"


def _failing_after(n):
  for i in range(n):
    yield tiny_episode(i)
  raise RuntimeError("generator failed")


def test_failure_midway_leaves_nothing(tmp_path):
  with pytest.raises(RuntimeError, match="generator failed"):
    dataset.write_dataset(tmp_path / "ds", _failing_after(2), stream_config=tiny_stream())
  assert list(tmp_path.iterdir()) == []


def test_failure_keeps_the_existing_dataset(tmp_path):
  write_tiny_dataset(tmp_path / "ds", 2)
  before = (tmp_path / "ds" / "manifest.json").read_text()
  bad = tiny_episode(5)
  bad.words.append(Word("model", "late", 1.0, 9.0))  # ends after the audio
  with pytest.raises(InputError, match=r"words\[2\]"):
    dataset.write_dataset(tmp_path / "ds", [tiny_episode(0), bad], stream_config=tiny_stream())
  assert (tmp_path / "ds" / "manifest.json").read_text() == before
  assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_bad_directories_and_splits_are_input_errors(tmp_path):
  with pytest.raises(InputError, match="not a directory"):
    dataset.open_split(tmp_path / "missing", "train")
  (tmp_path / "empty").mkdir()
  with pytest.raises(InputError, match="manifest.json"):
    dataset.open_split(tmp_path / "empty", "train")
  with pytest.raises(InputError, match="split"):
    dataset.open_split(tmp_path / "empty", "test")
  (tmp_path / "other").mkdir()
  (tmp_path / "other" / "notes.txt").write_text("not a dataset")
  with pytest.raises(InputError, match="refusing to replace"):
    write_tiny_dataset(tmp_path / "other", 1)
