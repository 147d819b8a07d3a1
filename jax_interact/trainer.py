"""The training loop (SPEC §6) and `jax-interact train`.

One run lives in a workdir W: `W/config.json`, `W/checkpoints/<step>/`, `W/metrics.jsonl` and
`W/tensorboard/`. Starting again in the same W resumes from the latest checkpoint and, given the
same config, reproduces bit for bit the losses the uninterrupted run would have logged: batches
come from the checkpointed Grain iterator (or, with `config.data.source=random`, are a pure
function of (seed, step)) and the loss rng of step s is derived from (seed, s).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import itertools
import math
import pathlib
import re
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence

import jax
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jax_interact import atomic, models, sharding
from jax_interact import config as config_lib
from jax_interact.models import counting
from jax_interact.streams import tokenizer
from jax_interact.training import checkpointing, distributed, optimizer, preemption
from jax_interact.training import metrics as metrics_lib
from jax_interact.training import steps as steps_lib

Batch = dict[str, np.ndarray]

# Seed streams of random batches: training and evaluation never share a batch.
_TRAIN_DATA, _EVAL_DATA = 0, 1


class OutOfMemory(RuntimeError):
  """The train step did not fit in device memory; the message names the knobs to turn."""

  def __init__(self, config: ml_collections.ConfigDict, devices: int, cause: str):
    estimate = counting.train_memory(config, devices)
    wanted = re.search(r"allocat\w* (\d+) bytes", cause)
    wanted = f"; XLA wanted {int(wanted[1]) / 2**30:.2f} GiB more" if wanted else ""
    super().__init__(
        f"the train step does not fit in device memory (estimated {estimate['total'] / 2**30:.1f}"
        f" GiB per device: state {estimate['state'] / 2**30:.1f}, activations "
        f"{estimate['activations'] / 2**30:.1f}{wanted}); try " + " or ".join(
            memory_knobs(config)))


def memory_knobs(config: ml_collections.ConfigDict) -> list[str]:
  """Config changes that lower a train step's memory per device, the cheapest first: more
  micro-batches (same batch, same numbers), recomputing whole layers, a smaller batch."""
  knobs = []
  accum, batch = config.train.grad_accum, config.data.batch_size
  if batch % (2 * accum) == 0:
    knobs.append(f"--config.train.grad_accum={2 * accum}")
  if config.model.remat != "full":
    knobs.append("--config.model.remat=full")
  if batch % 2 == 0 and (batch // 2) % accum == 0:
    knobs.append(f"--config.data.batch_size={batch // 2}")
  return knobs + ["a mesh over more devices (--config.mesh.fsdp)"]


@contextlib.contextmanager
def memory_explained(config: ml_collections.ConfigDict, devices: int):
  """Turns XLA's RESOURCE_EXHAUSTED inside into OutOfMemory (a one-line error naming knobs)."""
  try:
    yield
  except jax.errors.JaxRuntimeError as e:
    if "RESOURCE_EXHAUSTED" not in str(e):
      raise
    raise OutOfMemory(config, devices, str(e)) from e


class Diverged(RuntimeError):
  """A step produced a non-finite loss or gradient norm."""

  def __init__(self, step: int, name: str, value: float, kept_step: int | None):
    kept = f"checkpoint {kept_step} is kept" if kept_step else "no checkpoint was saved"
    super().__init__(f"{name} is {value} at step {step}; stopped, {kept}")


def tokens_per_step(config: ml_collections.ConfigDict) -> int:
  """Sequence tokens in one global batch: batch * tokens of a training example."""
  return config.data.batch_size * models.kind_of(config).example_tokens(config)


def random_batches(config: ml_collections.ConfigDict, stream: int) -> Callable[[int], Batch]:
  """index -> this process's share of a random global batch, a pure function of the seed."""
  local_batch = sharding.host_local_batch_size(config.data.batch_size)
  random_examples = models.kind_of(config).random_examples

  def batch(index: int) -> Batch:
    seed = int(np.random.SeedSequence([config.seed, stream, index, jax.process_index()])
               .generate_state(1)[0])
    return random_examples(config, local_batch, seed)

  return batch


