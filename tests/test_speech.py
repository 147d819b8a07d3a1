"""eSpeak NG synthesis: 16 kHz audio and word timings a scorer and a featurizer can rely on."""

import numpy as np
import pytest

from data_pipelines import speech
from jax_interact.errors import InputError
from jax_interact.streams.timing import SAMPLE_RATE

_CASES = [
    ("what is 17 times 23 said the small grey cat", speech.MODEL_VOICE),
    ("count the bounces please", speech.USER_VOICES[3]),
    ("el árbol y el pájaro", speech.Voice(speech.TRANSLATION_LANGUAGES["spanish"], 170, 50)),
    ("la fenêtre de l'école", speech.Voice(speech.TRANSLATION_LANGUAGES["french"], 170, 50)),
]


@pytest.mark.parametrize("text,voice", _CASES)
def test_word_timings_are_monotone_inside_the_audio_and_voiced(text, voice):
  utterance = speech.synthesize(text, voice)
  assert utterance.audio.dtype == np.float32
  assert [w.text for w in utterance.words] == text.split()
  starts = np.array([w.start_s for w in utterance.words])
  ends = np.array([w.end_s for w in utterance.words])
  assert np.all(starts < ends)
  assert np.all(ends[:-1] <= starts[1:] + 1e-9)
  assert starts[0] >= 0 and ends[-1] <= utterance.duration_s
  peak_rms = np.sqrt(np.mean(utterance.audio**2))
  for w in utterance.words:
    inside = utterance.audio[int(w.start_s * SAMPLE_RATE):int(w.end_s * SAMPLE_RATE)]
    assert np.sqrt(np.mean(inside**2)) > 0.1 * peak_rms, w


def test_word_onsets_follow_the_speech():
  # Silence before the first onset and after the last word: the events are aligned to the audio.
  utterance = speech.synthesize("hello there my friend", speech.USER_VOICES[0])
  last = utterance.words[-1]
  tail = utterance.audio[int(last.end_s * SAMPLE_RATE) + SAMPLE_RATE // 50:]
  assert len(tail) == 0 or np.abs(tail).max() < 0.05
  assert utterance.duration_s < 3.0


def test_rate_and_pitch_change_the_voice():
  text = "the quick brown fox jumps over the lazy dog"
  slow = speech.synthesize(text, speech.Voice("en-us", 120, 50))
  fast = speech.synthesize(text, speech.Voice("en-us", 240, 50))
  assert fast.duration_s < 0.75 * slow.duration_s
  low = speech.synthesize(text, speech.Voice("en-us", 170, 10))
  high = speech.synthesize(text, speech.Voice("en-us", 170, 90))
  assert not np.array_equal(low.audio[:4000], high.audio[:4000])


def test_bad_text_or_voice_is_a_clear_error():
  with pytest.raises(InputError, match="text"):
    speech.synthesize("   ", speech.MODEL_VOICE)
  with pytest.raises(InputError, match="no-such-voice"):
    speech.synthesize("hello", speech.Voice("no-such-voice", 170, 50))
