"""Orbax checkpoints of one run: model state, optimizer state, data iterator and config.

`W/checkpoints/<step>/` holds the items `state`, `opt_state`, `config` and, when training reads a
dataset, `data` (the Grain iterator state, one file per process; with train.ema_decay, the optimizer
state holds the parameters' moving average). `W/best/<step>/` holds the model state (the average,
where there is one) of the step that scored best in the interactivity evaluation during training.
Orbax writes each step to a temporary directory and renames it when complete, so a killed run never
leaves a half-written checkpoint behind; restarting in the same workdir resumes from the latest one.
A checkpoint whose files fail to read (truncated or corrupted since) raises `Unreadable`, naming the
step and the file; `set_aside` moves it to `W/unreadable_checkpoints/<step>` so an earlier one can
serve.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
from typing import Any, Iterator

import grain
import jax
import ml_collections
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from jax_interact.errors import InputError


def abstract_like(tree, shardings) -> Any:
  """ShapeDtypeStructs carrying `shardings`: the restore target of `tree`."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      tree, shardings)


def _restore_args(abstract) -> ocp.args.PyTreeRestore:
  return ocp.args.PyTreeRestore(abstract, ocp.checkpoint_utils.construct_restore_args(abstract))


def _shapes(tree) -> dict[str, tuple[int, ...]]:
  """{"a/b/value": shape} for every array of a state or of its saved metadata."""
  def name(key):
    return str(getattr(key, "key", getattr(key, "name", getattr(key, "idx", key))))
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {"/".join(name(k) for k in path): tuple(leaf.shape) for path, leaf in leaves}


def _array_registry() -> ocp.type_handlers.TypeHandlerRegistry:
  """Array handling for our items. Replica-parallel saving (each replica writes a slice) pays off
  on TPU pods; elsewhere its many small slicing programs make a save of replicated weights on
  CPU take seconds, so it is used on TPU only."""
  handler = ocp.type_handlers.ArrayHandler(use_replica_parallel=jax.default_backend() == "tpu")
  return ocp.type_handlers.create_type_handler_registry((jax.Array, handler))


LATEST, BEST = "latest", "best"
_DIRECTORIES = {LATEST: "checkpoints", BEST: "best"}
UNREADABLE = "unreadable_checkpoints"


class Unreadable(InputError):
  """A checkpoint whose files fail to read: truncated, corrupted or removed after it was saved."""

  def __init__(self, step_dir: pathlib.Path, step: int, error: BaseException):
    chain = [error]
    while (cause := chain[-1].__cause__ or chain[-1].__context__) and cause not in chain:
      chain.append(cause)
    # TensorStore names the file it failed on; Orbax's JSON metadata errors name none.
    files = re.findall(r'local file "([^"]+)"', " ".join(map(str, chain)))
    innermost = chain[-1]
    reason = re.sub(r' (in OCDBT database )?at local file "[^"]*"', "",
                    (str(innermost).splitlines() or [""])[0])[:200]
    super().__init__(files[-1] if files else str(step_dir),
                     f"checkpoint {step} cannot be read ({type(innermost).__name__}: {reason})")


class Checkpoints:
  """A checkpoints directory of a workdir: `W/checkpoints` (which="latest", the run's periodic
  checkpoints) or `W/best` (which="best": the one step with the best interactivity score seen
  during training, model state and config only, plus its scores in the item `interactivity`)."""

  def __init__(self, workdir: pathlib.Path, checkpoint_config, which: str = LATEST):
    self.directory = workdir / _DIRECTORIES[which]
    arrays = ocp.PyTreeCheckpointHandler(type_handler_registry=_array_registry())
    self.manager = ocp.CheckpointManager(
        self.directory.absolute(),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=checkpoint_config.max_to_keep if which == LATEST else 1,
            enable_async_checkpointing=checkpoint_config.async_save and which == LATEST,
            cleanup_tmp_directories=True,
        ),
        item_handlers={"state": arrays, "opt_state": arrays,
                       "config": ocp.JsonCheckpointHandler(),
                       "interactivity": ocp.JsonCheckpointHandler(),
                       "data": grain.checkpoint.CheckpointHandler()})

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  @contextlib.contextmanager
  def _reading(self, step: int) -> Iterator[None]:
    """Turns any failure to read checkpoint `step` (but bad input) into `Unreadable`."""
    try:
      yield
    except InputError:
      raise
    except Exception as e:  # Orbax and TensorStore raise many kinds; all mean the same here
      raise Unreadable(self.directory / str(step), step, e) from None

  def set_aside(self, step: int) -> pathlib.Path:
    """Moves checkpoint `step` to W/unreadable_checkpoints/<step> (every process agrees)."""
    target = self.directory.parent / UNREADABLE / str(step)
    if jax.process_index() == 0:
      target.parent.mkdir(exist_ok=True)
      os.replace(self.directory / str(step), target)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"set aside checkpoint {step}")
    self.manager.reload()
    return target

  def check_same_shapes(self, step: int, abstract_state) -> None:
    """Raises InputError when the saved model differs in shape from the configured one."""
    with self._reading(step):
      saved = _shapes(self.manager.item_metadata(step)["state"].tree)
    wanted = _shapes(abstract_state)
    for name in sorted(saved.keys() | wanted.keys()):
      if saved.get(name) != wanted.get(name):
        raise InputError(str(self.directory / str(step)),
                         f"holds a model of another shape ({name}: saved {saved.get(name)}, "
                         f"config gives {wanted.get(name)}); use a new --workdir")

  def save(self, step: int, state, opt_state, config: ml_collections.ConfigDict,
           data_iterator=None) -> None:
    items = {"state": ocp.args.PyTreeSave(state), "opt_state": ocp.args.PyTreeSave(opt_state),
             "config": ocp.args.JsonSave(config.to_dict())}
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
    self.manager.save(step, args=ocp.args.Composite(**items))

  def save_best(self, step: int, state, config: ml_collections.ConfigDict,
                scores: dict[str, Any]) -> None:
    """Replaces the kept checkpoint with the model state of `step` and its `scores`."""
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.PyTreeSave(state), config=ocp.args.JsonSave(config.to_dict()),
        interactivity=ocp.args.JsonSave(scores)))
    self.manager.wait_until_finished()

  def best_scores(self) -> dict[str, Any] | None:
    """The `interactivity` item of the kept best checkpoint (None when there is none)."""
    step = self.latest_step()
    if step is None:
      return None
    return self.manager.restore(step, args=ocp.args.Composite(
        interactivity=ocp.args.JsonRestore()))["interactivity"]

  def restore(self, step: int, abstract_state, abstract_opt_state, data_iterator=None):
    """(state, opt_state) placed with the shardings of the abstract targets; the data iterator
    (when given) is moved to its saved position in place, only once the arrays have read."""
    with self._reading(step):
      restored = self.manager.restore(step, args=ocp.args.Composite(
          state=_restore_args(abstract_state), opt_state=_restore_args(abstract_opt_state)))
      if data_iterator is not None:
        self.manager.restore(step, args=ocp.args.Composite(
            data=grain.checkpoint.CheckpointRestore(data_iterator)))
    return restored["state"], restored["opt_state"]

  def restore_model_state(self, step: int, abstract_state):
    """The model state of checkpoint `step` alone (serving: no optimizer, no data iterator)."""
    with self._reading(step):
      restored = self.manager.restore(
          step, args=ocp.args.Composite(state=_restore_args(abstract_state)))
    return restored["state"]

  def close(self) -> None:
    """Waits for pending asynchronous saves, then releases the manager."""
    self.manager.wait_until_finished()
    self.manager.close()
