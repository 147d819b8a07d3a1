"""Why a family scores what it scores: speech sources, decisions at the moments that matter.

Speech sources. The scorers count a micro-turn as speech when its model-text slots hold a word
or an audio slot is voiced. A healthy model voices its words: it has few
  words_without_voice   micro-turns holding a word token with no voiced audio in them or the
                        next micro-turn (text the user never hears), and few
  voice_without_words   voiced micro-turns with no word token in the WORD_SPAN_TURNS before
                        (the audio head speaking on its own).
Both are fractions of the model's word / voiced micro-turns.

Decisions at moments. For each episode the annotations say when the reference starts speaking
(every response's first word: the answer after a question, a count after a bounce, a beat, a
result that arrived) and when it must be quiet (the quiet intervals: pauses, after a barge-in,
before a cue). At each such micro-turn the decision "speak" (a word token or voiced audio) is
compared with the reference's:
  start_accuracy   speaks in the micro-turn whose output window holds the response's start
  quiet_accuracy   silent in the micro-turns whose output window lies inside a quiet interval
  quiet_kept       per episode with quiet intervals: silent in all those micro-turns
Measured both ways: `tf_*` teacher-forced (the model's prediction with the reference's past fed
back, `session.step(..., forced=...)`), and `free_*` from the free-running stream. Teacher
forced, later slots of a micro-turn see the reference's earlier ones, so a start is read where
it is first made: a word starts when the first model-text slot decodes to a word by the
sampler's greedy rule (`decisions.greedy_text`). A quiet micro-turn is spoken when any model-text
slot decodes to a word or any audio slot is voiced: inside a quiet interval the reference's
slots are all silent, so that is the free run's micro-turn after the reference's past. Compare
quiet moments by `quiet_kept`, not `quiet_accuracy`: free-running, one false start goes on for
several micro-turns, teacher-forced each micro-turn is decided afresh after the reference's
silence, so per micro-turn the free run counts a false start several times. High tf and
low free accuracy means the model can predict the moment but drifts once its own samples are
fed back; both low means it cannot predict it yet. `tf_heard_*` says which fed-back stream
drifts: the free run with only the user transcript teacher-forced (the model hears the user
right, its own text and audio are its samples); near `tf_*`, the drift is in what it hears, near
`free_*`, in what it says. `tf_shuffled_*` (episodes with task events,
`Episode.task_events`: in the synthetic suite what happens in the video, a bounce, a colour
change, motion): the teacher-forced decisions with the episode's video slots shuffled in time
(`shuffle_in_time`), so the scene is there but not when things happen in it. A model that
times its words by what it sees decides worse shuffled; one as accurate shuffled as not times
them by the sound and its own rhythm alone.

Words. `tf_word_accuracy`: over the model-text slots whose reference is a word, how often the
teacher-forced decision (the sampler's rule, every earlier slot the reference's) is that word.
Low where the free-running words are wrong tells "does not know what to say" (a background
result it does not copy, an answer it does not know) from "drifts once its own words are fed
back". `tf_answer_accuracy` (delegate): the same over the slots whose reference is a piece of the
calculator's answer, once the result has arrived; the answer is nowhere but in the background
slots, so this is the copy alone.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jax_interact.evaluation.scoring import Observations
from jax_interact.inference import session
from jax_interact.inference.engine import TurnOutput
from jax_interact.models import decisions
from jax_interact.models.interaction import InteractionModel
from jax_interact.streams import timing
from jax_interact.streams.dmel import voiced
from jax_interact.streams.layout import SlotKind, Token

WORD_SPAN_TURNS = 3  # a word lasts at most this many micro-turns (0.6 s) after its first token


def speaking(text_out_TK: np.ndarray, audio_out_TKFM: np.ndarray) -> np.ndarray:
  """bool [T]: micro-turns whose output holds a word token or a voiced audio slot."""
  return decisions.is_word(text_out_TK).any(axis=-1) | voiced(audio_out_TKFM).any(axis=-1)


def speech_sources(outputs: Sequence[TurnOutput]) -> Observations:
  """`words_without_voice` and `voice_without_words` samples of one streamed episode."""
  words_T = np.array([decisions.is_word(o.text_out).any() for o in outputs])
  voiced_T = np.array([voiced(o.audio_out).any() for o in outputs])
  voiced_next_T = voiced_T | np.append(voiced_T[1:], False)
  recent_words_T = np.array([words_T[max(0, t - WORD_SPAN_TURNS):t + 1].any()
                             for t in range(len(words_T))])
  return {"words_without_voice": [float(not v) for v in voiced_next_T[words_T]],
          "voice_without_words": [float(not w) for w in recent_words_T[voiced_T]]}


def moments(annotations: dict, n_turns: int, chunk_ms: int) -> tuple[list[int], list[int]]:
  """(micro-turns where the reference starts a response, micro-turns inside quiet intervals)."""
  starts = sorted({timing.model_word_turn(r["start_s"], chunk_ms)[0]
                   for r in annotations.get("responses", [])})
  quiet = timing.output_turns_in(annotations.get("quiet_s", []), n_turns, chunk_ms)
  return [t for t in starts if t < n_turns], quiet


def word_accuracy(words_TK: np.ndarray, targets_TK: np.ndarray) -> Observations:
  """`tf_word_accuracy` samples of one episode from the teacher-forced decisions of its
  model-text slots (`words_TK`) and their references (`targets_TK`), token ids [T, K]."""
  return {"tf_word_accuracy": _hits(words_TK, targets_TK, decisions.is_word(targets_TK))}


def answer_accuracy(words_TK: np.ndarray, targets_TK: np.ndarray, annotations: dict,
                    encode: Callable[[str], list[int]], chunk_ms: int) -> Observations:
  """`tf_answer_accuracy` samples of one episode with a background result (none otherwise):
  like `word_accuracy`, over the model-text slots from the micro-turn its last word arrived in
  whose reference is a piece (`encode`) of the result's last word, the answer."""
  if "result_text" not in annotations:
    return {}
  answer_ids = encode(annotations["result_text"].split()[-1])
  arrived = timing.input_turn(annotations["result_arrival_s"][-1], chunk_ms)
  counted = np.isin(targets_TK, answer_ids)
  counted[:arrived] = False
  return {"tf_answer_accuracy": _hits(words_TK, targets_TK, counted)}


