"""`jax-interact export`: the bundle serves without the model code, bitwise like the engine."""

import json
import subprocess
import sys

import numpy as np
import pytest

from jax_interact import cli
from jax_interact.inference import engine as engine_lib
from jax_interact.inference import session, trained
from engine_replay import run_engine
from served_model import STEP, write_workdir
from test_trainer import REPO

# Imported by nothing the bundle loader needs: a bundle is served without them.
MODEL_MODULES = ("flax", "orbax", "optax", "grain", "ml_collections", "jax_interact.models",
                 "jax_interact.training", "jax_interact.trainer", "jax_interact.config",
                 "jax_interact.inference.session", "jax_interact.inference.trained")

# Steps the bundle's engine as `run_engine` does, in a process where the model modules cannot be
# imported, and saves every output.
LOADER_SCRIPT = f"""
import sys
for name in {MODEL_MODULES!r}:
  sys.modules[name] = None
import numpy as np
from engine_replay import run_engine
from jax_interact.inference import engine
from jax_interact.serving import bundle
loaded = bundle.load(sys.argv[1])
np.savez(sys.argv[2], **run_engine(engine.Engine(loaded.program, seed=5), loaded.program.layout))
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  return write_workdir(tmp_path_factory.mktemp("export") / "run", ["model.text_copy=True"])


def test_bundle_steps_bitwise_like_the_engine_without_model_code(workdir, tmp_path):
  out = tmp_path / "bundle"
  assert cli.main(["export", "--workdir", str(workdir), "--out", str(out), "--batch", "2",
                   "--platforms", "cpu,cuda,tpu"]) == 0
  manifest = json.loads((out / "bundle.json").read_text())
  assert manifest["checkpoint"] == {"which": "latest", "step": STEP}
  assert manifest["batch"] == 2 and manifest["platforms"] == ["cpu", "cuda", "tpu"]
  assert manifest["state"]["cache/0/k_BSKH"]["shape"][0] == 2
  assert manifest["state"]["copy/ids_BM"]["shape"][0] == 2  # the copy head's ring (recipe_cpu)
  assert manifest["chunk"]["audio_in"]["dtype"] == "uint8"
  assert sorted(p.name for p in out.iterdir()) == [
      "bundle.json", "init.jax", "params.safetensors", "reset.jax", "step.jax",
      "tokenizer.model"]

  script = tmp_path / "load_bundle.py"
  script.write_text(LOADER_SCRIPT)
  result = subprocess.run([sys.executable, str(script), str(out), str(tmp_path / "bundle.npz")],
                          cwd=REPO, env={"PYTHONPATH": f"{REPO}:{REPO / 'tests'}",
                                         "JAX_PLATFORMS": "cpu"},
                          capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr[-3000:]

  run = trained.load(workdir)
  expected = run_engine(engine_lib.Engine(session.program(run.model, run.config), 2, seed=5),
                        run.model.layout)
  got = np.load(tmp_path / "bundle.npz")
  assert sorted(got.files) == sorted(expected)
  for key, value in expected.items():
    np.testing.assert_array_equal(got[key], value, err_msg=key)


def test_export_of_a_background_lm_or_a_corrupt_checkpoint_is_a_one_line_error(
    workdir, tmp_path, capsys):
  background = write_workdir(tmp_path / "background", ["model.kind=background"])
  out = tmp_path / "bundle"
  assert cli.main(["export", "--workdir", str(background), "--out", str(out)]) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("error: ") and "model.kind is 'background'" in err
  assert len(err.splitlines()) == 1

  corrupt = tmp_path / "corrupt"
  subprocess.run(["cp", "-r", str(workdir), str(corrupt)], check=True)
  for path in (corrupt / "checkpoints" / str(STEP) / "state").rglob("*"):
    if path.is_file() and path.parent.name == "d":
      path.write_bytes(b"not a checkpoint")
  assert cli.main(["export", "--workdir", str(corrupt), "--out", str(out)]) == 2
  err = capsys.readouterr().err.strip().splitlines()[-1]
  assert err.startswith(f"error: {corrupt / 'checkpoints' / str(STEP)}")
  assert f"checkpoint {STEP} cannot be read" in err
  assert not out.exists() and not list(tmp_path.glob(".bundle*"))
