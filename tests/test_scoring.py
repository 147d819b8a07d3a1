"""Scorers on hand-built behaviour whose right scores are known, and the turn-based cascade."""

import dataclasses

import numpy as np
import pytest

from data_pipelines import featurize, synthetic
from jax_interact import config as config_lib
from jax_interact.evaluation import baselines, diagnostics, scoring, transcripts
from jax_interact.inference.engine import TurnOutput
from jax_interact.streams import tokenizer as tokenizer_lib
from jax_interact.streams.dmel import SILENCE_BIN
from jax_interact.streams.episode import Word
from jax_interact.streams.layout import Layout
from jax_interact.streams.tokenizer import SIL

CHUNK_MS = 200
# Delays that miss every window. A whole number of micro-turns keeps the quantised word times
# exactly shifted; time_speak's shift must not land on a later beat (periods of 2, 3 or 4 s).
LATE_S = {"time_speak": 1.0}
DEFAULT_LATE_S = 2.4


@pytest.fixture(scope="module")
def episodes():
  # Episode 0 of turn_taking (seed 0) has a single question, so a late reply is still its reply.
  return {task: synthetic.generate_episode(task, 0, 0) for task in synthetic.TASKS}


def _model_words(episode):
  return [w for w in episode.words if w.speaker == "model"]


def _late(episode, delay_s):
  shift = lambda t: round(t + delay_s, 3)
  words = [dataclasses.replace(w, start_s=shift(w.start_s), end_s=shift(w.end_s))
           for w in _model_words(episode)]
  return transcripts.from_words(words, CHUNK_MS,
                                delegate_s=[shift(e["time_s"]) for e in episode.delegations()])


def _chatter(episode):
  """Talks without a break from the user's first word to the end, over everything."""
  first = min(w.start_s for w in episode.words if w.speaker == "user")
  starts = np.arange(first, episode.duration_s - 0.2, 0.2)
  words = [Word("model", "blah", round(s, 3), round(s + 0.2, 3)) for s in starts]
  return transcripts.from_words(words, CHUNK_MS,
                                delegate_s=[e["time_s"] for e in episode.delegations()])


@pytest.mark.parametrize("task", synthetic.TASKS)
def test_reference_scores_perfectly_and_silence_scores_zero(episodes, task):
  episode = episodes[task]
  perfect = scoring.score_episode(episode, transcripts.reference(episode, CHUNK_MS))
  silent = scoring.score_episode(episode, baselines.silent())
  if task == "start_stop":  # the words come a reaction time after the true times
    assert 0.6 < perfect["score"] < 1.0 and perfect["iou_at_0.5"] == 1.0
  else:
    assert perfect["score"] == 1.0
  assert perfect["quiet_violation_rate"] in (0.0, None)
  assert perfect["user_wer"] == 0.0
  for key, value in perfect.items():
    if key.endswith("_s") and "offset" not in key and "error" not in key:
      assert 0.0 <= value <= 0.6, (key, value)  # prompt: within three micro-turns
  assert silent["score"] == 0.0
  assert silent["user_wer"] == 1.0


@pytest.mark.parametrize("task", synthetic.TASKS)
def test_late_behaviour_fails_the_windows_with_its_latency_measured(episodes, task):
  episode = episodes[task]
  delay = LATE_S.get(task, DEFAULT_LATE_S)
  perfect = scoring.score_episode(episode, transcripts.reference(episode, CHUNK_MS))
  late = scoring.score_episode(episode, _late(episode, delay))
  if task == "rep_count":  # graded as RepCount-A: the final count is right, its timing is not
    assert late["obo_accuracy"] == 1.0 and late["rep_on_time"] == 0.0
  else:
    assert late["score"] < 0.5 * perfect["score"]
  shifted = {"turn_taking": "latency_p50_s", "visual_cue": "latency_p50_s",
             "start_stop": "start_offset_p50_s",
             "live_translation": "lag_p50_s", "pause_handling": "latency_p50_s",
             "delegate": "filler_latency_p50_s"}
  if task in shifted:
    assert late[shifted[task]] == pytest.approx(perfect[shifted[task]] + delay, abs=1e-6)


@pytest.mark.parametrize("task,failed", [("pause_handling", "false_takeover"),
                                         ("interruption", "stop"),
                                         ("delegate", "over_user")])