def _hits(words_TK: np.ndarray, targets_TK: np.ndarray, counted: np.ndarray) -> list[float]:
  """1.0 or 0.0 per counted slot: whether the decision there is its reference."""
  return [float(w == r) for w, r in zip(np.asarray(words_TK)[counted],
                                        np.asarray(targets_TK)[counted])]


def decision_accuracy(starts_T: np.ndarray, speaks_T: np.ndarray, annotations: dict,
                      chunk_ms: int, prefix: str) -> Observations:
  """`<prefix>start_accuracy`, `<prefix>quiet_accuracy` and `<prefix>quiet_kept` samples of one
  episode, from the micro-turns in which the model starts speaking (bool [T]) and those in which
  it speaks."""
  starts, quiet = moments(annotations, len(speaks_T), chunk_ms)
  return {f"{prefix}start_accuracy": [float(starts_T[t]) for t in starts],
          f"{prefix}quiet_accuracy": [float(not speaks_T[t]) for t in quiet],
          f"{prefix}quiet_kept": [float(not speaks_T[quiet].any())] if quiet else []}


def shuffle_in_time(windows: dict[str, np.ndarray], lengths: Sequence[int],
                    seed: int = 0) -> dict[str, np.ndarray]:
  """`windows` ([B, N, ...]) with each row's video slots and mask over its first `lengths[b]`
  micro-turns in a random order (a fixed permutation per row for `seed`)."""
  rng = np.random.default_rng(seed)
  video, mask = windows["video"].copy(), windows["video_mask"].copy()
  for row, n in enumerate(lengths):
    order = rng.permutation(n)
    video[row, :n], mask[row, :n] = video[row, order], mask[row, order]
  return {**windows, "video": video, "video_mask": mask}


class TeacherForced:
  """The model's teacher-forced decisions in each micro-turn of featurized episodes (module
  docstring). Compiled once; `__call__` takes new parameters."""

  def __init__(self, model: InteractionModel, sampling: session.Sampling):
    self.model = model
    self.sampling = sampling
    _, self._step = session.jit_step(model)

  def __call__(self, params, windows: dict[str, np.ndarray]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(starts a word, speaks) bool [B, N] each and the model-text slots' decisions int32
    [B, N, K], for a batch of windows (data_pipelines.featurize format, [B, N, ...]); `params`
    as the engine serves them (`session.serving_params`)."""
    layout = self.model.layout
    text_kinds = [g.kind for g, _ in layout.output_segment() if g.token is Token.TEXT]
    model_text = [i for i, kind in enumerate(text_kinds) if kind is SlotKind.TEXT_OUT]
    thresholds_BNK = decisions.silence_thresholds(
        decisions.previous_ids(windows["text_out"]), self.sampling.silence_threshold,
        self.sampling.continue_threshold)
    words_TBK, voiced_TB = [], []
    for t, out in enumerate(self._outputs(params, windows, session.OUTPUT_KEYS,
                                          ("text_logits", "voicing_logits"))):
      words_TBK.append(decisions.greedy_text(out["text_logits"][:, model_text],
                                             thresholds_BNK[:, t]))
      voiced_TB.append(decisions.voiced_decision(out["voicing_logits"],
                                                self.sampling.voicing_threshold).any(axis=-1))
    words_BNK = np.stack(words_TBK, axis=1)
    speaks_BN = decisions.is_word(words_BNK).any(axis=-1) | np.stack(voiced_TB, axis=1)
    return decisions.is_word(words_BNK[..., 0]), speaks_BN, words_BNK

  def heard(self, params, windows: dict[str, np.ndarray]) -> np.ndarray:
    """Speaks, bool [B, N]: the model's own text and audio sampled and fed back as in the free
    run, the reference user transcript fed back in place of the model's (`tf_heard_*`)."""
    speaks_TB = [speaking(out["text_out"], out["audio_out"]) for out in
                 self._outputs(params, windows, ("user_transcript",), ("text_out", "audio_out"))]
    return np.stack(speaks_TB, axis=1)

  def _outputs(self, params, windows: dict[str, np.ndarray], forced_keys: Sequence[str],
               read: Sequence[str]):
    """Per micro-turn, the step's outputs named in `read` (on the host), with the windows'
    `forced_keys` groups fed back."""
    batch, n = windows["turn"].shape
    state = session.start_state(self.model, batch, 0, params)
    for t in range(n):
      chunk = {k: jnp.asarray(windows[k][:, t]) for k in session.INPUT_KEYS}
      forced = {k: jnp.asarray(windows[k][:, t]) for k in forced_keys}
      state, out = self._step(params, state, chunk, forced)
      yield jax.device_get({k: out[k] for k in read})
