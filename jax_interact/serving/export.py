"""`jax-interact export`: writes the export bundle of a trained run (format: serving/bundle.py).

The engine program of `session.program` is re-expressed over plain dicts of arrays (parameters
by path name, the session state by field) so that its serialized input and output trees need no
project type to be read back, and each of its functions is exported with jax.export for the
requested platforms. Everything is written into a temporary folder renamed at the end.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import safetensors.numpy

from jax_interact import atomic, cli
from jax_interact.errors import InputError
from jax_interact.inference import session, trained as trained_lib
from jax_interact.models import InteractionModel
from jax_interact.models.attention import KVCache
from jax_interact.models.copy_head import CopyMemory
from jax_interact.serving import bundle
from jax_interact.streams import tokenizer
from jax_interact.streams.layout import empty_inputs


def _path_name(path) -> str:
  return jax.tree_util.keystr(path, simple=True, separator="/")


def _fields(record) -> dict:
  return {field.name: getattr(record, field.name) for field in dataclasses.fields(record)}


def _state_dict(state: session.SessionState) -> dict:
  return dict(_fields(state), cache=[_fields(layer) for layer in state.cache],
              copy=None if state.copy is None else _fields(state.copy))


def _session_state(tree: dict) -> session.SessionState:
  cache = tuple(KVCache(**layer) for layer in tree["cache"])
  copy = None if tree["copy"] is None else CopyMemory(**tree["copy"])
  return session.SessionState(**dict(tree, cache=cache, copy=copy))


def _specs(tree) -> dict:
  """{"a/b": {"shape", "dtype"}} of every array in `tree`."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {_path_name(path): {"shape": list(leaf.shape), "dtype": str(leaf.dtype)}
          for path, leaf in leaves}


def functions(model: InteractionModel, config, batch: int):
  """(params by name, {"init", "reset", "step"} jitted over plain dicts) for `batch` sessions:
  the functions of `session.program(model, config)` with the state and parameters as dicts."""
  params, run = session.jit_step(model, session.Sampling.from_config(config.sample))
  paths, treedef = jax.tree_util.tree_flatten_with_path(params)
  names = [_path_name(path) for path, _ in paths]

  def init(seed):
    return _state_dict(session.init_state(model, batch, seed))

  def reset(state, rows_B, seed):
    return _state_dict(session.reset(model, _session_state(state), rows_B, seed))

  def step(flat_params, state, chunk):
    tree = jax.tree_util.tree_unflatten(treedef, [flat_params[name] for name in names])
    new_state, outputs = run(tree, _session_state(state), chunk)
    return _state_dict(new_state), outputs

  flat = {name: leaf for name, (_, leaf) in zip(names, paths)}
  return flat, {"init": jax.jit(init), "reset": jax.jit(reset), "step": jax.jit(step)}


def write(out, run: trained_lib.Trained, batch: int, platforms: tuple[str, ...],
          checkpoint: str) -> dict:
  """Writes the bundle of `run` for `batch` sessions into `out`; returns its manifest."""
  model, config = run.model, run.config
  params, fns = functions(model, config, batch)
  spec = lambda tree: jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)
  seed = jax.ShapeDtypeStruct((), jnp.int32)
  state = jax.eval_shape(fns["init"], seed)
  chunk = spec(empty_inputs(model.layout, batch))
  avals = {"init": (seed,), "reset": (state, jax.ShapeDtypeStruct((batch,), jnp.bool_), seed),
           "step": (spec(params), state, chunk)}
  exported = {name: jax.export.export(fns[name], platforms=platforms)(*avals[name])
              for name in bundle.FUNCTIONS}
  manifest = {
      "format": bundle.FORMAT, "format_version": bundle.VERSION,
      "config": config.to_dict(), "checkpoint": {"which": checkpoint, "step": run.step},
      "batch": batch, "platforms": list(platforms), "jax_version": jax.__version__,
      "vocab_size": model.vocab_size,
      "params": _specs(params), "state": _specs(state), "chunk": _specs(chunk),
      "outputs": _specs(jax.eval_shape(fns["step"], *avals["step"])[1]),
      "functions": {name: bundle.function_file(name) for name in bundle.FUNCTIONS},
  }
  with atomic.directory(out) as tmp:
    safetensors.numpy.save_file({k: np.asarray(v) for k, v in params.items()},
                                tmp / bundle.PARAMS)
    for name, fn in exported.items():
      (tmp / bundle.function_file(name)).write_bytes(fn.serialize())
    (tmp / tokenizer.FILENAME).write_bytes(run.tokenizer.model_bytes())
    (tmp / bundle.MANIFEST).write_text(json.dumps(manifest, indent=1))
  return manifest


def parse_platforms(text: str | None) -> tuple[str, ...]:
  if not text:
    return (jax.export.default_export_platform(),)
  try:
    return cli.known_names(text, bundle.PLATFORMS)
  except ValueError as error:
    raise InputError("--platforms", str(error)) from None


def main(args) -> int:
  platforms = parse_platforms(args.platforms)
  if args.batch <= 0:
    raise InputError("--batch", f"got {args.batch}, expected > 0")
  run = trained_lib.load(args.workdir, args.checkpoint, args.overrides)
  if run.config.model.kind != "interaction":
    raise InputError(f"{args.workdir}/config.json", f"model.kind is {run.config.model.kind!r}: "
                     "export serves an interaction model (a background LM is served beside one "
                     "with jax-interact serve --background W)")
  manifest = write(args.out, run, args.batch, platforms, args.checkpoint)
  size = sum(p.stat().st_size for p in pathlib.Path(args.out).iterdir())
  print(f"exported step {run.step} for {args.batch} sessions on {','.join(platforms)} "
        f"({size / 1e6:.1f} MB, jax {manifest['jax_version']})\nwrote {args.out}")
  return 0
