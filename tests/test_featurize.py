"""Featurization follows SPEC §3's timing rule exactly; overflow is counted; no future video."""

import numpy as np
import pytest

from data_pipelines import featurize
from jax_interact.config import defaults
from jax_interact.errors import ConfigError, InputError
from jax_interact.inference import chunks
from jax_interact.inference import engine as engine_lib
from jax_interact.streams import dmel, timing, video
from jax_interact.streams import tokenizer as tok
from jax_interact.streams.episode import Episode, Word
from jax_interact.streams.layout import Layout, SlotKind, empty_outputs, random_batch

STREAM = defaults().stream
LAYOUT = Layout.from_config(STREAM)
WORDS = "hello there red ball square count seven eight nine stop start answer is blue".split()


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
  path = tmp_path_factory.mktemp("tok") / "tokenizer.model"
  tok.train_tokenizer(WORDS * 20, path, vocab_size=80)
  return tok.Tokenizer.load(path)


def episode(seconds=2.0, words=(), events=(), user_audio=None, model_audio=None,
            frames=None, frame_times=(), annotations=None):
  n = int(16000 * seconds)
  return Episode(
      index=7, task="test",
      user_audio=np.zeros(n, np.int16) if user_audio is None else user_audio,
      model_audio=np.zeros(n, np.int16) if model_audio is None else model_audio,
      video=np.zeros((0, 80, 80, 3), np.uint8) if frames is None else frames,
      video_times_s=np.asarray(frame_times, np.float32), words=list(words), events=list(events),
      annotations=annotations or {})


def tokens_of(ids, empty):
  return [int(i) for i in ids if i != empty]


def test_timing_rule_boundaries():
  assert timing.model_word_turn(0.4, 200) == (1, False)  # exactly on a boundary
  assert timing.model_word_turn(0.399, 200) == (0, False)
  assert timing.model_word_turn(0.6, 200) == (2, False)  # 0.6 / 0.2 < 3 in floats
  assert timing.model_word_turn(0.1, 200) == (0, True)
  assert timing.transcript_turn(0.4, 200) == 2 and timing.transcript_turn(0.399, 200) == 1
  assert timing.transcript_turn(0.3999, 200) == 2  # times are rounded to whole milliseconds
  assert timing.input_turn(0.6, 200) == 3 and timing.first_answer_turn(0.61, 200) == 3
  assert timing.output_window_s(1, 200) == (0.4, 0.6)
  assert timing.input_window_s(1, 200) == (0.2, 0.4)


def test_words_and_events_land_where_spec_says(tokenizer):
  ep = episode(words=[Word("model", "red", 0.4, 0.55), Word("model", "ball", 0.61, 0.8),
                      Word("user", "hello", 0.1, 0.4), Word("user", "there", 0.2, 0.39)],
               events=[{"type": "typed", "time_s": 1.0, "text": "square"},
                       {"type": "delegate", "time_s": 1.2, "task": "q",
                        "result_words": [{"text": "answer", "time_s": 1.5},
                                         {"text": "blue", "time_s": 1.7}]}])
  tracks, stats = featurize.featurize_episode(ep, LAYOUT, tokenizer, STREAM)
  enc = tokenizer.encode
  out = {t: tokens_of(tracks["text_out"][t], tok.SIL) for t in range(10)}
  assert out == {**{t: [] for t in range(10)}, 1: enc("red"), 2: enc("ball"), 5: [tok.DELEGATE]}
  transcript = {t: tokens_of(tracks["user_transcript"][t], tok.SIL) for t in range(10)}
  assert transcript == {**{t: [] for t in range(10)}, 1: enc("there"), 2: enc("hello")}
  typed = {t: tokens_of(tracks["text_in"][t], tok.PAD) for t in range(10)}
  assert typed == {**{t: [] for t in range(10)}, 5: enc("square")}
  bg = {t: tokens_of(tracks["bg"][t], tok.PAD) for t in range(10)}
  assert bg == {**{t: [] for t in range(10)}, 7: [tok.BG, *enc("answer")],
                8: [*enc("blue"), tok.BG_END]}
  assert stats["spilled_tokens"] == 0 and stats["dropped_at_end"] == 0
  rows = featurize.describe_turns(tracks, tokenizer, STREAM.chunk_ms)
  assert len(rows) == 10 and rows[5] == {
      "t": 5, "start_s": 1.0, "user_text_in": "square", "background": "",
      "user_transcript": "", "model_text": "<delegate>"}
  assert rows[7]["background"] == "<bg> answer" and rows[2]["user_transcript"] == "hello"


