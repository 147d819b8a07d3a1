"""Two sessions stepped for 100 micro-turns on fixed live input (numpy and the engine only)."""

import numpy as np

from jax_interact.inference import engine as engine_lib

TURNS = 100


def live_chunks(layout, turn):
  """Micro-turn `turn`'s chunks for rows 0 and 1: audio, frames, typed text and gaps."""
  rng = np.random.default_rng(turn)
  audio = rng.uniform(-0.4, 0.4, layout.chunk_samples).astype(np.float32)
  first = engine_lib.Chunk(audio=audio, text_ids=(9, 10, 11) if turn % 7 == 0 else ())
  second = None if turn % 4 == 3 else engine_lib.Chunk(
      audio=audio[::-1].copy(), frame=rng.integers(0, 256, (50, 70, 3), np.uint8))
  return {0: first, 1: second}


def run_engine(engine, layout):
  for name in ("a", "b"):
    engine.add(name)
  outputs = {}
  for t in range(TURNS):
    for row, out in engine.step(live_chunks(layout, t)).items():
      for key in ("user_transcript", "text_out", "audio_out"):
        outputs[f"{key}/{row}/{t}"] = getattr(out, key)
  return outputs