def check_data_source(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError unless the config says what to train on: a dataset directory, or random
  batches asked for by name."""
  if config.data.source == "random":
    if config.data.dir:
      raise config_lib.ConfigError("config.data.source", "random batches ignore "
                                   f"data.dir={config.data.dir!r}; set only one of the two")
  elif not config.data.dir:
    raise config_lib.ConfigError("config.data.dir", "empty; make a dataset with `jax-interact "
                                 "data generate --out DIR --episodes N` and pass "
                                 "--config.data.dir=DIR (--config.data.source=random trains on "
                                 "random batches)")


def _data_iterator(config: ml_collections.ConfigDict, split: str, *, train: bool) -> Iterator:
  # Imported only by runs that read a dataset.
  pipeline = importlib.import_module(models.kind_of(config).data_pipeline)
  return pipeline.make_iterator(config, config.data.dir, split, seed=config.seed, train=train)


def eval_batches(config: ml_collections.ConfigDict) -> list[Batch]:
  """The held-out batches every evaluation uses (the same ones each time): train.eval_batches,
  or fewer when the split holds fewer (a dataset's evaluation reads each episode once)."""
  n = config.train.eval_batches
  if config.data.source == "random":
    return [random_batches(config, _EVAL_DATA)(i) for i in range(n)]
  return list(itertools.islice(_data_iterator(config, config.data.eval_split, train=False), n))


def counted_windows(batches: Sequence[Batch]) -> int:
  """Windows of all processes' `batches` that count in a loss (padding windows are masked out)."""
  local = 0
  for batch in batches:
    mask = batch["turn_mask"] if "turn_mask" in batch else batch["loss_mask"]
    local += int(np.sum(np.any(mask.reshape(len(mask), -1), axis=1)))
  if jax.process_count() == 1:
    return local
  return int(np.sum(multihost_utils.process_allgather(np.int64(local))))


def _describe_eval(config: ml_collections.ConfigDict, held_out: list[Batch]) -> str:
  split, wanted = config.data.eval_split, config.train.eval_batches
  if not wanted:
    return "no evaluation (train.eval_batches=0)"
  windows = counted_windows(held_out)
  if not windows:
    return f"no evaluation: split {split!r} holds no windows"
  fewer = (f"; the split fills {len(held_out)} of train.eval_batches={wanted}"
           if len(held_out) < wanted else "")
  return (f"evaluating on {windows} held-out window{'' if windows == 1 else 's'} of split "
          f"{split!r} ({len(held_out)} batches{fewer}) every {config.train.eval_every_steps} "
          "steps")


@dataclasses.dataclass(frozen=True)
class Program:
  """The model graph, optimizer and shardings of a run on a mesh (built inside `sharding.use`)."""

  config: ml_collections.ConfigDict
  mesh: Mesh
  graphdef: nnx.GraphDef
  tx: optax.GradientTransformation
  abstract_state: nnx.State
  abstract_opt_state: object
  state_shardings: object
  opt_shardings: object

  @classmethod
  def create(cls, config: ml_collections.ConfigDict, mesh: Mesh) -> Program:
    model = nnx.eval_shape(lambda: models.build(config, nnx.Rngs(config.seed)))
    graphdef, abstract_state = nnx.split(model)
    tx = optimizer.make_optimizer(config.train)
    abstract_opt_state = optimizer.abstract_opt_state(config.train, abstract_state)
    sharding.check_divisible(config, mesh, sharding.variable_shapes(abstract_state))
    return cls(config, mesh, graphdef, tx, abstract_state, abstract_opt_state,
               sharding.state_shardings(abstract_state, mesh),
               sharding.state_shardings(abstract_opt_state, mesh))

  def init(self) -> tuple[nnx.State, object]:
    """Fresh model and optimizer state, created directly with their shardings."""
    config = self.config
    build = lambda: nnx.split(models.build(config, nnx.Rngs(config.seed)))[1]
    state = jax.jit(build, out_shardings=self.state_shardings)()
    params = optimizer.split_params(state)[0]
    return state, jax.jit(self.tx.init, out_shardings=self.opt_shardings)(params)

  def restore(self, checkpoints: checkpointing.Checkpoints, step: int, data_iterator=None):
    """(state, opt_state) of checkpoint `step`, refusing a model of another shape."""
    checkpoints.check_same_shapes(step, self.abstract_state)
    return checkpoints.restore(
        step, checkpointing.abstract_like(self.abstract_state, self.state_shardings),
        checkpointing.abstract_like(self.abstract_opt_state, self.opt_shardings), data_iterator)

  def checked_steps(self, batch: Batch):
    """(train step, eval step) jitted for batches like `batch` (this process's share), after
    holding the global batch and every activation constraint of the train step against the mesh
    (the eval step runs the same forward on the whole batch). That takes a trace, which the
    first call reuses; nothing is compiled."""
    train_step, eval_step = self.jit_train_step(batch), self.jit_eval_step(batch)
    shardings = self.batch_shardings(batch)
    global_batch = {k: jax.ShapeDtypeStruct((len(v) * jax.process_count(), *v.shape[1:]),
                                            v.dtype, sharding=shardings[k])
                    for k, v in batch.items()}
    sharding.check_divisible(self.config, self.mesh, [
        (f"batch array {k!r} {list(v.shape)}", v.shape, ("batch",))
        for k, v in global_batch.items()])
    state = checkpointing.abstract_like(self.abstract_state, self.state_shardings)
    opt_state = checkpointing.abstract_like(self.abstract_opt_state, self.opt_shardings)
    with sharding.recording_constraints() as activations:
      jax.eval_shape(train_step, state, opt_state, global_batch,
                     jax.ShapeDtypeStruct((), np.int32))
    sharding.check_divisible(self.config, self.mesh, activations)
    return train_step, eval_step

  def batch_shardings(self, batch: Batch) -> dict[str, NamedSharding]:
    return {k: sharding.batch_sharding(self.mesh, np.ndim(v)) for k, v in batch.items()}

  def jit_train_step(self, batch: Batch):
    """The jitted `train_step(state, opt_state, batch, step)`, donating both states."""
    replicated = NamedSharding(self.mesh, P())
    step = steps_lib.make_train_step(self.graphdef, self.tx, models.loss_for(self.config),
                                     seed=self.config.seed,
                                     grad_accum=self.config.train.grad_accum,
                                     learning_rate=optimizer.learning_rate(self.config.train))
    return jax.jit(step, in_shardings=(self.state_shardings, self.opt_shardings,
                                       self.batch_shardings(batch), replicated),
                   out_shardings=(self.state_shardings, self.opt_shardings, replicated),
                   donate_argnums=(0, 1))

  def jit_eval_step(self, batch: Batch):
    step = steps_lib.make_eval_step(self.graphdef, models.loss_for(self.config, train=False),
                                    seed=self.config.seed)
    return jax.jit(step, in_shardings=(self.state_shardings, self.batch_shardings(batch)),
                   out_shardings=NamedSharding(self.mesh, P()))


def check_batch_divides(config: ml_collections.ConfigDict, mesh: Mesh) -> None:
  """Raises ConfigError unless the global batch splits over micro-batches and batch shards."""
  axes = sharding.logical_to_spec(("batch",), sharding.rules(config, mesh))[0]
  axes = (axes,) if isinstance(axes, str) else tuple(axes or ())
  divisor = config.train.grad_accum * math.prod(mesh.shape[a] for a in axes)
  if config.data.batch_size % divisor:
    raise config_lib.ConfigError("config.data.batch_size", f"got {config.data.batch_size}, "
                                 f"expected a multiple of train.grad_accum * batch shards = "
                                 f"{divisor}")


def _keep_tokenizer(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> None:
  """Copies the dataset's tokenizer into the workdir, so a trained run serves on its own."""
  if not config.data.dir:
    return
  source = pathlib.Path(config.data.dir) / tokenizer.FILENAME
  if source.is_file():
    with atomic.file(workdir / tokenizer.FILENAME) as tmp:
      shutil.copyfile(source, tmp)


def _describe(config: ml_collections.ConfigDict, mesh: Mesh) -> str:
  axes = ", ".join(f"{name}={size}" for name, size in mesh.shape.items())
  return (f"config {config.name}\n{counting.describe(config)}\n"
          f"mesh ({axes}) over {mesh.devices.size} {jax.devices()[0].device_kind} devices, "
          f"{jax.process_count()} process(es)")


def train(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
          devices: Sequence[jax.Device] | None = None) -> int:
  """Trains to `config.train.steps` (resuming from W/checkpoints); returns the last step.

  SIGTERM or SIGINT (preemption.py) stops it after a step that every process agrees on, with a
  checkpoint of that step and one line saying so; that step is returned. Raises Diverged on a
  non-finite loss (no checkpoint is written from such a step) and OutOfMemory when a step does
  not fit in device memory.
  """
  check_data_source(config)
  workdir = pathlib.Path(workdir)
  mesh = sharding.make_mesh(config.mesh, devices)
  check_batch_divides(config, mesh)
  train_config, total_steps = config.train, config.train.steps
  is_primary = jax.process_index() == 0

  with preemption.Preemption(train_config.time_limit_s) as preempted, \
      sharding.use(mesh, sharding.rules(config, mesh)), memory_explained(config, mesh.devices.size):
    program = Program.create(config, mesh)
    train_step, eval_step = program.checked_steps(random_batches(config, _TRAIN_DATA)(0))
    workdir.mkdir(parents=True, exist_ok=True)
    if config.data.source == "random":
      data_iterator = None
      next_batch = random_batches(config, _TRAIN_DATA)
    else:
      data_iterator = _data_iterator(config, "train", train=True)
      next_batch = lambda _: next(data_iterator)

    checkpoints = checkpointing.Checkpoints(workdir, config.checkpoint)
    start, state, opt_state = _resume(program, checkpoints, data_iterator)
    if is_primary:
      atomic.write_json(workdir / "config.json", config.to_dict())
      _keep_tokenizer(config, workdir)
      print(_describe(config, mesh))
      print(f"resuming from step {start}" if start else f"starting in {workdir}", flush=True)
    if start >= total_steps:
      if is_primary:
        print(f"step {start} already reaches train.steps={total_steps}: nothing to train")
      checkpoints.close()
      return start

    first_batch = next_batch(start)
    held_out = eval_batches(config)
    eval_line = _describe_eval(config, held_out)
    if is_primary:
      print(eval_line, flush=True)

    interactivity = _interactivity(config, program, workdir)
    tokens = tokens_per_step(config)
    flops_per_token = counting.train_flops_per_token(config)
    peak = metrics_lib.peak_flops_per_device(mesh.devices.flat[0])
    peak_total = peak * mesh.devices.size if peak else None
    log = metrics_lib.MetricsLog(workdir, first_step=start, total_steps=total_steps)
    saved_step = start
    pending: list[tuple[int, dict]] = []  # (step, device metrics) not yet checked on host

    def check_pending() -> dict[int, dict]:
      """Host copies of the pending metrics; raises Diverged at the first non-finite one."""
      fetched = {step: jax.device_get(m) for step, m in pending}
      pending.clear()
      for step, values in sorted(fetched.items()):
        for name in ("loss", "grad_norm"):
          if not math.isfinite(float(values[name])):
            raise Diverged(step, name, float(values[name]), saved_step)
      return fetched

    try:
      timer = metrics_lib.StepTimer()
      for index in range(start, total_steps):
        step = index + 1  # steps completed after this update
        batch = sharding.shard_batch(first_batch if index == start else next_batch(index), mesh)
        state, opt_state, step_metrics = train_step(state, opt_state, batch, np.int32(index))
        pending.append((step, step_metrics))
        timer.step_done(step_metrics)
        log.advance()

        row = {}
        if step % train_config.log_every_steps == 0 or step == total_steps:
          step_time = timer.lap()
          tokens_per_s = tokens / step_time
          row.update(check_pending()[step], step=step, step_time_s=step_time,
                     tokens_per_s=tokens_per_s,
                     mfu=metrics_lib.mfu(flops_per_token * tokens_per_s, peak_total))
        with timer.paused():
          if held_out and (step % train_config.eval_every_steps == 0 or step == total_steps):
            scored = optimizer.averaged(state, opt_state)
            results = [jax.device_get(eval_step(scored, sharding.shard_batch(b, mesh)))
                       for b in held_out]
            row.update({f"eval_{k}": np.mean([r[k] for r in results]) for k in results[0]},
                       step=step)
          if interactivity is not None and interactivity.due(step):
            interact_row, line = interactivity.evaluate(step, optimizer.averaged(state, opt_state))
            row.update(interact_row, step=step)
            log.note(line)
          if row:
            log.write(row)
          stop = preempted.reached(step) and step < total_steps
          if stop or step % config.checkpoint.every_steps == 0 or step == total_steps:
            check_pending()
            if saved_step != step:
              checkpoints.save(step, state, opt_state, config, data_iterator)
            saved_step = step
          if stop:
            break
    finally:
      log.close()
      checkpoints.close()
      if interactivity is not None:
        interactivity.close()
  if saved_step < total_steps:
    if is_primary:
      cause = (f"train.time_limit_s={train_config.time_limit_s:g} reached" if preempted.time_up
               else "preempted")
      print(f"{cause}: stopped after step {saved_step}, whose checkpoint is saved; run the same "
            "command to continue", flush=True)
    return saved_step
  return total_steps


def _resume(program: Program, checkpoints: checkpointing.Checkpoints, data_iterator):
  """(step, state, opt_state) of the newest checkpoint that reads on every process; each newer
  one is set aside with a line on stderr. A fresh start at step 0 when none reads."""
  for step in reversed(checkpoints.all_steps()):
    failure = None
    try:
      restored = program.restore(checkpoints, step, data_iterator)
    except checkpointing.Unreadable as e:
      failure = e
    if _on_every_process(failure is None):
      return (step, *restored)
    aside = checkpoints.set_aside(step)
    if jax.process_index() == 0:
      reason = failure or f"checkpoint {step} cannot be read by another process"
      print(f"warning: {reason}; moved it to {aside} and trying an earlier one",
            file=sys.stderr, flush=True)
  return (0, *program.init())


def _on_every_process(ok: bool) -> bool:
  if jax.process_count() == 1:
    return ok
  return bool(np.all(multihost_utils.process_allgather(np.bool_(ok))))


def _interactivity(config: ml_collections.ConfigDict, program: Program,
                   workdir: pathlib.Path):
  """The in-training streaming evaluation, when configured (it needs a dataset to play)."""
  if not config.train.interact_every_steps:
    return None
  from data_pipelines import dataset
  from data_pipelines.held_out import DatasetSplit
  from jax_interact.evaluation.scoring import SCORERS
  from jax_interact.training.interactivity import Interactivity
  held_out = DatasetSplit(config.data.dir, config.data.eval_split,
                          config.train.interact_episodes, SCORERS)
  return Interactivity(config, program.graphdef, dataset.load_tokenizer(config.data.dir),
                       held_out, workdir)


def main(args: argparse.Namespace) -> int:
  """`jax-interact train --config C --workdir W [--config.key=value ...]`."""
  distributed.initialize(args)
  config = config_lib.load(args.config, args.overrides)
  try:
    train(config, args.workdir)
  except (Diverged, OutOfMemory) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0