def test_shapes_match_the_batch_format(tokenizer):
  tracks, _ = featurize.featurize_episode(episode(seconds=1.05), LAYOUT, tokenizer, STREAM)
  reference = random_batch(LAYOUT, 1, 6, 64, STREAM.dmel_bins)
  assert set(tracks) == set(reference)
  for key, array in tracks.items():
    assert array.shape == reference[key].shape[1:], key
    assert array.dtype == reference[key].dtype, key


def test_overflow_spills_and_is_counted(tokenizer):
  burst = [Word("model", w, 0.8 + 0.01 * i, 0.85 + 0.01 * i) for i, w in enumerate(WORDS[:6])]
  at_end = [Word("model", w, 1.9, 1.95) for w in WORDS[6:] + WORDS[:6]]
  tracks, stats = featurize.featurize_episode(episode(words=burst + at_end), LAYOUT, tokenizer,
                                              STREAM)
  burst_tokens = [i for w in burst for i in tokenizer.encode(w.text)]
  end_tokens = [i for w in at_end for i in tokenizer.encode(w.text)]
  slots = LAYOUT.count(SlotKind.TEXT_OUT)
  placed = tracks["text_out"].reshape(-1)
  assert placed[3 * slots:3 * slots + len(burst_tokens)].tolist() == burst_tokens  # in order
  assert stats["text_out_spilled_tokens"] >= len(burst_tokens) - slots > 0
  assert placed[8 * slots:].tolist() == end_tokens[:2 * slots]  # the last two micro-turns
  assert stats["text_out_dropped_tokens"] == stats["dropped_at_end"] == len(end_tokens) - 2 * slots
  assert stats["dropped_at_end"] > 0
  assert (placed != tok.SIL).sum() + stats["dropped_at_end"] == len(burst_tokens + end_tokens)


def test_audio_windows_follow_the_timing_rule(tokenizer):
  t = np.arange(3200) / 16000
  burst = (8000 * np.sin(2 * np.pi * 500 * t)).astype(np.int16)
  user, model = np.zeros(32000, np.int16), np.zeros(32000, np.int16)
  user[9600:12800] = burst  # [0.6, 0.8): input window of micro-turn 3
  model[9600:12800] = burst  # spoken during [0.6, 0.8): output of micro-turn 2
  tracks, _ = featurize.featurize_episode(episode(user_audio=user, model_audio=model), LAYOUT,
                                          tokenizer, STREAM)
  heard = tracks["audio_in"].reshape(10, -1).max(axis=1) > 0
  said = tracks["audio_out"].reshape(10, -1).max(axis=1) > 0
  assert heard.tolist() == [t in (3, 4) for t in range(10)]  # 4: first frame looks back 15 ms
  assert said.tolist() == [t in (2, 3) for t in range(10)]
  assert (tracks["audio_out"][-1] == 0).all()  # past the end: silence


def test_window_pads_past_the_end(tokenizer):
  tracks, _ = featurize.featurize_episode(episode(), LAYOUT, tokenizer, STREAM)
  part = featurize.window(tracks, 8, 4)
  assert part["turn"].tolist() == [8, 9, 10, 11]
  assert part["turn_mask"].tolist() == [True, True, False, False]
  assert (part["text_out"][2:] == tok.SIL).all() and (part["text_in"][2:] == tok.PAD).all()
  assert all(part[k].shape[0] == 4 for k in part)
  assert len(featurize.describe_turns(part, tokenizer)) == 2


def test_video_never_uses_a_future_frame():
  times = np.array([0.0, 0.35, 0.4, 1.05])  # 0.4 is the first instant of micro-turn 2
  index, mask = video.frame_indices(times, 7, 200)
  assert mask.all() and index.tolist() == [0, 1, 2, 2, 2, 3, 3]
  index, mask = video.frame_indices(np.array([0.5, 0.3]), 4, 200)  # out of order, late start
  assert mask.tolist() == [False, True, True, True] and index.tolist()[1:] == [1, 0, 0]
  rng = np.random.default_rng(0)
  times = np.sort(rng.uniform(0, 3, 20))
  index, mask = video.frame_indices(times, 15, 200)
  for t in np.flatnonzero(mask):
    assert times[index[t]] < (t + 1) * 0.2
    later = times[(times > times[index[t]]) & (times < (t + 1) * 0.2)]
    assert len(later) == 0  # and it is the newest such frame


