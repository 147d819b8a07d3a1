"""The synthetic interaction suite (SPEC §8): the default training data and the benchmark.

`generate_episode(task, index, seed)` writes one scripted interaction of 6-20 s. The user track
is eSpeak speech from a randomised user voice plus background noise; the model track is what a
good interaction model would say, in `MODEL_VOICE`, timed as it could be: never before the first
output that can follow the input micro-turn in which it heard or saw the cue (SPEC §3 timing
rule), and the words and windows it keeps to are the ones the scorers expect
(jax_interact/streams/tasks.py). Every task has a video (a distractor scene when the task does not
use it).

Annotations shared by all tasks (what scoring needs, times in seconds from the episode start):
  responses: [{"text", "event_s", "window_s": [lo, hi], "start_s"}] each model utterance: the
             cue it answers, the window its first word should start in, and when it did here.
  quiet_s:   [[lo, hi], ...] intervals where the model must not start speaking.
Each family adds its own facts (see the `_<task>` functions).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import scipy.signal

from data_pipelines import procedural_video
from data_pipelines.speech import (
  MODEL_VOICE,
  TRANSLATION_LANGUAGES,
  USER_VOICES,
  Utterance,
  Voice,
  synthesize,
)
from jax_interact.errors import InputError
from jax_interact.streams import timing
from jax_interact.streams.episode import Episode, Word
from jax_interact.streams.tasks import (
  BEAT_WINDOW_S,
  COUNT_WINDOW_S,
  NUMBER_WORDS,
  REMINDER_WORD,
  REPLY_WINDOW_S,
  START_WORD,
  STOP_WINDOW_S,
  STOP_WORD,
  TRANSLATION_LAG_S,
)
from jax_interact.streams.timing import SAMPLE_RATE

TASKS = ("turn_taking", "pause_handling", "interruption", "rep_count", "visual_cue", "start_stop",
         "time_speak", "live_translation", "delegate")

MIN_DURATION_S, MAX_DURATION_S = 6.0, 20.0
# What a seed generates: bumped whenever its episodes or their annotations change, so that a
# dataset cached by an older generator is refused, not reused (data_pipelines/generate.py).
SUITE_VERSION = 2  # 2: the quiet interval after a response starts at the latest good end
# A good model's reaction delay (low, high) to something heard complete, and to something seen
# (from the first video frame that shows it).
REACTION_S, SEEN_REACTION_S = (0.2, 0.5), (0.1, 0.3)
TYPED_PROBABILITY = 0.3  # chance that a request is typed rather than spoken
MODEL_GAIN = 0.8

QUESTIONS = (
    ("what colour is the sky", "the sky is blue"),
    ("how many legs does a spider have", "a spider has eight legs"),
    ("what is the capital of france", "the capital of france is paris"),
    ("what do bees make", "bees make honey"),
    ("how many days are in a week", "there are seven days in a week"),
    ("what colour is grass", "grass is green"),
    ("what is the opposite of hot", "the opposite of hot is cold"),
    ("which animal says moo", "a cow says moo"),
    ("what do you call frozen water", "frozen water is called ice"),
    ("how many hours are in a day", "there are twenty four hours in a day"),
    ("what is the largest ocean", "the pacific is the largest ocean"),
    ("what comes after monday", "tuesday comes after monday"),
    ("can you say hello", "hello there"),
    ("how are you today", "i am doing well thank you"),
    ("where does the sun rise", "the sun rises in the east"),
    ("how many sides does a triangle have", "a triangle has three sides"),
    ("what season comes after winter", "spring comes after winter"),
    ("what do cats like to drink", "cats like to drink milk"),
)
LONG_ANSWERS = (
    ("tell me about the ocean", ("the ocean covers most of our planet and it is home to whales "
     "and fish and coral reefs and in many places it is deeper than the tallest mountains")),
    ("tell me a story about a cat", ("once upon a time a small grey cat lived on a farm and every "
     "morning she walked to the river to watch the fish jump out of the water")),
    ("how do plants grow", ("plants take in water through their roots and they use the light "
     "of the sun to turn air and water into sugar which helps them grow tall and strong")),
    ("describe a busy city", ("a busy city is full of people walking to work and cars waiting "
     "at traffic lights and the streets are loud from early morning until late at night")),
    ("what is the weather like in summer", ("in summer the days are long and warm and the sun "
     "stays up late so many people go to the beach or have picnics in the park")),
)
BARGE_INS = ("stop", "wait", "hold on", "okay that is enough", "sorry stop please")
PAUSE_FILLER = "um"
COUNT_INSTRUCTIONS = ("count the bounces", "please count how many times the ball bounces",
                      "can you count the bounces for me")
CUE_COLOURS = ("red", "green", "blue", "yellow")
CUE_INSTRUCTIONS = ("tell me when the square turns {colour}",
                    "let me know when the square becomes {colour}",
                    "say when the square is {colour}")
CUE_ANSWERS = ("it is {colour} now", "now it turned {colour}", "the square is {colour}")
START_STOP_INSTRUCTIONS = ("say start when it starts moving and stop when it stops",
                           "tell me when it starts moving and when it stops")
REMINDER_PERIODS_S = (2, 3, 4)
REMINDER_INSTRUCTIONS = ("remind me every {n} seconds", "say now every {n} seconds please",
                         "give me a signal every {n} seconds")
ACKNOWLEDGEMENT = "okay"
END_REMINDERS = ("thank you that is enough", "okay you can stop now", "stop please")
TRANSLATION_INSTRUCTIONS = ("translate into {language} please", "say each word in {language}")
DICTIONARY = {  # english: translations in the order of TRANSLATION_LANGUAGES
    "cat": ("gato", "chat"), "dog": ("perro", "chien"), "house": ("casa", "maison"),
    "water": ("agua", "eau"), "bread": ("pan", "pain"), "apple": ("manzana", "pomme"),
    "book": ("libro", "livre"), "red": ("rojo", "rouge"), "green": ("verde", "vert"),
    "sun": ("sol", "soleil"), "moon": ("luna", "lune"), "tree": ("árbol", "arbre"),
    "car": ("coche", "voiture"), "hand": ("mano", "main"), "friend": ("amigo", "ami"),
    "school": ("escuela", "école"), "milk": ("leche", "lait"), "fish": ("pez", "poisson"),
    "bird": ("pájaro", "oiseau"), "door": ("puerta", "porte"), "window": ("ventana", "fenêtre"),
    "night": ("noche", "nuit"), "day": ("día", "jour"), "city": ("ciudad", "ville"),
    "music": ("música", "musique"), "chair": ("silla", "chaise"), "table": ("mesa", "table"),
    "sea": ("mar", "mer"), "flower": ("flor", "fleur"), "cheese": ("queso", "fromage"),
}
ARITHMETIC = {  # spoken operator: (python function, range of operands)
    "plus": (lambda a, b: a + b, (10, 99)),
    "minus": (lambda a, b: a - b, (10, 99)),
    "times": (lambda a, b: a * b, (2, 30)),
}
DELEGATE_QUESTION = "what is {a} {op} {b}"
DELEGATE_RESULT = "{a} {op} {b} is {result}"
FILLERS = ("let me check", "one moment please", "let me work that out")
WAITING_REMARKS = ("take your time", "no rush", "i think it is a big number")


@dataclasses.dataclass
class _Track:
  """One speaker's audio clips and timed words on the episode's time axis."""
  speaker: str
  clips: list[tuple[int, np.ndarray]] = dataclasses.field(default_factory=list)
  words: list[Word] = dataclasses.field(default_factory=list)

  def place(self, utterance: Utterance, first_word_s: float, gain: float,
            cut_s: float | None = None) -> list[Word]:
    """Adds the utterance so its first word starts at `first_word_s`, silenced from `cut_s`."""
    offset_s = first_word_s - utterance.words[0].start_s
    start = round(offset_s * SAMPLE_RATE)
    if start < 0:
      raise ValueError(f"utterance placed before the episode start ({offset_s:.3f} s)")
    audio = utterance.audio * gain
    words = [Word(self.speaker, w.text, round(offset_s + w.start_s, 3),
                  round(offset_s + w.end_s, 3)) for w in utterance.words]
    if cut_s is not None:
      audio = audio[:max(round((cut_s - offset_s) * SAMPLE_RATE), 0)].copy()
      fade = min(len(audio), SAMPLE_RATE // 100)
      audio[len(audio) - fade:] *= np.linspace(1, 0, fade, dtype=np.float32)
      words = [dataclasses.replace(w, end_s=min(w.end_s, round(cut_s, 3)))
               for w in words if w.start_s < cut_s]
    self.clips.append((start, audio))
    self.words += words
    return words

  def end_s(self) -> float:
    return max((start + len(audio) for start, audio in self.clips), default=0) / SAMPLE_RATE

  def mix(self, num_samples: int) -> np.ndarray:
    out = np.zeros(num_samples, np.float32)
    for start, audio in self.clips:
      end = min(num_samples, start + len(audio))
      out[start:end] += audio[:end - start]
    return out


class _Script:
  """Builds one episode: who says or types what when, events and annotations."""

  def __init__(self, rng: np.random.Generator):
    self.rng = rng
    base = USER_VOICES[rng.integers(len(USER_VOICES))]
    self.user_voice = dataclasses.replace(
        base, rate_wpm=int(base.rate_wpm + rng.integers(-20, 21)),
        pitch=int(np.clip(base.pitch + rng.integers(-15, 16), 0, 100)))
    self.user_gain = rng.uniform(0.4, 1.0)
    self.user, self.model = _Track("user"), _Track("model")
    self.events: list[dict] = []
    self.annotations: dict = {"responses": [], "quiet_s": []}
    self.min_end_s = 0.0  # the episode lasts at least this long (to observe what follows)

  def opening_s(self) -> float:
    return self.rng.uniform(0.3, 1.2)

  def choice(self, options):
    return options[self.rng.integers(len(options))]

  def user_says(self, text: str, start_s: float) -> tuple[float, float]:
    """Speaks `text` from `start_s`; returns the first word's start and the last word's end."""
    words = self.user.place(synthesize(text, self.user_voice), start_s, self.user_gain)
    return words[0].start_s, words[-1].end_s

  def user_asks(self, text: str, start_s: float) -> tuple[bool, float]:
    """Says or (sometimes) types `text`; returns whether it was typed and when it was complete."""
    if self.rng.random() < TYPED_PROBABILITY:
      self.events.append({"type": "typed", "time_s": round(start_s, 3), "text": text})
      return True, round(start_s, 3)
    return False, self.user_says(text, start_s)[1]

  def model_says(self, text: str, start_s: float, event_s: float, window_s: tuple[float, float],
                 voice: Voice = MODEL_VOICE, cut_s: float | None = None) -> float:
    """The model answers the cue at `event_s`; returns the end of its last word."""
    words = self.model.place(synthesize(text, voice), start_s, MODEL_GAIN, cut_s)
    self.annotations["responses"].append({
        "text": " ".join(w.text for w in words), "event_s": round(event_s, 3),
        "window_s": [round(window_s[0], 3), round(window_s[1], 3)], "start_s": words[0].start_s})
    return words[-1].end_s

  def model_replies(self, text: str, heard_s: float) -> float:
    """A prompt answer to something complete at `heard_s`; returns the end of its last word."""
    return self.model_says(text, reply_start_s(self.rng, heard_s), heard_s,
                           (heard_s, heard_s + REPLY_WINDOW_S))

  def quiet(self, lo_s: float, hi_s: float) -> None:
    if hi_s > lo_s:
      self.annotations["quiet_s"].append([round(lo_s, 3), round(hi_s, 3)])

  def quiet_after(self, said_s: tuple[float, float], latest_start_s: float,
                  until_s: float) -> None:
    """Quiet to `until_s` once the response said over `said_s` (start, end) is over, had it
    started as late as a good model may start it (`latest_start_s`): the reference's reaction
    delay is one draw, and a good model that reacts later is not speaking out of turn."""
    start_s, end_s = said_s
    self.quiet(end_s + max(0.0, latest_start_s - start_s), until_s)


def _earliest_reply_s(heard_s: float) -> float:
  """The first output wall time after the input micro-turn holding `heard_s` (SPEC §3: out_t
  covers [(t+1)T, (t+2)T))."""
  turn = timing.first_answer_turn(heard_s, timing.CHUNK_MS)
  return timing.output_window_s(turn, timing.CHUNK_MS)[0]


def reply_start_s(rng: np.random.Generator, heard_s: float,
                  reaction_s: tuple[float, float] = REACTION_S) -> float:
  """When a good model starts reacting to something complete at `heard_s`: a random reaction
  delay in `reaction_s` (low, high), no earlier than the first output window that can react."""
  return max(_earliest_reply_s(heard_s), heard_s + rng.uniform(*reaction_s))


def latest_reply_s(heard_s: float, reaction_s: tuple[float, float] = REACTION_S) -> float:
  """The latest a good model (`reply_start_s` with the same `reaction_s`) starts reacting."""
  return max(_earliest_reply_s(heard_s), heard_s + reaction_s[1])


def seen_s(event_s: float) -> float:
  """Time of the first video frame taken after a visual event at `event_s`."""
  _, next_frame_s = timing.input_window_s(timing.input_turn(event_s, timing.CHUNK_MS),
                                          timing.CHUNK_MS)
  return next_frame_s


VideoFn = Callable[[float], np.ndarray]  # duration_s -> uint8 [F, H, W, 3]


def _turn_taking(s: _Script) -> VideoFn | None:
  """Questions (spoken or typed) answered promptly. Facts: `turns`."""
  turns, t = [], s.opening_s()
  for _ in range(s.rng.integers(1, 4)):
    if t > 11.0:
      break
    question, answer = s.choice(QUESTIONS)
    typed, heard = s.user_asks(question, t)
    end = s.model_replies(answer, heard)
    turns.append({"question": question, "typed": typed, "user_end_s": heard, "answer": answer,
                  "window_s": [heard, round(heard + REPLY_WINDOW_S, 3)]})
    t = end + s.rng.uniform(0.6, 2.0)
  s.annotations["turns"] = turns
  return None


def _pause_handling(s: _Script) -> VideoFn | None:
  """Questions with pauses mid-utterance; the model waits for the end. Facts: `pauses_s`,
  `turns`."""
  turns, t = [], s.opening_s()
  for _ in range(s.rng.integers(1, 3)):
    if t > 9.0:
      break
    question, answer = s.choice(QUESTIONS)
    words = question.split()
    num_pauses = min(len(words) - 1, s.rng.integers(1, 3))
    cuts = np.sort(s.rng.choice(np.arange(1, len(words)), size=num_pauses, replace=False))
    parts = [" ".join(p) for p in np.split(np.array(words), cuts)]
    for i, part in enumerate(parts):
      if i < len(parts) - 1 and s.rng.random() < 0.3:
        part = f"{part} {PAUSE_FILLER}"
      _, end = s.user_says(part, t)
      if i < len(parts) - 1:
        t = end + s.rng.uniform(0.8, 2.0)
        s.quiet(end, t)
    heard = end
    t = s.model_replies(answer, heard) + s.rng.uniform(0.6, 2.0)
    turns.append({"question": question, "user_end_s": heard, "answer": answer,
                  "window_s": [heard, round(heard + REPLY_WINDOW_S, 3)]})
  s.annotations["pauses_s"] = list(s.annotations["quiet_s"])
  s.annotations["turns"] = turns
  return None


def _interruption(s: _Script) -> VideoFn | None:
  """The user barges in while the model talks; it stops in time, then maybe answers a new
  question. Facts: `barge_in_s`, `stop_deadline_s`, `model_stop_s`."""
  request, long_answer = s.choice(LONG_ANSWERS)
  _, heard = s.user_says(request, s.opening_s())
  speech = synthesize(long_answer, MODEL_VOICE)
  start = reply_start_s(s.rng, heard)
  speaking_s = speech.words[-1].start_s - speech.words[0].start_s
  barge_in = start + s.rng.uniform(1.0, min(3.5, speaking_s - 0.6))
  barge_start, barge_end = s.user_says(s.choice(BARGE_INS), barge_in)
  cut = reply_start_s(s.rng, barge_start, (0.15, 0.35))
  s.model_says(long_answer, start, heard, (heard, heard + REPLY_WINDOW_S), cut_s=cut)
  deadline = barge_start + STOP_WINDOW_S
  quiet_until = barge_end
  if s.rng.random() < 0.7:
    question, answer = s.choice(QUESTIONS)
    _, quiet_until = s.user_says(question, barge_end + s.rng.uniform(0.4, 1.0))
    s.model_replies(answer, quiet_until)
  s.quiet(deadline, quiet_until)
  s.annotations.update(barge_in_s=barge_start, stop_deadline_s=round(deadline, 3),
                       model_stop_s=round(cut, 3))
  return None


def _rep_count(s: _Script) -> VideoFn:
  """A ball bounces; the model says each count shortly after each bounce. Facts: `bounces_s`,
  `count`."""
  _, heard = s.user_says(s.choice(COUNT_INSTRUCTIONS), s.opening_s())
  gaps = s.rng.uniform(1.1, 1.8, size=s.rng.integers(2, len(NUMBER_WORDS) - 1))
  bounces = heard + s.rng.uniform(0.8, 1.8) + np.concatenate([[0.0], np.cumsum(gaps)])
  bounces = np.round(bounces[bounces < MAX_DURATION_S - 2.0], 3)
  free_s = 0.0
  for i, bounce in enumerate(bounces):
    start = max(reply_start_s(s.rng, seen_s(bounce), SEEN_REACTION_S), free_s + 0.05)
    free_s = s.model_says(NUMBER_WORDS[i + 1], start, bounce, (bounce, bounce + COUNT_WINDOW_S))
    s.events.append({"type": "bounce", "time_s": float(bounce)})
  s.quiet(heard, float(bounces[0]))
  s.min_end_s = float(bounces[-1]) + 1.0
  s.annotations.update(bounces_s=bounces.tolist(), count=len(bounces))
  colour = s.choice(sorted(procedural_video.COLOURS))
  return lambda duration_s: procedural_video.bouncing_ball(s.rng, duration_s, bounces, colour)


def _visual_cue(s: _Script) -> VideoFn:
  """A square changes colour a few times; the model speaks only when it takes the asked colour.
  Facts: `target_colour`, `change_s`, `distractor_changes_s`."""
  target = s.choice(CUE_COLOURS)
  _, heard = s.user_says(s.choice(CUE_INSTRUCTIONS).format(colour=target), s.opening_s())
  change = heard + s.rng.uniform(1.5, 6.0)
  others = [c for c in procedural_video.COLOURS if c != target]
  changes, t = [(0.0, s.choice(others))], s.rng.uniform(0.6, 1.6)
  while t < change - 0.6:
    changes.append((round(t, 3), s.choice([c for c in others if c != changes[-1][1]])))
    t += s.rng.uniform(0.8, 2.0)
  change = round(change, 3)
  changes.append((change, target))
  for time_s, colour in changes[1:]:
    s.events.append({"type": "colour_change", "time_s": time_s, "colour": colour})
  answer = s.choice(CUE_ANSWERS).format(colour=target)
  s.model_says(answer, reply_start_s(s.rng, seen_s(change), SEEN_REACTION_S), change,
               (change, change + REPLY_WINDOW_S))
  s.quiet(heard, change)
  s.annotations.update(target_colour=target, change_s=change,
                       distractor_changes_s=[t for t, _ in changes[1:-1]])
  return lambda duration_s: procedural_video.colour_changes(s.rng, duration_s, changes)


def _start_stop(s: _Script) -> VideoFn:
  """An object moves during one interval; the model says start and stop. Facts: `interval_s`
  (ground truth for temporal IoU)."""
  _, heard = s.user_says(s.choice(START_STOP_INSTRUCTIONS), s.opening_s())
  start = round(heard + s.rng.uniform(0.8, 3.0), 3)
  stop = round(start + s.rng.uniform(1.5, 5.0), 3)
  said_start = reply_start_s(s.rng, seen_s(start), SEEN_REACTION_S)
  said_end = s.model_says(START_WORD, said_start, start, (start, start + REPLY_WINDOW_S))
  s.model_says(STOP_WORD, reply_start_s(s.rng, seen_s(stop), SEEN_REACTION_S), stop,
               (stop, stop + REPLY_WINDOW_S))
  s.quiet(heard, start)
  s.quiet_after((said_start, said_end), latest_reply_s(seen_s(start), SEEN_REACTION_S), stop)
  s.events += [{"type": "motion_start", "time_s": start}, {"type": "motion_stop", "time_s": stop}]
  s.annotations["interval_s"] = [start, stop]
  return lambda duration_s: procedural_video.start_stop(s.rng, duration_s, start, stop)


def _time_speak(s: _Script) -> VideoFn | None:
  """"Remind me every N seconds" (spoken or typed): the model says `now` on each beat until it
  has heard the user end it. Facts: `period_s`, `beats_s`, `cancelled_beat_s`, `stop_request_s`."""
  period = int(s.choice(REMINDER_PERIODS_S))
  request = s.choice(REMINDER_INSTRUCTIONS).format(n=NUMBER_WORDS[period])
  typed, heard = s.user_asks(request, s.opening_s())
  s.model_replies(ACKNOWLEDGEMENT, heard)
  max_beats = max(1, int((MAX_DURATION_S - 2.0 - heard) // period) - 2)
  last_planned = heard + period * min(s.rng.integers(2, 6), max_beats)
  stop_start, stop_end = s.user_says(s.choice(END_REMINDERS),
                                     last_planned + s.rng.uniform(0.45, 0.7))
  acknowledge_s = reply_start_s(s.rng, stop_end)
  beats = heard + period * np.arange(1, math.ceil((acknowledge_s - heard) / period))
  free_s = 0.0
  for beat in beats:
    free_s = s.model_says(REMINDER_WORD, beat, heard,
                          (beat - BEAT_WINDOW_S[0], beat + BEAT_WINDOW_S[1]))
  after_last_beat_s = free_s + 0.1
  said_start = max(acknowledge_s, after_last_beat_s)
  said_end = s.model_says(ACKNOWLEDGEMENT, said_start, stop_end,
                          (stop_end, stop_end + REPLY_WINDOW_S))
  cancelled = beats[-1] + period
  s.quiet_after((said_start, said_end), max(latest_reply_s(stop_end), after_last_beat_s),
                cancelled + BEAT_WINDOW_S[1])
  s.min_end_s = cancelled + BEAT_WINDOW_S[1]
  s.annotations.update(period_s=period, typed=typed, beats_s=np.round(beats, 3).tolist(),
                       cancelled_beat_s=round(float(cancelled), 3), stop_request_s=stop_start)
  return None


def _live_translation(s: _Script) -> VideoFn | None:
  """A stream of words, each translated while the user goes on. Facts: `language`, `items`."""
  language = s.choice(sorted(TRANSLATION_LANGUAGES))
  voice = dataclasses.replace(MODEL_VOICE, name=TRANSLATION_LANGUAGES[language])
  column = list(TRANSLATION_LANGUAGES).index(language)
  _, heard = s.user_says(s.choice(TRANSLATION_INSTRUCTIONS).format(language=language),
                         s.opening_s())
  t, free_s, items = heard + s.rng.uniform(0.6, 1.2), 0.0, []
  for source in s.rng.permutation(sorted(DICTIONARY))[:s.rng.integers(5, 11)]:
    if t > MAX_DURATION_S - 3.5:
      break
    translation = DICTIONARY[source][column]
    start, end = s.user_says(str(source), t)
    free_s = s.model_says(translation, max(reply_start_s(s.rng, end, (0.15, 0.4)), free_s + 0.1),
                          end, (end, end + TRANSLATION_LAG_S), voice)
    items.append({"source": str(source), "translation": translation, "source_start_s": start,
                  "source_end_s": end, "window_s": [end, round(end + TRANSLATION_LAG_S, 3)]})
    t = end + s.rng.uniform(0.3, 0.9)
  s.annotations.update(language=language, items=items)
  return None


def _delegate(s: _Script) -> VideoFn | None:
  """An arithmetic question for a calculator: filler, `<delegate>`, the result streams back after
  a random delay and is voiced when the user is not speaking. Facts: `question`, `filler`,
  `delegate_s`, `result_text`, `result_arrival_s`, `user_speaking_s`, `window_s`."""
  op = s.choice(sorted(ARITHMETIC))
  compute, (low, high) = ARITHMETIC[op]
  a, b = sorted(int(x) for x in s.rng.integers(low, high + 1, size=2))[::-1]
  question = DELEGATE_QUESTION.format(a=a, op=op, b=b)
  typed, heard = s.user_asks(question, s.opening_s())
  filler = s.choice(FILLERS)
  delegate_s = round(reply_start_s(s.rng, heard), 3)
  filler_end = s.model_says(filler, delegate_s, heard, (heard, heard + REPLY_WINDOW_S))
  result_text = DELEGATE_RESULT.format(a=a, op=op, b=b, result=compute(a, b))
  arrivals = delegate_s + s.rng.uniform(1.0, 4.0) + np.cumsum(
      np.concatenate([[0.0], s.rng.uniform(0.05, 0.2, size=len(result_text.split()) - 1)]))
  arrivals = np.round(arrivals, 3)
  s.events.append({"type": "delegate", "time_s": delegate_s, "task": question,
                   "result_words": [{"text": w, "time_s": float(t)}
                                    for w, t in zip(result_text.split(), arrivals)]})
  ready, speaking = float(arrivals[-1]), []
  if s.rng.random() < 0.5:
    remark_start = max(filler_end + 0.3, ready - s.rng.uniform(0.2, 1.0))
    speaking = list(s.user_says(s.choice(WAITING_REMARKS), remark_start))
    s.quiet(*speaking)
    ready = max(ready, speaking[1])
  s.model_says(result_text, reply_start_s(s.rng, ready), ready, (ready, ready + REPLY_WINDOW_S))
  s.annotations.update(question=question, typed=typed, filler=filler, delegate_s=delegate_s,
                       result_text=result_text, result_arrival_s=arrivals.tolist(),
                       user_speaking_s=speaking, window_s=[ready, round(ready + REPLY_WINDOW_S, 3)])
  return None


_SCRIPTS: dict[str, Callable[[_Script], VideoFn | None]] = {
    "turn_taking": _turn_taking, "pause_handling": _pause_handling,
    "interruption": _interruption, "rep_count": _rep_count, "visual_cue": _visual_cue,
    "start_stop": _start_stop, "time_speak": _time_speak, "live_translation": _live_translation,
    "delegate": _delegate,
}


def generate_episode(task: str, index: int, seed: int) -> Episode:
  """One episode of `task`, the same for the same (task, index, seed)."""
  if task not in TASKS:
    raise InputError("--tasks", f"unknown task {task!r}, expected one of {', '.join(TASKS)}")
  for name, value in (("--seed", seed), ("index", index)):
    if value < 0:
      raise InputError(name, f"expected a non-negative integer, got {value}")
  rng = np.random.default_rng([seed, index, TASKS.index(task)])
  script = _Script(rng)
  render_video = _SCRIPTS[task](script) or (
      lambda duration_s: procedural_video.distractor(rng, duration_s))
  content_end = max(script.user.end_s(), script.model.end_s(), script.min_end_s)
  duration_s = float(np.clip(content_end + rng.uniform(0.4, 1.5), MIN_DURATION_S,
                             MAX_DURATION_S))
  num_samples = round(duration_s * SAMPLE_RATE)
  user = script.user.mix(num_samples) + _background_noise(rng, num_samples)
  video = render_video(num_samples / SAMPLE_RATE)
  return Episode(
      index=index, task=task, user_audio=_to_int16(user),
      model_audio=_to_int16(script.model.mix(num_samples)), video=video,
      video_times_s=procedural_video.frame_times(num_samples / SAMPLE_RATE),
      words=sorted(script.user.words + script.model.words, key=lambda w: (w.start_s, w.speaker)),
      events=sorted(script.events, key=lambda e: e["time_s"]),
      annotations={"user_voice": dataclasses.asdict(script.user_voice), **script.annotations})


def _background_noise(rng: np.random.Generator, num_samples: int) -> np.ndarray:
  """White, low-passed (rumble) or mains-hum noise at a random level of -60 to -30 dB."""
  kind = rng.integers(3)
  white = rng.standard_normal(num_samples).astype(np.float32)
  if kind == 0:
    noise = white
  elif kind == 1:
    noise = scipy.signal.lfilter([1.0], [1.0, -0.97], white).astype(np.float32)
  else:
    t = np.arange(num_samples, dtype=np.float32) / SAMPLE_RATE
    mains = rng.choice([50.0, 60.0])
    noise = sum(np.sin(2 * np.pi * mains * h * t) / h for h in (1, 2, 3)) + 0.3 * white
  level = 10 ** (rng.uniform(-60, -30) / 20)
  return (noise * (level / (np.sqrt(np.mean(noise**2)) + 1e-12))).astype(np.float32)


def _to_int16(audio: np.ndarray) -> np.ndarray:
  return np.round(np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)


def vocabulary() -> list[str]:
  """Every sentence the generator can produce (templated arithmetic as its words and numbers).

  For training the tokenizer: both speakers, typed text and background results.
  """
  lines: list[str] = []
  for question, answer in QUESTIONS:
    lines += [question, answer]
  for request, answer in LONG_ANSWERS:
    lines += [request, answer]
  lines += [*BARGE_INS, PAUSE_FILLER, *COUNT_INSTRUCTIONS, *NUMBER_WORDS, START_WORD, STOP_WORD,
            *START_STOP_INSTRUCTIONS, REMINDER_WORD, ACKNOWLEDGEMENT, *END_REMINDERS, *FILLERS,
            *WAITING_REMARKS]
  for colour in CUE_COLOURS:
    lines += [t.format(colour=colour) for t in CUE_INSTRUCTIONS + CUE_ANSWERS]
  for period in REMINDER_PERIODS_S:
    lines += [t.format(n=NUMBER_WORDS[period]) for t in REMINDER_INSTRUCTIONS]
  for language in sorted(TRANSLATION_LANGUAGES):
    lines += [t.format(language=language) for t in TRANSLATION_INSTRUCTIONS]
  for source, translations in DICTIONARY.items():
    lines += [source, *translations]
  largest = 0
  for op, (compute, (low, high)) in ARITHMETIC.items():
    lines += [DELEGATE_QUESTION.format(a=high, op=op, b=low),
              DELEGATE_RESULT.format(a=high, op=op, b=low, result=compute(high, low))]
    largest = max(largest, compute(high, high))
  lines += [str(n) for n in range(largest + 1)]
  return list(dict.fromkeys(lines))
