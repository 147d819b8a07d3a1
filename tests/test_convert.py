"""`data convert`: every bad input is refused with a one-line error before anything is written."""

import json

import numpy as np
import pytest
import soundfile

from data_pipelines import convert
from jax_interact import cli

GOOD_WORDS = [{"speaker": "user", "text": "hello", "start_s": 0.1, "end_s": 0.5},
              {"speaker": "model", "text": "hi there", "start_s": 1.0, "end_s": 1.4}]


def conversation(path, channels=2, sample_rate=48000, seconds=2.0):
  t = np.arange(int(sample_rate * seconds)) / sample_rate
  tracks = [0.3 * np.sin(2 * np.pi * f * t) for f in (300, 600, 900)[:channels]]
  soundfile.write(path, np.stack(tracks, axis=1), sample_rate)
  return path


def words_file(path, content):
  path.write_text(content if isinstance(content, str) else json.dumps(content))
  return path


def run(tmp_path, audio, words):
  return cli.main(["data", "convert", "--audio", str(audio), "--words", str(words),
                   "--out", str(tmp_path / "out")])


def test_converts_a_two_channel_conversation(tmp_path, capsys):
  audio = conversation(tmp_path / "conv.wav")
  assert run(tmp_path, audio, words_file(tmp_path / "w.json", GOOD_WORDS)) == 0
  manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
  (entry,) = manifest["episodes"]
  assert entry["duration_s"] == 2.0 and len(entry["words"]) == 2
  episode = convert.conversation_episode(audio, tmp_path / "w.json")
  user_peak = np.argmax(np.abs(np.fft.rfft(episode.user_audio.astype(float))))
  model_peak = np.argmax(np.abs(np.fft.rfft(episode.model_audio.astype(float))))
  assert (user_peak / 2.0, model_peak / 2.0) == (300, 600)  # channel 0 user, 1 model, at 16 kHz
  assert "1 episode" in capsys.readouterr().out


BAD_WORDS = {
    "malformed": ("[{", "malformed JSON"),
    "not_a_list": ({"speaker": "user"}, "expected a JSON list"),
    "not_an_object": (["hello"], "[0]"),
    "missing_key": ([{"speaker": "user", "text": "a", "start_s": 0.1}], "[0].end_s"),
    "unknown_speaker": ([{**GOOD_WORDS[0], "speaker": "robot"}], "[0].speaker"),
    "end_before_start": ([{**GOOD_WORDS[0], "start_s": 0.5, "end_s": 0.2}], "before start_s"),
    "outside_audio": ([{**GOOD_WORDS[0], "end_s": 2.5}], "outside the audio"),
    "not_a_number": ([{**GOOD_WORDS[0], "start_s": "soon"}], "[0].start_s"),
    "empty_text": ([{**GOOD_WORDS[0], "text": " "}], "[0].text"),
}


@pytest.mark.parametrize("kind", sorted(BAD_WORDS))
def test_bad_words_fail_before_writing(tmp_path, capsys, kind):
  content, expected = BAD_WORDS[kind]
  words = words_file(tmp_path / "w.json", content)
  assert run(tmp_path, conversation(tmp_path / "c.wav"), words) == 2
  error = capsys.readouterr().err
  assert str(words) in error and expected in error and error.count("\n") == 1
  assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["mono", "three_channels", "not_audio", "missing"])
def test_bad_audio_fails_before_writing(tmp_path, capsys, kind):
  audio = tmp_path / "c.wav"
  if kind == "mono":
    conversation(audio, channels=1)
  elif kind == "three_channels":
    conversation(audio, channels=3)
  elif kind == "not_audio":
    audio.write_text("not audio")
  assert run(tmp_path, audio, words_file(tmp_path / "w.json", GOOD_WORDS)) == 2
  error = capsys.readouterr().err
  assert str(audio) in error and error.count("\n") == 1
  if kind in ("mono", "three_channels"):
    assert "expected 2 channels" in error
  assert not (tmp_path / "out").exists()