def test_video_slots(tokenizer):
  frames = np.zeros((2, 160, 120, 3), np.uint8)
  frames[0, :80] = 200  # top half bright in the first frame
  frames[1] = 50
  ep = episode(frames=frames, frame_times=[0.25, 0.9])
  tracks, _ = featurize.featurize_episode(ep, LAYOUT, tokenizer, STREAM)
  assert tracks["video_mask"].tolist() == [False] + [True] * 9
  assert (tracks["video"][0] == 0).all()
  first = tracks["video"][1]  # 160x160, 4x4 patches of 40: top two rows bright
  assert (first[:8] == 200).all() and (first[8:] == 0).all()
  assert (tracks["video"][4:] == 50).all()


def _motion_stream():
  stream = defaults().stream
  stream.video_motion = True
  return stream


def _irregular_frames():
  """Five frames of distinct brightness: none before 0.25 s, two in one micro-turn (the later is
  seen), none in micro-turns 5-7 (micro-turn 4's frame is seen again)."""
  frames = np.stack([np.full((160, 120, 3), 40 * (i + 1), np.uint8) for i in range(5)])
  return frames, [0.25, 0.45, 0.5, 0.9, 1.7]


def test_video_motion_slots_hold_the_frame_the_previous_micro_turn_saw(tokenizer):
  stream = _motion_stream()
  frames, times = _irregular_frames()
  ep = episode(frames=frames, frame_times=times)
  tracks, _ = featurize.featurize_episode(ep, Layout.from_config(stream), tokenizer, stream)
  plain, _ = featurize.featurize_episode(ep, LAYOUT, tokenizer, STREAM)
  now, before = tracks["video"][..., :3], tracks["video"][..., 3:]
  assert tracks["video"].shape == (*plain["video"].shape[:-1], 6)
  np.testing.assert_array_equal(now, plain["video"])
  brightness = [int(now[t].max()) for t in range(10)]
  assert brightness == [0, 40, 120, 120, 160, 160, 160, 160, 200, 200]
  assert [int(before[t].max()) for t in range(10)] == [0, 40, 40, 120, 120, 160, 160, 160, 160,
                                                       200]  # the first frame: no motion


def test_quiet_marks_the_micro_turns_whose_output_is_heard_in_a_quiet_interval(tokenizer):
  """Micro-turn t's output is heard over [(t + 1) T, (t + 2) T): a quiet interval 0.5-0.9 s is
  heard in micro-turns 1, 2 and 3, one from 1.2 s to 1.3 s in micro-turn 5 alone."""
  ep = episode(annotations={"quiet_s": [[0.5, 0.9], [1.2, 1.3]]})
  tracks, _ = featurize.featurize_episode(ep, LAYOUT, tokenizer, STREAM)
  assert np.flatnonzero(tracks["quiet"]).tolist() == [1, 2, 3, 5]
  assert not featurize.featurize_episode(episode(), LAYOUT, tokenizer, STREAM)[0]["quiet"].any()
  assert not featurize.window(tracks, 5, 10)["quiet"][5:].any()  # padding past the end


def test_user_speaks_marks_the_micro_turns_heard_while_the_user_says_a_word(tokenizer):
  """User words 0.5-0.9 s and 1.2-1.3 s are heard over micro-turns 1, 2, 3 and 5's output; a
  model word marks nothing, and neither does background noise loud enough to read as voiced."""
  noise = np.random.default_rng(0).normal(0, 1000, 32000).astype(np.int16)  # about -30 dB
  ep = episode(words=[Word("user", "hello", 0.5, 0.9), Word("user", "there", 1.2, 1.3),
                      Word("model", "hi", 1.6, 1.8)], user_audio=noise)
  tracks, _ = featurize.featurize_episode(ep, LAYOUT, tokenizer, STREAM)
  assert np.flatnonzero(tracks["user_speaks"]).tolist() == [1, 2, 3, 5]
  assert dmel.voiced(tracks["audio_in"]).all()
  assert not featurize.window(tracks, 5, 10)["user_speaks"][5:].any()  # padding past the end


