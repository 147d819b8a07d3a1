"""A small random-init interaction model saved as a training workdir (serving tests).

Writing the workdir directly (config.json, tokenizer.model, one checkpoint) takes seconds where
training a step would take a minute on 2 cores; `jax-interact export` and `trained.load` read it
as they read a trained run.
"""

import contextlib
import json
import pathlib
import subprocess
import sys
from typing import Iterator

import jax.numpy as jnp
from flax import nnx

from jax_interact import config as config_lib
from jax_interact.models import build
from jax_interact.streams import tokenizer
from jax_interact.training import checkpointing
from test_trainer import REPO, SMALL

STEP = 3
SENTENCES = ["hello there how are you", "count the bounces please", "what is 17 times 23",
             "17 times 23 is 391", "say start when it moves", "the square turns red now"]


def write_workdir(workdir: pathlib.Path, overrides=()) -> pathlib.Path:
  config = config_lib.load("configs/tiny.py", [o for o in SMALL if not o.startswith("mesh.")]
                           + list(overrides))
  workdir.mkdir(parents=True)
  (workdir / "config.json").write_text(json.dumps(config.to_dict()))
  tokenizer.train_tokenizer(SENTENCES * 4, workdir / tokenizer.FILENAME,
                            vocab_size=config.model.vocab_size)
  model = build(config, nnx.Rngs(0))
  checkpoints = checkpointing.Checkpoints(workdir, config.checkpoint)
  checkpoints.save(STEP, nnx.state(model), {"count": jnp.zeros((), jnp.int32)}, config)
  checkpoints.close()
  return workdir


@contextlib.contextmanager
def running_server(*args: str) -> Iterator[tuple[subprocess.Popen, str]]:
  """`jax-interact serve ARGS --port 0` in a subprocess; yields (process, base URL)."""
  process = subprocess.Popen([sys.executable, "-m", "jax_interact.cli", "serve", *args,
                              "--port", "0"], cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
  try:
    line = process.stdout.readline()  # "serving http://HOST:PORT/ ..." once it listens
    if not line.startswith("serving "):
      process.kill()
      raise RuntimeError(f"server did not start: {line}{process.stderr.read()[-3000:]}")
    yield process, line.split()[1].rstrip("/")
  finally:
    if process.poll() is None:
      process.kill()
    process.wait()
