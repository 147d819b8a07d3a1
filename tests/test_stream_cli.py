"""`jax-interact stream --audio`: out.wav lines up with the input (Full-Duplex-Bench's contract)."""

import numpy as np
import pytest
import soundfile

from jax_interact import cli
from served_model import write_workdir


@pytest.mark.parametrize("rate, channels, seconds", [(16000, 1, 1.0), (22050, 2, 1.337)])
def test_out_wav_has_the_input_rate_and_length(tmp_path, rate, channels, seconds):
  workdir = write_workdir(tmp_path / "run")
  n = int(rate * seconds)
  noise = np.random.default_rng(0).uniform(-0.3, 0.3, (n, channels)).astype(np.float32)
  soundfile.write(tmp_path / "in.wav", noise, rate, subtype="PCM_16")
  out = tmp_path / "out"
  assert cli.main(["stream", "--workdir", str(workdir), "--audio", str(tmp_path / "in.wav"),
                   "--out", str(out)]) == 0
  info = soundfile.info(out / "out.wav")
  assert (info.samplerate, info.frames, info.channels) == (rate, n, 1)