def test_talking_over_the_user_fails(episodes, task, failed):
  episode = episodes[task]
  scores = scoring.score_episode(episode, _chatter(episode))
  assert scores["score"] == 0.0
  assert scores[failed] == (0.0 if failed == "stop" else 1.0)


def test_a_missed_question_says_whether_it_was_spoken_over_met_with_silence_or_answered_late(
    episodes):
  pause = episodes["pause_handling"]
  (lo, hi), = pause.annotations["pauses_s"]
  answer = pause.annotations["turns"][0]["answer"].split()
  starts = np.arange(lo + 0.05, hi - 0.2, 0.2)
  in_the_pause = transcripts.from_words(
      [Word("model", w, round(s, 3), round(s + 0.2, 3)) for w, s in zip(answer, starts)],
      CHUNK_MS)
  question = episodes["turn_taking"]
  miss = lambda episode, behaviour: {
      k: v for k, v in scoring.score_episode(episode, behaviour).items()
      if k in ("takeover", "missed_spoke_while_asked", "missed_silent")}

  assert miss(pause, in_the_pause) == {"takeover": 0.0, "missed_spoke_while_asked": 1.0,
                                       "missed_silent": 1.0}
  assert miss(question, baselines.silent()) == {"takeover": 0.0, "missed_spoke_while_asked": 0.0,
                                                "missed_silent": 1.0}
  assert miss(question, _late(question, DEFAULT_LATE_S)) == {
      "takeover": 0.0, "missed_spoke_while_asked": 0.0, "missed_silent": 0.0}
  for episode in (pause, question):
    assert miss(episode, transcripts.reference(episode, CHUNK_MS)) == {
        "takeover": 1.0, "missed_spoke_while_asked": 0.0, "missed_silent": 0.0}


def test_interruption_stop_latency_runs_to_the_end_of_speech(episodes):
  episode = episodes["interruption"]
  perfect = scoring.score_episode(episode, transcripts.reference(episode, CHUNK_MS))
  cut = episode.annotations["model_stop_s"]
  going_on = [Word("model", "and", round(cut + 0.2 * i, 3), round(cut + 0.2 * (i + 1), 3))
              for i in range(5)]  # one second more after the cut
  late = scoring.score_episode(episode, transcripts.from_words(
      _model_words(episode) + going_on, CHUNK_MS))
  assert perfect["stop"] == 1.0 and late["stop"] == 0.0
  barge = episode.annotations["barge_in_s"]
  assert late["stop_latency_p50_s"] == pytest.approx(cut + 1.0 - barge, abs=1e-6)
  assert perfect["stop_latency_p50_s"] <= cut - barge


def test_rep_count_is_graded_within_one_rep(episodes):
  episode = episodes["rep_count"]
  count = episode.annotations["count"]
  words = _model_words(episode)
  for dropped, correct in ((1, 1.0), (2, 0.0)):  # stop counting `dropped` reps early
    behaviour = transcripts.from_words(words[:len(words) - dropped], CHUNK_MS)
    scores = scoring.score_episode(episode, behaviour)
    assert scores["obo_accuracy"] == correct
    assert scores["count_mae"] == pytest.approx(dropped / count)


# The response a quiet interval follows, and the cue a good model reacts to with its reaction
# range (synthetic.reply_start_s): time_speak's "stop" ending, start_stop's first video frame of
# the motion.
QUIET_AFTER = {"time_speak": (-1, lambda r: (r["event_s"], synthetic.REACTION_S)),
               "start_stop": (0, lambda r: (synthetic.seen_s(r["event_s"]),
                                            synthetic.SEEN_REACTION_S))}


