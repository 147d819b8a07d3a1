"""The synthetic interaction suite: valid, deterministic episodes whose annotations match them."""

import hashlib
import itertools
import math
import subprocess
import sys

import numpy as np
import pytest

from data_pipelines import procedural_video, synthetic
from jax_interact.errors import InputError
from jax_interact.streams.episode import Episode


@pytest.fixture(scope="module")
def episodes() -> dict[str, Episode]:
  return {task: synthetic.generate_episode(task, index=3, seed=11) for task in synthetic.TASKS}


def test_the_nine_task_families():
  assert synthetic.TASKS == ("turn_taking", "pause_handling", "interruption", "rep_count",
                             "visual_cue", "start_stop", "time_speak", "live_translation",
                             "delegate")


def test_unknown_task_is_an_input_error():
  with pytest.raises(InputError, match="--tasks"):
    synthetic.generate_episode("juggling", 0, 0)


def test_same_seed_same_episode_other_seed_other_episode(episodes):
  task = "rep_count"
  again = synthetic.generate_episode(task, index=3, seed=11)
  first = episodes[task].to_example()
  for key, value in again.to_example().items():
    np.testing.assert_array_equal(value, first[key], err_msg=key)
  other = synthetic.generate_episode(task, index=3, seed=12)
  assert other.to_example()["meta"] != first["meta"]
  assert not np.array_equal(synthetic.generate_episode(task, index=4, seed=11).video[:5],
                            episodes[task].video[:5])


def _audio_digest(episode: Episode) -> str:
  return hashlib.sha256(episode.user_audio.tobytes() + episode.model_audio.tobytes()).hexdigest()


def test_episode_is_the_same_in_a_fresh_process(episodes):
  # Worker processes generate episodes in any order: nothing may depend on earlier synthesis.
  code = ("import hashlib; from data_pipelines import synthetic; "
          "e = synthetic.generate_episode('interruption', 3, 11); "
          "print(hashlib.sha256(e.user_audio.tobytes() + e.model_audio.tobytes()).hexdigest())")
  fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
  assert fresh == _audio_digest(episodes["interruption"])


@pytest.mark.parametrize("task", synthetic.TASKS)
def test_episode_is_valid_and_round_trips(episodes, task):
  episode = episodes[task]
  episode.validate()
  assert episode.task == task
  assert synthetic.MIN_DURATION_S <= episode.duration_s <= synthetic.MAX_DURATION_S
  assert episode.video.shape == (episode.num_turns(200), procedural_video.HEIGHT,
                                 procedural_video.WIDTH, 3)
  speakers = {w.speaker for w in episode.words}
  assert "model" in speakers
  assert "user" in speakers or episode.typed_text()
  assert np.abs(episode.user_audio).max() > 1000 and np.abs(episode.model_audio).max() > 1000
  restored = Episode.from_example(episode.to_example())
  assert restored.words == episode.words
  assert restored.events == episode.events and restored.annotations == episode.annotations
  np.testing.assert_array_equal(restored.model_audio, episode.model_audio)
  np.testing.assert_array_equal(restored.video, episode.video)


@pytest.mark.parametrize("task", synthetic.TASKS)
def test_model_track_is_causal_and_inside_its_windows(episodes, task):
  episode = episodes[task]
  responses = episode.annotations["responses"]
  model_words = [w for w in episode.words if w.speaker == "model"]
  assert responses and model_words[0].start_s == responses[0]["start_s"]
  for r in responses:
    lo, hi = r["window_s"]
    assert lo <= r["start_s"] <= hi, r
    # SPEC §3: a reply to a cue at e can first be spoken at ((floor(e/T) + 1) * T).
    assert r["start_s"] >= (math.floor(r["event_s"] / 0.2 + 1e-9) + 1) * 0.2 - 1e-6, r
  for lo, hi in episode.annotations["quiet_s"]:
    assert not [w for w in model_words if lo < w.start_s < hi], (lo, hi)
  for earlier, later in itertools.pairwise(model_words):
    assert later.start_s >= earlier.end_s