def test_scene_events_mark_the_first_micro_turn_whose_frame_shows_them(tokenizer):
  """Frames at 0.25, 0.45, 0.5, 0.9 and 1.7 s; micro-turn t sees the newest frame before
  (t + 1) * 0.2 s. An event is marked where the frame seen is first taken at or after it."""
  frames, times = _irregular_frames()
  events = [{"type": "bounce", "time_s": 0.1},  # frame 0.25 s, first seen in micro-turn 1
            {"type": "colour_change", "time_s": 0.47},  # frame 0.5 s, seen in micro-turn 2
            {"type": "typed", "time_s": 0.8, "text": "red"},  # not a scene event
            {"type": "motion_stop", "time_s": 1.2},  # frame 1.7 s, seen in micro-turn 8
            {"type": "bounce", "time_s": 1.9}]  # no frame follows it
  ep = episode(frames=frames, frame_times=times, events=events)
  tracks, _ = featurize.featurize_episode(ep, LAYOUT, tokenizer, STREAM)
  assert np.flatnonzero(tracks["scene_event"]).tolist() == [1, 2, 8]
  still, _ = featurize.featurize_episode(episode(frames=frames, frame_times=times), LAYOUT,
                                         tokenizer, STREAM)
  assert not still["scene_event"].any()
  assert not featurize.window(tracks, 5, 10)["scene_event"][5:].any()  # padding past the end


@pytest.mark.parametrize("motion", [False, True])
def test_the_engine_fills_the_video_slots_as_featurization_does(tokenizer, motion):
  """What a streaming session (evaluation, the server) feeds the model equals what training read
  for the same episode."""
  stream = _motion_stream() if motion else STREAM
  layout = Layout.from_config(stream)
  frames, times = _irregular_frames()
  ep = episode(frames=frames, frame_times=times)
  tracks, _ = featurize.featurize_episode(ep, layout, tokenizer, stream)
  seen = []

  def step(params, state, inputs):
    seen.append({k: inputs[k][0].copy() for k in ("video", "video_mask")})
    return state, {"turn": np.zeros(1, np.int32), **empty_outputs(layout, 1)}

  engine = engine_lib.Engine(engine_lib.Program(
      layout=layout, dmel_spec=dmel.DMelSpec.from_config(stream), vocab_size=80, params=None,
      init_state=lambda batch, seed: None, reset=lambda state, rows, seed: state, step=step),
      batch_size=1)
  row = engine.add("episode")
  for chunk in chunks.episode_chunks(ep, layout, tokenizer):
    engine.step({row: chunk})
  np.testing.assert_array_equal(np.stack([s["video"] for s in seen]), tracks["video"])
  np.testing.assert_array_equal([s["video_mask"] for s in seen], tracks["video_mask"])


def test_resize_and_patchify():
  frame = np.arange(80 * 80 * 3, dtype=np.int64).reshape(80, 80, 3) % 251
  frame = frame.astype(np.uint8)
  patches = video.patchify(frame, 40)
  assert patches.shape == (4, 40, 40, 3)
  assert np.array_equal(patches[1], frame[:40, 40:]) and np.array_equal(patches[2], frame[40:, :40])
  blocks = np.kron(np.arange(4).reshape(2, 2), np.ones((2, 2)))[..., None].repeat(3, -1)
  assert np.array_equal(video.resize(blocks.astype(np.uint8), 2, 2)[..., 0],
                        [[0, 1], [2, 3]])  # area averaging when shrinking
  assert video.resize(np.full((3, 5, 3), 77, np.uint8), 40, 80).min() == 77


def test_malformed_event_names_the_field(tokenizer):
  bad = episode(events=[{"type": "delegate", "time_s": 0.5, "result_words": [{"text": "x"}]}])
  with pytest.raises(InputError, match=r"events\[0\]\.result_words\[0\]\.time_s"):
    featurize.featurize_episode(bad, LAYOUT, tokenizer, STREAM)


def test_results_with_no_slots_to_hold_them_name_the_config_key(tokenizer):
  """A delegate's results with stream.bg_slots = 0 used to be dropped without a word (configs
  derived from the demo's lost them), so the calculator's answer was never seen."""
  ep = episode(events=[{"type": "delegate", "time_s": 0.5, "task": "q",
                        "result_words": [{"text": "blue", "time_s": 0.9}]}])
  stream = defaults().stream
  stream.bg_slots = 0
  with pytest.raises(ConfigError, match=r"stream\.bg_slots: 0, but episode 7 \(test\) has bg"):
    featurize.featurize_episode(ep, Layout.from_config(stream), tokenizer, stream)