def test_a_response_at_the_latest_good_reaction_time_breaks_no_quiet_interval():
  later_than_reference = 0
  for task, (which, cue) in QUIET_AFTER.items():
    for index in range(12):
      episode = synthetic.generate_episode(task, index, 0)
      response = episode.annotations["responses"][which]
      delay = max(0.0, round(synthetic.latest_reply_s(*cue(response)) - response["start_s"], 3))
      later_than_reference += delay > scoring.QUIET_TOLERANCE_S
      words = [dataclasses.replace(w, start_s=w.start_s + delay, end_s=w.end_s + delay)
               if w.start_s >= response["start_s"] else w for w in _model_words(episode)]
      scores = scoring.score_episode(episode, transcripts.from_words(words, CHUNK_MS))
      assert scores["quiet_violation_rate"] == 0.0, (task, index)
      lo, hi = episode.annotations["quiet_s"][-1]
      if hi - lo > 0.5:  # and speech after that response's end still breaks the interval
        chatter = Word("model", "now", round(lo + 0.1, 3), round(lo + 0.5, 3))
        scores = scoring.score_episode(episode, transcripts.from_words(words + [chatter],
                                                                       CHUNK_MS))
        assert scores["quiet_violation_rate"] > 0.0, (task, index)
  assert later_than_reference  # some reference reacted early enough to tell the rules apart


def test_a_score_carries_its_standard_error_over_episodes():
  """With one sample an episode (delegate) the standard error is the textbook one over episodes;
  where an episode's samples pass or fail together (all of time_speak's beats, or none) it is
  wider than if every beat were an independent draw; one episode gives none."""
  def scored(task, behaviours):
    pooled = scoring.pool([
        scoring.observe(episode, behave(episode)) for episode, behave in zip(
            [synthetic.generate_episode(task, i, 3) for i in range(len(behaviours))],
            behaviours)])
    return scoring.summarize(pooled), pooled["score"]

  reference = lambda episode: transcripts.reference(episode, CHUNK_MS)
  silent = lambda episode: baselines.silent()
  behaviours = [reference] * 5 + [silent] * 3
  delegate, samples = scored("delegate", behaviours)
  assert len(samples) == 8 and delegate["score"] == 5 / 8
  assert delegate["score_se"] == pytest.approx(np.std(samples, ddof=1) / np.sqrt(8))

  beats, samples = scored("time_speak", behaviours)
  assert len(samples) > 8
  independent = np.sqrt(beats["score"] * (1 - beats["score"]) / len(samples))
  assert beats["score_se"] > 1.2 * independent
  assert scored("time_speak", [reference])[0]["score_se"] is None


def test_user_wer_counts_substitutions_insertions_and_deletions():
  assert scoring.word_errors("a b c d".split(), "a x c d e".split()) == 2
  assert scoring.word_errors("a b".split(), []) == 2


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
  path = tmp_path_factory.mktemp("tok") / "tokenizer.model"
  tokenizer_lib.train_tokenizer(synthetic.vocabulary(), path, 512)
  return tokenizer_lib.Tokenizer.load(path)


def _reference_outputs(episode, tokenizer):
  """The episode's reference streams as the engine would emit them."""
  config = config_lib.load("configs/tiny.py")
  layout = Layout.from_config(config.stream)
  tracks, _ = featurize.featurize_episode(episode, layout, tokenizer, config.stream)
  return layout, [TurnOutput(turn=t, user_transcript=tracks["user_transcript"][t],
                             text_out=tracks["text_out"][t], audio_out=tracks["audio_out"][t],
                             missing_input=False, step_ms=0.0)
                  for t in range(len(tracks["turn"]))]


@pytest.mark.parametrize("task", ["delegate", "live_translation"])
def test_streamed_reference_decodes_to_the_reference_behaviour(episodes, tokenizer, task):
  episode = episodes[task]
  layout, outputs = _reference_outputs(episode, tokenizer)
  streamed = transcripts.from_outputs(outputs, layout, tokenizer)
  expected = transcripts.reference(episode, CHUNK_MS)
  assert streamed.words == expected.words
  assert streamed.delegate_s == expected.delegate_s
  assert streamed.user_transcript == expected.user_transcript
  # Speech activity from the generated audio covers the reference words' intervals.
  for lo, hi in expected.active_s:
    assert streamed.spoken_s(lo, hi) > 0.7 * (hi - lo)
  assert scoring.score_episode(episode, streamed)["score"] == 1.0