def test_every_word_spoken_is_in_the_vocabulary(episodes):
  known = {word for line in synthetic.vocabulary() for word in line.split()}
  for episode in episodes.values():
    assert {w.text for w in episode.words} <= known
    for event in episode.events:
      assert set(event.get("text", "").split()) <= known
      assert {w["text"] for w in event.get("result_words", [])} <= known


def test_rep_count_bounces_match_the_video(episodes):
  episode = episodes["rep_count"]
  bounces = episode.annotations["bounces_s"]
  assert [e["time_s"] for e in episode.events if e["type"] == "bounce"] == bounces
  counts = [r["text"] for r in episode.annotations["responses"]]
  assert counts == list(synthetic.NUMBER_WORDS[1:len(bounces) + 1])
  # Objects are the only pixels with a channel above 150; the ball is the only object.
  is_ball = episode.video.max(axis=-1) > 150
  rows = np.arange(procedural_video.HEIGHT)
  bottom = np.array([rows[mask.any(axis=1)].max() if mask.any() else -1 for mask in is_ball])
  times = episode.video_times_s
  for bounce in bounces:
    nearest = int(np.argmin(np.abs(times - bounce)))
    assert bottom[nearest] >= procedural_video.FLOOR_Y - 2 - 0.1 * procedural_video.BALL_SPEED_PX_S
    neighbours = bottom[max(nearest - 2, 0):nearest + 3]
    assert bottom[nearest] == neighbours.max()
  for a, b in itertools.pairwise(bounces):
    midway = int(np.argmin(np.abs(times - (a + b) / 2)))
    assert bottom[midway] < procedural_video.FLOOR_Y - 30


def test_visual_cue_square_takes_the_colour_at_the_change(episodes):
  episode = episodes["visual_cue"]
  target = np.array(procedural_video.COLOURS[episode.annotations["target_colour"]], np.uint8)
  has_target = (episode.video == target).all(axis=-1).sum(axis=(1, 2)) > 100
  first = int(np.argmax(has_target))
  assert has_target[first:].all()
  assert episode.video_times_s[first - 1] < episode.annotations["change_s"]
  assert episode.video_times_s[first] >= episode.annotations["change_s"]


def test_start_stop_object_moves_only_inside_the_interval(episodes):
  episode = episodes["start_stop"]
  start, stop = episode.annotations["interval_s"]
  moved = np.abs(np.diff(episode.video.astype(np.int16), axis=0)).sum(axis=(1, 2, 3)) > 0
  changed_at = episode.video_times_s[1:][moved]  # time of the frame that differs from the last
  assert changed_at.min() > start and changed_at.max() < stop + 0.2 + 1e-6


def test_delegation_event_carries_a_calculator_task_and_its_result(episodes):
  episode = episodes["delegate"]
  (event,) = episode.delegations()
  a, op, b = event["task"].split()[-3:]
  assert op in synthetic.ARITHMETIC
  result = synthetic.ARITHMETIC[op][0](int(a), int(b))
  words = [w["text"] for w in event["result_words"]]
  assert words[-1] == str(result)
  arrivals = [w["time_s"] for w in event["result_words"]]
  assert arrivals == sorted(arrivals) and arrivals[0] > event["time_s"]
  answer = episode.annotations["responses"][-1]
  assert answer["text"] == " ".join(words) and answer["start_s"] > arrivals[-1]
  user_busy = episode.annotations["user_speaking_s"]
  assert not user_busy or answer["start_s"] > user_busy[1]


def test_typed_requests_appear_as_typed_events():
  typed = [e for i in range(8) for e in synthetic.generate_episode("time_speak", i, 0).events
           if e["type"] == "typed"]
  assert typed and all("every" in e["text"] for e in typed)
