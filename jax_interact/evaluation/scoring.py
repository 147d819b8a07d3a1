"""One scorer per task family of the synthetic suite (SPEC §8; data_pipelines/synthetic.py); the
words and windows they expect are in jax_interact/streams/tasks.py.

A scorer is a pure function of an episode (its annotations, events and user words) and a
system's `Behaviour` (transcripts.py). It returns Observations: for every metric, the samples this
episode contributes (one per turn, pause, bounce, beat, item or episode). `summarize` pools
samples over episodes: a key ending in `_s` holds times and is reported as `<key>_p50_s` and
`<key>_p90_s` (None without samples); any other key is reported as its mean (a rate in [0, 1]).

Latency (SPEC §3): from the event to the wall time of the first answering token, the start of
the output window of the micro-turn holding it. A reply to an event is the first model word
starting at or after the event and before the user's next word (the horizon).

A question that was not answered in its window is counted, for turn_taking and pause_handling,
in `missed_spoke_while_asked` if the system spoke (more than QUIET_TOLERANCE_S) between the
question's first user word and its end (a false start in a pause, an answer before the end, or
talk running on over it), and in `missed_silent` if it said no word from the end until the user
spoke again (or, later, the window closed); a miss in neither came late. Both are shares of all
questions.

Every family also reports:
  score                 the headline in [0, 1] (per family below; the report's bar chart)
  score_se              its standard error over episodes, each episode one cluster of samples
                        (the beats or questions of one episode are not independent draws)
  quiet_violation_rate  fraction of the episode's `quiet_s` intervals in which the model spoke
                        for more than QUIET_TOLERANCE_S (one micro-turn)
  user_wer              word error rate of the streamed user transcript against the user's words
                        (word errors summed over episodes / reference words summed)
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from jax_interact.evaluation import background
from jax_interact.evaluation.transcripts import Behaviour, normalise, user_speech_s
from jax_interact.streams import tasks
from jax_interact.streams.episode import Episode

Observations = dict[str, list[float]]
QUIET_TOLERANCE_S = 0.2
# Per-episode totals that `summarize` turns into one pooled metric each, not a mean of its own.
_PER_EPISODE_SUMS = ("user_word_errors", "user_words", "score_sum", "score_samples")


def _user_speaks_next_s(episode: Episode, after_s: float) -> float:
  """The start of the user's first word after `after_s` (the episode's end if none)."""
  return min((w.start_s for w in episode.user_words() if w.start_s > after_s),
             default=episode.duration_s)


def _reply(episode: Episode, behaviour: Behaviour, event_s: float,
           window_hi_s: float) -> tuple[float | None, bool]:
  """(latency or None, whether the reply starts by `window_hi_s`) of the reply to `event_s`."""
  horizon = _user_speaks_next_s(episode, event_s)
  word = behaviour.first_word(event_s, max(horizon, window_hi_s))
  if word is None:
    return None, False
  return word.start_s - event_s, word.start_s <= window_hi_s


def _question_observations(**others: list[float]) -> Observations:
  return {"takeover": [], "latency_s": [], "missed_spoke_while_asked": [], "missed_silent": [],
          **others}


def _observe_reply(episode: Episode, behaviour: Behaviour, turn: dict, asked_after_s: float,
                   obs: Observations) -> tuple[float, bool]:
  """Adds a question turn's `takeover`, `latency_s` and, where it was missed, why, to `obs`
  (`asked_after_s`: the end of the question before it); returns (end of the question, whether
  the reply started within its window)."""
  heard, (_, hi) = turn["user_end_s"], turn["window_s"]
  latency, took = _reply(episode, behaviour, heard, hi)
  obs["takeover"].append(float(took))
  if latency is not None:
    obs["latency_s"].append(latency)
  asked_from = min(_user_speaks_next_s(episode, asked_after_s), heard)
  obs["missed_spoke_while_asked"].append(float(not took and _spoke(behaviour, asked_from, heard)))
  obs["missed_silent"].append(float(not took and latency is None))
  return heard, took


def _spoke(behaviour: Behaviour, lo_s: float, hi_s: float) -> bool:
  return behaviour.spoken_s(lo_s, hi_s) > QUIET_TOLERANCE_S


def _said(behaviour: Behaviour, lo_s: float, hi_s: float) -> list[str]:
  return [normalise(w.text) for w in behaviour.words if lo_s <= w.start_s < hi_s]


def _number(text: str) -> int | None:
  text = normalise(text)
  if text in tasks.NUMBER_WORDS:
    return tasks.NUMBER_WORDS.index(text)
  return int(text) if text.isdigit() else None


def turn_taking(episode: Episode, behaviour: Behaviour) -> Observations:
  """Per question: `takeover` (reply started within the window), `latency_s` from the end of the
  user's question (or the typed text), `answer_recall` (share of the expected answer's words
  said before the user speaks again). score = takeover."""
  obs = _question_observations(answer_recall=[])
  previous_end = -math.inf
  for turn in episode.annotations["turns"]:
    heard, _ = _observe_reply(episode, behaviour, turn, previous_end, obs)
    said = set(_said(behaviour, heard, _user_speaks_next_s(episode, heard)))
    answer = turn["answer"].split()
    obs["answer_recall"].append(sum(w in said for w in answer) / len(answer))
    previous_end = heard
  obs["score"] = list(obs["takeover"])
  return obs


def pause_handling(episode: Episode, behaviour: Behaviour) -> Observations:
  """Per mid-utterance pause: `false_takeover` (the model spoke in it). Per question: `takeover`
  and `latency_s` at its real end. score per question: no false takeover in its pauses and a
  reply within the window."""
  pauses = [(lo, hi, _spoke(behaviour, lo, hi)) for lo, hi in episode.annotations["pauses_s"]]
  obs = _question_observations(false_takeover=[float(spoke) for _, _, spoke in pauses], score=[])
  previous_end = -math.inf
  for turn in episode.annotations["turns"]:
    heard, took = _observe_reply(episode, behaviour, turn, previous_end, obs)
    respected = not any(spoke for lo, p_hi, spoke in pauses if previous_end <= lo and p_hi <= heard)
    obs["score"].append(float(took and respected))
    previous_end = heard
  return obs


def interruption(episode: Episode, behaviour: Behaviour) -> Observations:
  """`answered` (the long answer started within its window), `stop` (answered, and silent from
  the deadline, STOP_WINDOW_S after the barge-in), `stop_latency_s` (barge-in to the end of the
  model's speech going on after it; no sample when it is silent from the barge-in). score:
  stopped and no speech in the quiet intervals."""
  a = episode.annotations
  barge, deadline = a["barge_in_s"], a["stop_deadline_s"]
  first = a["responses"][0]
  _, answered = _reply(episode, behaviour, first["event_s"], first["window_s"][1])
  interval = next(((lo, hi) for lo, hi in behaviour.active_s if lo < deadline and hi > barge),
                  None)
  stopped = answered and (interval is None or interval[1] <= deadline)
  obs: Observations = {"stop": [float(stopped)], "answered": [float(answered)],
                       "stop_latency_s": [] if interval is None else [interval[1] - barge]}
  quiet = not any(_spoke(behaviour, lo, hi) for lo, hi in a["quiet_s"])
  obs["score"] = [float(stopped and quiet)]
  return obs


def rep_count(episode: Episode, behaviour: Behaviour) -> Observations:
  """RepCount-A: `obo_accuracy` (the last count said is within one of the true count; none said
  counts as 0), `count_mae` (|said - true| / true). Per bounce: `rep_on_time` (its count word
  starts within COUNT_WINDOW_S) and `rep_latency_s`. score = obo_accuracy."""
  a = episode.annotations
  bounces, count = a["bounces_s"], a["count"]
  heard = a["quiet_s"][0][0] if a["quiet_s"] else 0.0
  numbers = [n for n in (_number(w.text) for w in behaviour.words if w.start_s >= heard)
             if n is not None]
  said = numbers[-1] if numbers else 0
  obs: Observations = {"obo_accuracy": [float(abs(said - count) <= 1)],
                       "count_mae": [abs(said - count) / count], "rep_on_time": [],
                       "rep_latency_s": []}
  for i, bounce in enumerate(bounces):
    horizon = bounces[i + 1] + tasks.COUNT_WINDOW_S if i + 1 < len(bounces) else math.inf
    word = behaviour.first_word(bounce, horizon, texts=[tasks.NUMBER_WORDS[i + 1], str(i + 1)])
    on_time = word is not None and word.start_s - bounce <= tasks.COUNT_WINDOW_S
    obs["rep_on_time"].append(float(on_time))
    if word is not None:
      obs["rep_latency_s"].append(word.start_s - bounce)
  obs["score"] = list(obs["obo_accuracy"])
  return obs


def visual_cue(episode: Episode, behaviour: Behaviour) -> Observations:
  """`on_time` (speech starts within the window after the target colour appears), `latency_s`,
  `false_alarm` (the model spoke between the request and the change), `colour_named` (the
  target colour is among the first few words of the reply). score: on time, no false alarm."""
  a = episode.annotations
  change = a["change_s"]
  lo, hi = a["responses"][0]["window_s"]
  heard = a["quiet_s"][0][0] if a["quiet_s"] else 0.0
  false_alarm = _spoke(behaviour, heard, change)
  word = behaviour.first_word(change)
  on_time = word is not None and word.start_s <= hi
  named = word is not None and a["target_colour"] in _said(behaviour, word.start_s,
                                                         word.start_s + tasks.REPLY_WINDOW_S)
  return {"on_time": [float(on_time)], "false_alarm": [float(false_alarm)],
          "colour_named": [float(named)],
          "latency_s": [] if word is None else [word.start_s - change],
          "score": [float(on_time and not false_alarm)]}


def start_stop(episode: Episode, behaviour: Behaviour) -> Observations:
  """Temporal IoU of [model says "start", model says "stop"] with the motion interval (no stop
  said: open to the episode end; no start said: IoU 0): `iou` (score), `iou_at_0.5`, and the
  `start_offset_s` / `stop_offset_s` of the words from the true times."""
  a = episode.annotations
  start, stop = a["interval_s"]
  heard = a["quiet_s"][0][0] if a["quiet_s"] else 0.0
  said_start = behaviour.first_word(heard, texts=[tasks.START_WORD])
  said_stop = (behaviour.first_word(said_start.start_s, texts=[tasks.STOP_WORD])
               if said_start else None)
  iou = 0.0
  if said_start is not None:
    lo = said_start.start_s
    hi = said_stop.start_s if said_stop else episode.duration_s
    overlap = max(0.0, min(hi, stop) - max(lo, start))
    iou = overlap / (max(hi, stop) - min(lo, start))
  return {"iou": [iou], "iou_at_0.5": [float(iou >= 0.5)],
          "start_offset_s": [] if said_start is None else [said_start.start_s - start],
          "stop_offset_s": [] if said_stop is None else [said_stop.start_s - stop],
          "score": [iou]}


def time_speak(episode: Episode, behaviour: Behaviour) -> Observations:
  """Per beat: `beat_on_time` (the reminder word starts in [beat - 0.3, beat + 0.5] s) and
  `beat_error_s` (|start - beat| of the reminder word nearest the beat, within half a period).
  `stopped_on_request`: no reminder word after the user ended the reminders. score =
  beat_on_time."""
  a = episode.annotations
  early, late = tasks.BEAT_WINDOW_S
  half = a["period_s"] / 2
  reminders = [w.start_s for w in behaviour.words
               if normalise(w.text) == tasks.REMINDER_WORD]
  obs: Observations = {"beat_on_time": [], "beat_error_s": []}
  for beat in a["beats_s"]:
    errors = [abs(s - beat) for s in reminders if abs(s - beat) < half]
    obs["beat_on_time"].append(float(any(beat - early <= s <= beat + late for s in reminders)))
    if errors:
      obs["beat_error_s"].append(min(errors))
  after_stop = a["beats_s"][-1] + half if a["beats_s"] else a["stop_request_s"]
  obs["stopped_on_request"] = [float(not any(s > after_stop for s in reminders))]
  obs["score"] = list(obs["beat_on_time"])
  return obs


def live_translation(episode: Episode, behaviour: Behaviour) -> Observations:
  """Per source word: `word_accuracy` (its translation starts within TRANSLATION_LAG_S after the
  source word ends) and `lag_s` (source end to the translation said by the next item's window).
  score = word_accuracy."""
  items = episode.annotations["items"]
  obs: Observations = {"word_accuracy": [], "lag_s": []}
  for i, item in enumerate(items):
    lo, hi = item["window_s"]
    horizon = items[i + 1]["window_s"][1] if i + 1 < len(items) else math.inf
    word = behaviour.first_word(item["source_start_s"], horizon, texts=[item["translation"]])
    obs["word_accuracy"].append(float(word is not None and lo <= word.start_s <= hi))
    if word is not None:
      obs["lag_s"].append(word.start_s - lo)
  obs["score"] = list(obs["word_accuracy"])
  return obs


def delegate(episode: Episode, behaviour: Behaviour) -> Observations:
  """`delegated` (emitted `<delegate>`), `filler_latency_s` (question to first word), and for
  the job replayed from the model's delegation (background.py): `result_correct` (the result
  number said after it arrived), `result_on_time` (speech starts within REPLY_WINDOW_S after the
  result is ready and the user is not speaking), `result_latency_s`, `over_user` (the model
  spoke over the user after the question). score: all of delegated, correct, on time and never
  over the user."""
  a = episode.annotations
  heard = a["responses"][0]["event_s"]
  _, filler_hi = a["responses"][0]["window_s"]
  filler_latency, _ = _reply(episode, behaviour, heard, filler_hi)
  over_user = any(_spoke(behaviour, max(lo, heard), hi)
                  for lo, hi in user_speech_s(episode) if hi > heard)
  obs: Observations = {"delegated": [float(bool(behaviour.delegate_s))],
                       "filler_latency_s": [] if filler_latency is None else [filler_latency],
                       "over_user": [float(over_user)], "result_latency_s": []}
  correct = on_time = False
  results = background.replayed_results(episode, behaviour.delegate_s[0]) \
      if behaviour.delegate_s else []
  if results:
    ready = results[-1][1]
    for lo, hi in user_speech_s(episode):  # a suitable moment: the user is not speaking
      if lo <= ready < hi:
        ready = hi
    answer = normalise(a["result_text"].split()[-1])
    correct = answer in _said(behaviour, results[0][1], math.inf)
    word = behaviour.first_word(ready)
    on_time = word is not None and word.start_s <= ready + tasks.REPLY_WINDOW_S
    if word is not None:
      obs["result_latency_s"].append(word.start_s - ready)
  obs["result_correct"] = [float(correct)]
  obs["result_on_time"] = [float(on_time)]
  obs["score"] = [float(bool(behaviour.delegate_s) and correct and on_time and not over_user)]
  return obs


SCORERS: dict[str, Callable[[Episode, Behaviour], Observations]] = {
    "turn_taking": turn_taking, "pause_handling": pause_handling, "interruption": interruption,
    "rep_count": rep_count, "visual_cue": visual_cue, "start_stop": start_stop,
    "time_speak": time_speak, "live_translation": live_translation, "delegate": delegate,
}


def word_errors(reference: list[str], hypothesis: list[str]) -> int:
  """Levenshtein distance in words (substitutions + deletions + insertions)."""
  previous = list(range(len(hypothesis) + 1))
  for i, ref in enumerate(reference, 1):
    current = [i]
    for j, hyp in enumerate(hypothesis, 1):
      current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp)))
    previous = current
  return previous[-1]


def observe(episode: Episode, behaviour: Behaviour) -> Observations:
  """Everything scored for one episode: its family's scorer plus the shared metrics."""
  if episode.task not in SCORERS:
    raise KeyError(f"no scorer for task {episode.task!r}")
  obs = SCORERS[episode.task](episode, behaviour)
  obs["quiet_violation_rate"] = [float(_spoke(behaviour, lo, hi))
                                 for lo, hi in episode.annotations.get("quiet_s", [])]
  reference = [normalise(w.text) for w in episode.user_words()]
  hypothesis = [normalise(w) for w in behaviour.user_transcript]
  obs["user_word_errors"] = [float(word_errors(reference, hypothesis))]
  obs["user_words"] = [float(len(reference))]
  obs["score_sum"] = [float(sum(obs["score"]))]
  obs["score_samples"] = [float(len(obs["score"]))]
  return obs


def pool(observations: list[Observations]) -> Observations:
  """Samples of many episodes, concatenated per metric."""
  pooled: Observations = {}
  for obs in observations:
    for key, samples in obs.items():
      pooled.setdefault(key, []).extend(samples)
  return pooled


def summarize(obs: Observations) -> dict[str, float | None]:
  """Metric name -> value (module docstring); `user_wer` from the pooled word errors."""
  metrics: dict[str, float | None] = {}
  for key, samples in obs.items():
    if key in _PER_EPISODE_SUMS:
      continue
    values = np.asarray(samples, np.float64)
    if key.endswith("_s"):
      name = key.removesuffix("_s")
      for q in (50, 90):
        metrics[f"{name}_p{q}_s"] = float(np.percentile(values, q)) if values.size else None
    else:
      metrics[key] = float(values.mean()) if values.size else None
  if "user_words" in obs:
    metrics["user_wer"] = user_wer(obs)
  if "score_samples" in obs:
    metrics["score_se"] = clustered_standard_error(obs["score_sum"], obs["score_samples"])
  return metrics


def user_wer(obs: Observations) -> float | None:
  """Word errors summed over the episodes of `obs` / their reference words (None: no episode)."""
  if "user_words" not in obs:
    return None
  return sum(obs["user_word_errors"]) / max(sum(obs["user_words"]), 1.0)


def clustered_standard_error(sums: list[float], counts: list[float]) -> float | None:
  """Standard error of the pooled mean sum(sums) / sum(counts) when each episode contributes
  `counts[i]` samples adding to `sums[i]` (the cluster-robust estimate, episodes as clusters);
  None with fewer than two episodes that have samples."""
  sums_E, counts_E = np.asarray(sums, np.float64), np.asarray(counts, np.float64)
  sums_E, counts_E = sums_E[counts_E > 0], counts_E[counts_E > 0]
  n = len(counts_E)
  if n < 2:
    return None
  mean = sums_E.sum() / counts_E.sum()
  spread = np.sum((sums_E - mean * counts_E) ** 2) * n / (n - 1)
  return float(np.sqrt(spread) / counts_E.sum())


def score_episode(episode: Episode, behaviour: Behaviour) -> dict[str, float | None]:
  """The metrics of one episode."""
  return summarize(observe(episode, behaviour))