def test_turn_based_gate_holds_speech_until_600_ms_of_user_silence(episodes, tokenizer):
  episode = episodes["turn_taking"]
  layout, outputs = _reference_outputs(episode, tokenizer)
  speech = transcripts.user_speech_s(episode)
  # A model that answers while the user is still speaking: every output one second early.
  quiet = dataclasses.replace(outputs[0], text_out=np.full_like(outputs[0].text_out, SIL),
                              audio_out=np.full_like(outputs[0].audio_out, SILENCE_BIN))
  early = [dataclasses.replace(source, turn=t, user_transcript=outputs[t].user_transcript)
           for t, source in enumerate(outputs[5:] + [quiet] * 5)]
  overlaps = lambda b: any(lo < s_hi and hi > s_lo
                           for lo, hi in b.active_s for s_lo, s_hi in speech)
  assert overlaps(transcripts.from_outputs(early, layout, tokenizer))
  gated = baselines.cascade(early, speech, layout.chunk_ms)
  assert [o.turn for o in gated] == list(range(len(outputs)))
  heard = transcripts.from_outputs(gated, layout, tokenizer)
  assert not overlaps(heard)
  for lo, _ in heard.active_s:  # speech starts only after 600 ms of user silence
    assert all(not (lo - baselines.GATE_SILENCE_S + 1e-9 < s_hi <= lo) for _, s_hi in speech)
  said = [w.text for w in transcripts.from_outputs(early, layout, tokenizer).words]
  assert [w.text for w in heard.words] == said  # held and released in order, nothing lost
  assert baselines.gate_changed(early, gated)


def test_the_cascade_does_not_answer_a_question_with_speech_queued_before_it_was_asked(
    episodes, tokenizer):
  """The model speaks from 1.4 s to 3.9 s, one word per micro-turn, and never again. Held while a
  question at 1-2 s ends, its answer plays from 2.4 s, a second behind. A second question,
  spoken at 4-5 s or typed at 3 s, starts before all of it has played; the rest is not a reply
  to that question: a spoken one silences the cascade, and a typed one's reply is what the model
  says from then on."""
  _, outputs = _reference_outputs(episodes["turn_taking"], tokenizer)
  word = len(tokenizer_lib.SPECIAL_PIECES)
  speaking = range(7, 20)  # micro-turns of 200 ms: 1.4 s to 4.0 s
  model = [dataclasses.replace(
      outputs[0], turn=t, audio_out=np.full_like(outputs[0].audio_out, SILENCE_BIN),
      text_out=np.full_like(outputs[0].text_out, word + t if t in speaking else SIL))
      for t in range(40)]
  heard = lambda gated: {o.turn: int(o.text_out[0]) - word
                         for o in gated if np.any(o.text_out != SIL)}
  spoken_again = baselines.cascade(model, [(1.0, 2.0), (4.0, 5.0)], CHUNK_MS)
  assert heard(spoken_again) == {t: t - 5 for t in range(12, 20)}
  typed_at_3_s = baselines.cascade(model, [(1.0, 2.0)], CHUNK_MS,
                                   baselines.GivenTurns(typed_s=(3.0,)))
  assert heard(typed_at_3_s) == {12: 7, 13: 8, 14: 9, 15: 15, 16: 16, 17: 17, 18: 18, 19: 19}


ANSWERED_THROUGH_THE_CASCADE = ("turn_taking", "pause_handling", "interruption", "delegate")
SAID_UNPROMPTED = ("rep_count", "start_stop", "time_speak", "live_translation")


def _through_the_cascade(episode, tokenizer, given=True):
  """(score of the reference streams, score of them as the turn-based cascade plays them)."""
  layout, outputs = _reference_outputs(episode, tokenizer)
  reference = transcripts.from_outputs(outputs, layout, tokenizer)
  gated = (baselines.turn_based(outputs, episode, reference, CHUNK_MS) if given
           else baselines.cascade(outputs, transcripts.user_speech_s(episode), CHUNK_MS))
  heard = dataclasses.replace(transcripts.from_outputs(gated, layout, tokenizer),
                              delegate_s=reference.delegate_s)
  return (scoring.score_episode(episode, reference)["score"],
          scoring.score_episode(episode, heard)["score"])


