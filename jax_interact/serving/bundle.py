"""The export bundle (SPEC §10): a folder that serves an interaction model without its model code.

  bundle.json          format and version, the run's config, the checkpoint exported, the batch
                       size B, the platforms, the jax version, and the shapes and dtypes of the
                       parameters, of the session state and of one chunk (the input segment of
                       B sessions) and the step's outputs
  params.safetensors   the parameters, each named by its path in the model
  tokenizer.model      the SentencePiece tokenizer
  init.jax, reset.jax, step.jax
                       the engine program (engine.Program) for B sessions, serialized with
                       jax.export (StableHLO), over plain dicts of arrays:
                       init(seed) -> state; reset(state, rows_B, seed) -> state;
                       step(params, state, chunk) -> (state, outputs)

`load` needs jax, numpy, safetensors and sentencepiece. The host side of a session (dMel of raw
audio, video patches, text queues, rows) is the engine's own (jax_interact.inference.engine with
jax_interact.streams, both numpy and jax only), so a bundle is served exactly as a training run
is; nothing of jax_interact.models, flax or orbax is imported. `jax-interact export` writes it
(serving/export.py).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import types
from typing import Any

import jax
import jax.numpy as jnp
import safetensors.numpy

from jax_interact.errors import InputError
from jax_interact.inference import engine
from jax_interact.streams import dmel
from jax_interact.streams.layout import Layout
from jax_interact.streams.tokenizer import FILENAME as TOKENIZER, Tokenizer

FORMAT = "jax_interact.bundle"
VERSION = 1
MANIFEST = "bundle.json"
PARAMS = "params.safetensors"
FUNCTIONS = ("init", "reset", "step")
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")


def function_file(name: str) -> str:
  return f"{name}.jax"


def namespace(tree: Any) -> Any:
  """Attribute access over a JSON config (what the stream and background code read)."""
  if isinstance(tree, dict):
    return types.SimpleNamespace(**{k: namespace(v) for k, v in tree.items()})
  return tree


@dataclasses.dataclass
class Bundle:
  directory: pathlib.Path
  manifest: dict[str, Any]
  config: types.SimpleNamespace  # the run's config (attribute access, like a ConfigDict)
  tokenizer: Tokenizer
  program: engine.Program  # for manifest["batch"] sessions
  checkpoint_step: int


def _read_manifest(directory: pathlib.Path) -> dict[str, Any]:
  path = directory / MANIFEST
  if not path.is_file():
    raise InputError(str(directory), f"not an export bundle (no {MANIFEST}); write one with "
                     "jax-interact export --workdir W --out DIR")
  try:
    manifest = json.loads(path.read_text())
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise InputError(str(path), f"not valid JSON ({e})") from None
  if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
    raise InputError(str(path), f"format is {manifest.get('format')!r}, expected {FORMAT!r}")
  if manifest.get("format_version") != VERSION:
    raise InputError(str(path), f"format_version is {manifest.get('format_version')!r}; this "
                     f"jax_interact reads version {VERSION}: export the run again")
  return manifest


def _deserialize(path: pathlib.Path) -> jax.export.Exported:
  try:
    return jax.export.deserialize(bytearray(path.read_bytes()))
  except OSError as e:
    raise InputError(str(path), f"cannot be read ({e.strerror})") from None
  except Exception as e:  # noqa: BLE001 (any decoding failure means the same to the user)
    raise InputError(str(path), f"not a jax.export artifact of jax {jax.__version__} "
                     f"({type(e).__name__}: {e})") from None


def load(directory: str | pathlib.Path) -> Bundle:
  """Reads a bundle; its program runs on this machine's default platform."""
  directory = pathlib.Path(directory)
  manifest = _read_manifest(directory)
  platform = jax.export.default_export_platform()
  if platform not in manifest["platforms"]:
    raise InputError(str(directory / MANIFEST), f"exported for {manifest['platforms']}, this "
                     f"machine runs {platform}: export with --platforms {platform}")
  try:
    params = {name: jnp.asarray(value) for name, value in
              safetensors.numpy.load_file(directory / PARAMS).items()}
  except (OSError, ValueError, safetensors.SafetensorError) as e:
    raise InputError(str(directory / PARAMS), f"not a readable safetensors file ({e})") from None
  expected = {name: (tuple(spec["shape"]), spec["dtype"])
              for name, spec in manifest["params"].items()}
  got = {name: (tuple(v.shape), str(v.dtype)) for name, v in params.items()}
  if got != expected:
    wrong = min(set(got.items()) ^ set(expected.items()))[0]
    raise InputError(str(directory / PARAMS), f"parameter {wrong!r} is {got.get(wrong)}, "
                     f"{MANIFEST} says {expected.get(wrong)}")
  init, reset, step = (_deserialize(directory / function_file(name)) for name in FUNCTIONS)
  config = namespace(manifest["config"])
  batch = manifest["batch"]
  program = engine.Program(
      layout=Layout.from_config(config.stream), dmel_spec=dmel.DMelSpec.from_config(config.stream),
      vocab_size=manifest["vocab_size"], params=params,
      init_state=lambda _batch, seed: init.call(jnp.asarray(seed, jnp.int32)),
      reset=jax.jit(reset.call, donate_argnums=(0,)),
      step=jax.jit(step.call, donate_argnums=(1,)), batch_size=batch)
  return Bundle(directory, manifest, config, Tokenizer.load(directory / TOKENIZER), program,
                manifest["checkpoint"]["step"])
