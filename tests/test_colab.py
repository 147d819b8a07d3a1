"""colab/quickstart.ipynb runs end to end, with parameters that keep it short."""

import json
import os

import pytest

from test_trainer import REPO

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

SHORT = """EPISODES = 4
TASKS = "turn_taking,interruption"
STEPS = 2
EVAL_BATCHES = 0
EVAL_EPISODES = 2
OUT = {out!r}"""


@pytest.mark.slow
def test_quickstart_runs_and_writes_every_artifact(tmp_path, monkeypatch):
  # The kernel sees one CPU device, as on Colab, not the 8 fake devices of conftest.py.
  flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]
  if flags:
    monkeypatch.setenv("XLA_FLAGS", " ".join(flags))
  else:
    monkeypatch.delenv("XLA_FLAGS", raising=False)
  notebook = nbformat.read(REPO / "colab" / "quickstart.ipynb", as_version=4)
  [parameters] = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
  out = tmp_path / "quickstart"
  parameters.source = SHORT.format(out=str(out))
  nbclient.NotebookClient(notebook, timeout=900, kernel_name="python3",
                          resources={"metadata": {"path": str(tmp_path)}}).execute()
  for artifact in ("episode0.png", "eval/report.json", "eval/scores.png", "stream/out.wav",
                   "stream/timeline.png", "bundle/bundle.json"):
    assert (out / artifact).is_file(), artifact
  assert json.loads((out / "bundle" / "bundle.json").read_text())["checkpoint"]["step"] == 2
  shown = [o.get("data", {}) for cell in notebook.cells for o in cell.get("outputs", [])]
  assert sum("image/png" in d for d in shown) == 3  # the episode, the scores, the stream
  assert sum("<audio" in d.get("text/html", "") for d in shown) == 1  # the model's voice