@pytest.mark.parametrize("task", synthetic.TASKS)
def test_the_turn_based_cascade_says_only_its_replies_to_turns_it_is_given(tokenizer, task):
  """Questions (spoken or typed), a barge-in's end and a background result each give the cascade
  a turn, so the reference's answers pass it as they are. Counts, beats, translations and calls
  of what is seen come when no turn awaits a reply, and are dropped; a colour change soon after
  the instruction is still called within the reply to it."""
  scores = [_through_the_cascade(synthetic.generate_episode(task, index, 3), tokenizer)
            for index in range(4)]
  if task in ANSWERED_THROUGH_THE_CASCADE:
    assert all(heard == said for said, heard in scores)
  elif task in SAID_UNPROMPTED:
    assert all(heard < said for said, heard in scores)
  else:
    assert task == "visual_cue"
    assert any(heard < said for said, heard in scores)
    assert any(heard == said for said, heard in scores)


@pytest.mark.parametrize("task, index", [("turn_taking", 2), ("delegate", 0), ("delegate", 3)])
def test_typed_text_and_a_background_result_give_the_cascade_a_turn(tokenizer, task, index):
  """Episode 2 of turn_taking (seed 3) has a typed question, delegate's episode 0 a typed one
  and its episode 3 a result arriving while nobody speaks: without those turns the cascade
  would not answer them."""
  episode = synthetic.generate_episode(task, index, 3)
  given = baselines.given_turns(episode, transcripts.reference(episode, CHUNK_MS))
  assert given.typed_s or given.results_s
  said, heard = _through_the_cascade(episode, tokenizer)
  _, heard_ungiven = _through_the_cascade(episode, tokenizer, given=False)
  assert heard == said == 1.0
  assert heard_ungiven < said


def test_teacher_forced_word_accuracy_counts_the_reference_words_only():
  """A word said where the reference is silent is a quiet-accuracy matter, not a word error;
  each reference word counts once, right only when the decision is that word."""
  word = len(tokenizer_lib.SPECIAL_PIECES)
  targets_TK = np.array([[SIL, word], [word + 1, tokenizer_lib.PAD], [SIL, SIL]])
  words_TK = np.array([[word + 2, word], [word + 3, word + 1], [word, word]])
  assert diagnostics.word_accuracy(words_TK, targets_TK) == {"tf_word_accuracy": [1.0, 0.0]}


def test_teacher_forced_answer_accuracy_counts_the_answer_after_it_arrived():
  """Only slots whose reference is a piece of the result's answer count, and only from the
  micro-turn its last word arrived in (the same number said earlier, as an operand, does not)."""
  word = len(tokenizer_lib.SPECIAL_PIECES)
  answer, operand = word + 5, word + 6
  annotations = {"result_text": "7 times 9 is 63", "result_arrival_s": [0.5, 0.65]}
  encode = {"63": [answer]}.__getitem__
  targets_TK = np.array([[answer, SIL], [operand, SIL], [SIL, SIL], [answer, SIL],
                         [operand, answer]])
  words_TK = np.array([[answer, SIL], [operand, SIL], [SIL, SIL], [answer, SIL], [operand, word]])
  assert diagnostics.answer_accuracy(words_TK, targets_TK, annotations, encode, 200) == {
      "tf_answer_accuracy": [1.0, 0.0]}
  assert diagnostics.answer_accuracy(words_TK, targets_TK, {}, encode, 200) == {}


def test_a_false_start_that_goes_on_fails_its_quiet_micro_turns_and_its_episode_once():
  """Quiet interval 0.4-1.2 s: micro-turns 1-4 speak into it (output windows 0.4-1.2 s at
  200 ms). A start at micro-turn 2 that goes on for three fails three of them and the episode
  once; an episode without quiet intervals has no `quiet_kept` sample."""
  speaks_T = np.array([False, False, True, True, True, False, False])
  obs = diagnostics.decision_accuracy(speaks_T, speaks_T, {"quiet_s": [[0.4, 1.2]]}, 200,
                                      "free_")
  assert obs["free_quiet_accuracy"] == [1.0, 0.0, 0.0, 0.0]
  assert obs["free_quiet_kept"] == [0.0]
  around_T = np.array([True, False, False, False, False, True, True])
  kept = diagnostics.decision_accuracy(around_T, around_T, {"quiet_s": [[0.4, 1.2]]}, 200, "free_")
  assert kept["free_quiet_kept"] == [1.0]
  assert diagnostics.decision_accuracy(speaks_T, speaks_T, {}, 200, "tf_")["tf_quiet_kept"] == []
