"""The Grain pipeline: batch format, determinism by seed, checkpointed resume, eval padding."""

import concurrent.futures
import json
import math
import time

import numpy as np
import pytest

from data_pipelines import dataset, featurize, features, grain_pipeline
from data_pipelines.held_out import DatasetSplit
from jax_interact import cli
from jax_interact import config as config_lib
from jax_interact.errors import ConfigError, InputError
from jax_interact.evaluation import scoring
from jax_interact.streams import tokenizer as tokenizer_lib
from jax_interact.streams.layout import Layout, random_batch
from test_dataset import tiny_stream, write_tiny_dataset
from test_trainer import TINY

EPISODES = 7  # 6 train (1.6 s to 3.6 s long), 1 validation


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  out = tmp_path_factory.mktemp("pipeline") / "ds"
  write_tiny_dataset(out, EPISODES, seconds=lambda i: 1.6 + 0.4 * i)
  return out


def small_config(num_workers=0):
  config = config_lib.defaults()
  config.stream = tiny_stream()
  config.data.window = 4
  config.data.batch_size = 2
  config.data.num_workers = num_workers
  return config


def take(iterator, n):
  return [next(iterator) for _ in range(n)]


def assert_same_batches(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for key in x:
      np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def test_batches_follow_the_layout_format(data_dir):
  config = small_config()
  iterator = grain_pipeline.make_iterator(config, data_dir, "train", seed=0)
  batch = next(iterator)
  expected = random_batch(Layout.from_config(config.stream), 2, 4, vocab_size=64,
                          dmel_bins=config.stream.dmel_bins)
  assert {k: (v.shape, v.dtype) for k, v in batch.items()} == {
      k: (v.shape, v.dtype) for k, v in expected.items()}
  # Windows are consecutive micro-turns and lie (at least partly) inside their episode.
  np.testing.assert_array_equal(batch["turn"] - batch["turn"][:, :1], np.tile(np.arange(4), (2, 1)))
  assert batch["turn_mask"][:, 0].all()


def test_same_seed_gives_the_same_batches_and_training_never_ends(data_dir):
  config = small_config()
  # 7 batches of 2 windows: more than 2 epochs of the 6 training episodes.
  first = take(grain_pipeline.make_iterator(config, data_dir, "train", seed=1), 7)
  again = take(grain_pipeline.make_iterator(config, data_dir, "train", seed=1), 7)
  other = take(grain_pipeline.make_iterator(config, data_dir, "train", seed=2), 7)
  assert_same_batches(first, again)
  assert any(not np.array_equal(x["audio_in"], y["audio_in"]) for x, y in zip(first, other))


@pytest.mark.parametrize("num_workers", [0, 1])
def test_restored_iterator_continues_identically(data_dir, num_workers):
  config = small_config(num_workers)
  iterator = grain_pipeline.make_iterator(config, data_dir, "train", seed=3)
  take(iterator, 3)
  state = json.loads(json.dumps(iterator.get_state()))  # as Grain's Orbax handler stores it
  expected = take(iterator, 3)
  iterator.close()
  restored = grain_pipeline.make_iterator(config, data_dir, "train", seed=3)
  restored.set_state(state)
  resumed = take(restored, 3)
  restored.close()
  assert_same_batches(resumed, expected)
  assert state["num_workers"] == num_workers


def test_restoring_with_another_worker_count_is_refused(data_dir):
  iterator = grain_pipeline.make_iterator(small_config(0), data_dir, "train", seed=0)
  take(iterator, 1)
  other = grain_pipeline.make_iterator(small_config(1), data_dir, "train", seed=0)
  with pytest.raises(InputError, match="config.data.num_workers"):
    other.set_state(iterator.get_state())
  other.close()


def test_eval_reads_each_episode_once_and_pads_the_last_batch(data_dir):
  config = small_config()
  config.data.batch_size = 4
  batches = list(grain_pipeline.make_iterator(config, data_dir, "validation", seed=0,
                                              train=False))
  assert len(batches) == 1
  assert batches[0]["turn"].shape == (4, 4)
  assert batches[0]["turn_mask"][0].any() and not batches[0]["turn_mask"][1:].any()


@pytest.mark.parametrize("split, episodes", [("train", 6), ("validation", 1)])
def test_eval_gives_every_process_the_same_number_of_batches(data_dir, monkeypatch, split,
                                                             episodes):
  config = small_config()
  config.data.batch_size = 4  # 1 window per process
  monkeypatch.setattr(grain_pipeline.jax, "process_count", lambda: 4)
  counts, real = [], 0
  for process in range(4):
    monkeypatch.setattr(grain_pipeline.jax, "process_index", lambda p=process: p)
    batches = list(grain_pipeline.make_iterator(config, data_dir, split, seed=0, train=False))
    counts.append(len(batches))
    real += sum(int(b["turn_mask"][i].any()) for b in batches for i in range(len(b["turn"])))
  assert counts == [math.ceil(episodes / 4)] * 4
  assert real == episodes


def test_a_split_with_fewer_episodes_than_processes_is_refused(data_dir, monkeypatch):
  monkeypatch.setattr(grain_pipeline.jax, "process_count", lambda: 8)
  monkeypatch.setattr(grain_pipeline.jax, "process_index", lambda: 7)
  config = small_config()
  config.data.batch_size = 8
  with pytest.raises(InputError, match="split 'train' has 6 episodes, fewer than the 8"):
    grain_pipeline.make_iterator(config, data_dir, "train", seed=0)


def test_batch_size_must_divide_over_processes(data_dir, monkeypatch):
  monkeypatch.setattr(grain_pipeline.jax, "process_count", lambda: 4)
  config = small_config()
  config.data.batch_size = 6
  with pytest.raises(InputError, match="config.data.batch_size"):
    grain_pipeline.make_iterator(config, data_dir, "train", seed=0)


@pytest.mark.parametrize("stream_overrides", [{}, {"bg_slots": 0}], ids=["default", "no_bg"])
def test_cached_windows_equal_featurizing_the_episode(data_dir, stream_overrides):
  """Featurize once: a window sliced from the cache is what featurizing the episode gives, also
  when a slot group has no slots (its cache file is empty)."""
  config = small_config()
  config.stream.update(stream_overrides)
  cached = features.Features(features.ensure(data_dir, config.stream, "train"))
  episodes = dataset.open_split(data_dir, "train")
  layout = Layout.from_config(config.stream)
  tokenizer = dataset.load_tokenizer(data_dir)
  assert len(cached) == len(episodes)
  for i in range(len(episodes)):
    tracks, _ = featurize.featurize_episode(episodes[i], layout, tokenizer, config.stream)
    assert cached.num_turns(i) == len(tracks["turn"])
    for start in (0, 2, len(tracks["turn"]) - 2):  # the last one runs past the episode's end
      want = featurize.window(tracks, start, config.data.window)
      got = cached.window(i, start, config.data.window)
      assert got.keys() == want.keys()
      for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
        assert got[key].dtype == want[key].dtype


def test_reader_threads_open_a_split_once_and_never_two_at_a_time(data_dir, monkeypatch):
  """Grain's reader threads all reach an unopened split at once; numpy's .npy header parse fails
  on CPython 3.11 when two threads run it together, so each thread must get the one opening."""
  inside, most_inside, opened = [0], [0], []
  load = np.load

  def slow_load(*args, **kwargs):
    inside[0] += 1
    most_inside[0] = max(most_inside[0], inside[0])
    time.sleep(0.05)  # long enough for every thread to arrive
    opened.append(1)
    inside[0] -= 1
    return load(*args, **kwargs)

  split = features.Features(features.ensure(data_dir, small_config().stream, "train"))
  monkeypatch.setattr(features.np, "load", slow_load)
  with concurrent.futures.ThreadPoolExecutor(8) as pool:
    counts = list(pool.map(split.num_turns, [0] * 8))
  assert most_inside[0] == 1 and len(opened) == 1
  assert counts == [split.num_turns(0)] * 8


def test_task_repeats_set_how_often_an_epoch_draws_from_each_task(data_dir):
  tasks = dataset.split_tasks(data_dir, "train")
  episodes = dataset.open_split(data_dir, "train")
  assert tasks == [episodes[i].task for i in range(len(episodes))]
  order = grain_pipeline.epoch_order(range(len(tasks)), tasks, {"delegate": 3})
  assert sorted(order) == sorted([i for i, task in enumerate(tasks) if task == "turn_taking"] +
                                 3 * [i for i, task in enumerate(tasks) if task == "delegate"])

  config = small_config()
  config.data.task_repeats = "turn_taking:0"
  batches = take(grain_pipeline.make_iterator(config, data_dir, "train", seed=0), 4)
  cached = features.Features(features.ensure(data_dir, config.stream, "train"))
  delegate_windows = [cached.window(i, start, config.data.window)["audio_in"]
                      for i, task in enumerate(tasks) if task == "delegate"
                      for start in range(cached.num_turns(i))]
  for batch in batches:
    for window in batch["audio_in"]:
      assert any(np.array_equal(window, other) for other in delegate_windows)


def test_first_window_share_sets_how_many_training_windows_start_at_the_request(data_dir):
  """An episode's request is at its start: `data.first_window_share` of the training windows
  begin there, the rest anywhere; held-out windows are drawn as without it."""
  def starts(share, split="train", train=True):
    config = small_config()
    config.data.first_window_share = share
    iterator = grain_pipeline.make_iterator(config, data_dir, split, seed=0, train=train)
    return np.concatenate([batch["turn"][:, 0] for batch in take(iterator, 8 if train else 1)])

  uniform, half, first = starts(0.0), starts(0.5), starts(1.0)
  assert (first == 0).all()
  assert (uniform == 0).sum() < (half == 0).sum() < len(half)
  np.testing.assert_array_equal(starts(1.0, "validation", False),
                                starts(0.0, "validation", False))


def test_first_window_tasks_limit_the_share_to_the_tasks_they_name(data_dir):
  def batches(only, repeats, share=1.0):
    config = small_config()
    config.data.first_window_share, config.data.first_window_tasks = share, only
    config.data.task_repeats = repeats
    return take(grain_pipeline.make_iterator(config, data_dir, "train", seed=0), 4)

  named = batches("delegate", "turn_taking:0")
  assert all((batch["turn"][:, 0] == 0).all() for batch in named)
  assert_same_batches(batches("delegate", "delegate:0"), batches("delegate", "delegate:0", 0.0))
  with pytest.raises(ConfigError, match="config.data.first_window_tasks.*delegat, not a task"):
    batches("delegat", "")


def test_last_window_share_sets_how_many_training_windows_end_with_their_episode(data_dir):
  """The end of an episode (a stop, a result, a last count) is in few uniform windows:
  `data.last_window_share` of the training windows end at an episode's last micro-turn."""
  split = features.Features(features.ensure(data_dir, small_config().stream, "train"))
  episode_ends = {split.num_turns(i) - 1 for i in range(len(split))}

  def ends(first, last, only=""):
    config = small_config()
    config.data.first_window_share, config.data.last_window_share = first, last
    config.data.last_window_tasks = only
    iterator = grain_pipeline.make_iterator(config, data_dir, "train", seed=0)
    return np.concatenate([batch["turn"][:, -1] for batch in take(iterator, 8)])

  assert set(ends(0.0, 1.0)) <= episode_ends
  assert not set(ends(0.0, 0.0)) <= episode_ends
  assert set(ends(0.5, 0.5)) - episode_ends == {small_config().data.window - 1}  # the first
  with pytest.raises(ConfigError, match="config.data.last_window_share.*at most 1"):
    ends(0.5, 0.6)
  with pytest.raises(ConfigError, match="config.data.last_window_tasks.*delegat, not a task"):
    ends(0.0, 0.5, "delegat")


@pytest.mark.parametrize("repeats, message", [
    ("delegat:2", "delegat, not a task of this dataset"),
    ("turn_taking:0,delegate:0", "leaves no training episode"),
])
def test_task_repeats_that_name_no_task_or_leave_nothing_are_refused(data_dir, repeats, message):
  config = small_config()
  config.data.task_repeats = repeats
  with pytest.raises(ConfigError, match=f"config.data.task_repeats.*{message}"):
    grain_pipeline.make_iterator(config, data_dir, "train", seed=0)


@pytest.mark.parametrize("repeats", ["delegate=2", "delegate:-1", "delegate:1,delegate:2", ":2"])
def test_task_repeats_in_another_format_are_refused_when_the_config_is_checked(repeats):
  config = config_lib.defaults()
  config.data.task_repeats = repeats
  with pytest.raises(ConfigError, match="config.data.task_repeats.*task:n"):
    config_lib.validate(config)


def test_feature_cache_is_built_once_per_stream_layout(data_dir, monkeypatch):
  config = small_config()
  first = features.ensure(data_dir, config.stream, "train")
  monkeypatch.setattr(features, "_featurize", lambda job: pytest.fail("featurized again"))
  assert features.ensure(data_dir, config.stream, "train") == first
  other = small_config()
  other.stream.text_out_slots += 1  # another layout: its own cache
  tokenizer = dataset.load_tokenizer(data_dir)
  assert features.cache_key(other.stream, tokenizer) != features.cache_key(config.stream,
                                                                           tokenizer)


def test_data_featurize_builds_the_caches_training_then_reads(data_dir, monkeypatch, capsys):
  overrides = ["stream.n_mels=20", "stream.text_out_slots=2"]  # a layout no other test caches
  assert cli.main(["data", "featurize", str(data_dir), "--config", TINY,
                   *(f"--config.{o}" for o in overrides)]) == 0
  assert "train: 6 episodes featurized" in capsys.readouterr().out
  stream = config_lib.load(TINY, [*overrides, f"data.dir={data_dir}"]).stream
  monkeypatch.setattr(features, "_featurize", lambda job: pytest.fail("featurized again"))
  for split in ("train", "validation"):
    features.ensure(data_dir, stream, split)


def test_held_out_windows_are_read_in_the_models_token_ids(data_dir, tmp_path):
  """A model scored on another dataset's episodes (another seed) reads them encoded by its own
  tokenizer, not the dataset's: each tokenizer gets its own feature cache."""
  config = small_config()
  layout = Layout.from_config(config.stream)
  episode_words = [w.text for e in dataset.open_split(data_dir, "train") for w in e.words]
  tokenizer_lib.train_tokenizer([" ".join(reversed(episode_words))] * 3 +
                                ["zebra quantum xylophone"] * 20, tmp_path / "other.model",
                                vocab_size=64)
  theirs = tokenizer_lib.Tokenizer.load(tmp_path / "other.model")
  split = DatasetSplit(data_dir, "train", EPISODES, scoring.SCORERS)
  windows, lengths = split.teacher_forced_windows(config.stream, theirs, [0], progress=False)
  want, _ = featurize.featurize_episode(split.episodes[0], layout, theirs, config.stream)
  ours, _ = featurize.featurize_episode(split.episodes[0], layout,
                                        dataset.load_tokenizer(data_dir), config.stream)
  assert not np.array_equal(want["text_out"], ours["text_out"])
  for key in ("text_out", "user_transcript", "text_in"):
    np.testing.assert_array_equal(windows[key][0, :lengths[0]], want[key], err_msg=key)
