"""Sharding as data: logical axis names on every parameter and activation, one rules table.

Parameters declare logical names (`nnx.Param(value, sharding_names=("embed", "mlp"))`) and
activations are constrained with `constrain(x, ("batch", "seq", "embed"))`. The table
`config.sharding_rules` maps each logical name to mesh axes; this module is the only place that
turns names into `PartitionSpec`s. The mesh uses Auto axis types (the compiler propagates
shardings between the annotated points).

`check_divisible` holds every sharded dimension (of parameters, batches and, recorded while
tracing, activation constraints) against the mesh axes the rules map it to, so a mesh that does
not divide the model is a one-line ConfigError before anything compiles.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from typing import Iterable, Iterator, Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from jax_interact.errors import ConfigError

MESH_AXES = ("data", "fsdp", "expert", "tensor")

# logical name -> mesh axes (a tuple shards over several; None replicates). Devices along
# `expert` hold different experts in MoE layers and different batch rows everywhere else.
DEFAULT_RULES: tuple[tuple[str, tuple[str, ...] | str | None], ...] = (
    ("batch", ("data", "fsdp", "expert")),
    ("expert_batch", ("data", "fsdp")),  # batch of the MoE dispatch buffers (models/moe.py)
    ("seq", None),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("vocab", "tensor"),
    ("layers", None),
    ("experts", "expert"),
)


# The config keys that set each logical dimension, named when a mesh does not divide one.
DIMENSION_KEYS: dict[str, tuple[str, ...]] = {
    "batch": ("data.batch_size",),
    "seq": ("data.window", "data.seq_len"),  # interaction: window * micro-turn length
    "embed": ("model.d_model", "model.local_d_model"),
    "mlp": ("model.d_ff", "model.local_d_ff", "model.flow_hidden"),
    "heads": ("model.n_heads", "model.local_heads"),
    "kv_heads": ("model.n_kv_heads", "model.local_heads"),  # the local decoder has no GQA
    "head_dim": ("model.head_dim",),
    "vocab": ("model.vocab_size",),
    "layers": ("model.n_layers", "model.local_layers"),
    "experts": ("model.num_experts",),
}


def make_mesh(mesh_config, devices: Sequence[jax.Device] | None = None) -> Mesh:
  """Mesh of shape (data, fsdp, expert, tensor) from config (an axis it omits has size 1); one
  axis may be -1 (fills)."""
  devices = list(devices if devices is not None else jax.devices())
  sizes = [int(mesh_config.get(a, 1)) for a in MESH_AXES]
  if sizes.count(-1) > 1:
    raise ConfigError("config.mesh", "at most one axis may be -1")
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if len(devices) % known:
      raise ConfigError("config.mesh", f"{len(devices)} devices do not divide by {known}")
    sizes[sizes.index(-1)] = len(devices) // known
  if math.prod(sizes) != len(devices):
    raise ConfigError("config.mesh", f"mesh {dict(zip(MESH_AXES, sizes))} needs "
                      f"{math.prod(sizes)} devices, {len(devices)} available")
  return jax.make_mesh(tuple(sizes), MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES),
                       devices=devices)


def rules(config=None, mesh: Mesh | None = None) -> tuple:
  """The rules table of `config` (`config.sharding_rules`, else DEFAULT_RULES). On `mesh`, KV
  heads fewer than the shards their rule splits them over are replicated instead: every shard
  then computes all KV heads for its query heads (as MaxText does)."""
  table = tuple(config.sharding_rules) if config is not None and "sharding_rules" in config \
      else DEFAULT_RULES
  if config is None or mesh is None:
    return table
  kv_heads = min(_get(config, key) for key in DIMENSION_KEYS["kv_heads"])
  if _shards(mesh, dict(table).get("kv_heads")) > kv_heads:
    table = tuple((name, None if name == "kv_heads" else target) for name, target in table)
  return table


def _get(config, dotted: str):
  for part in dotted.split("."):
    config = config[part]
  return config


def _axes(target) -> tuple[str, ...]:
  return (target,) if isinstance(target, str) else tuple(target or ())


def _shards(mesh: Mesh, target) -> int:
  return math.prod(mesh.shape[a] for a in _axes(target))


def logical_to_spec(names: Sequence[str | None], rule_table=DEFAULT_RULES) -> P:
  """PartitionSpec for logical names; a mesh axis is used at most once per spec."""
  table = dict(rule_table)
  used: set[str] = set()
  spec = []
  for name in names:
    axes = _axes(table.get(name) if name is not None else None)
    axes = tuple(a for a in axes if a not in used)
    used.update(axes)
    spec.append(axes[0] if len(axes) == 1 else (axes or None))
  return P(*spec)


@contextlib.contextmanager
def use(mesh: Mesh, rule_table=DEFAULT_RULES):
  """Context in which models are built and stepped: the mesh plus the logical rules."""
  with jax.set_mesh(mesh), nnx.logical_axis_rules(rule_table):
    yield


NamedShape = tuple[str, tuple[int, ...], tuple[str | None, ...]]  # (what, shape, logical names)
_recording: contextvars.ContextVar[list[NamedShape] | None] = contextvars.ContextVar(
    "recording", default=None)


@contextlib.contextmanager
def recording_constraints() -> Iterator[list[NamedShape]]:
  """Within it, every `constrain` traced appends its activation's shape and names to the list."""
  recorded: list[NamedShape] = []
  token = _recording.set(recorded)
  try:
    yield recorded
  finally:
    _recording.reset(token)


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
  """Sharding constraint on an activation by logical names; no-op without a mesh."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty:
    return x
  recorded = _recording.get()
  if recorded is not None:
    recorded.append((f"activation {list(x.shape)}", tuple(x.shape), tuple(names)))
  return jax.lax.with_sharding_constraint(x, spec(names))


def spec(names: Sequence[str | None]) -> P:
  """PartitionSpec of logical names under the active rules (those of `use`)."""
  return logical_to_spec(names, _current_rules())


def _current_rules():
  from flax.core import spmd  # flax keeps the active nnx.logical_axis_rules here
  active = spmd.get_logical_axis_rules()
  return active if active else DEFAULT_RULES


def variable_shapes(state) -> list[NamedShape]:
  """(what, shape, logical names) of every variable of an nnx State that has logical names."""
  is_variable = lambda x: isinstance(x, nnx.Variable)
  named = []
  for path, variable in jax.tree_util.tree_flatten_with_path(state, is_leaf=is_variable)[0]:
    names = variable.get_metadata().get("out_sharding") if is_variable(variable) else None
    if names:
      where = "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
      named.append((f"parameter {where} {list(variable.shape)}", tuple(variable.shape),
                    tuple(names)))
  return named


def check_divisible(config, mesh: Mesh, named_shapes: Iterable[NamedShape]) -> None:
  """Raises ConfigError naming the config key of the first dimension that the mesh axes its
  logical name maps to (under the active rules) do not divide, the mesh key and both sizes."""
  rule_table = _current_rules()
  for what, shape, names in named_shapes:
    spec = logical_to_spec(names, rule_table)
    for size, name, target in zip(shape, names, spec):
      shards = _shards(mesh, target)
      if size % shards:
        keys = DIMENSION_KEYS.get(name, ())
        key = next((k for k in keys if _get(config, k) == size), keys[0] if keys else None)
        mesh_keys = " * ".join(f"config.mesh.{axis}" for axis in _axes(target))
        raise ConfigError(f"config.{key}" if key else f"dimension {name!r}",
                          f"dimension {name!r} of {what} is {size}, which {mesh_keys}={shards} "
                          "does not divide; change one of the two")


def state_shardings(state, mesh: Mesh):
  """NamedSharding pytree for an nnx State (from each variable's logical names)."""
  specs = nnx.get_partition_spec(state)
  return jax.tree.map(lambda spec: NamedSharding(mesh, spec), specs,
                      is_leaf=lambda x: isinstance(x, P))


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
  """Sharding of a batch array under the active rules (those of `use`, as `constrain` reads
  them): leading axis over the axes `batch` maps to, the rest replicated."""
  return NamedSharding(mesh, spec(("batch",) + (None,) * (ndim - 1)))


def host_local_batch_size(global_batch: int) -> int:
  if global_batch % jax.process_count():
    raise ConfigError("config.data.batch_size", f"{global_batch} does not divide over "
                      f"{jax.process_count()} processes")
  return global_batch // jax.process_count()


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Assembles each process's local batch into global arrays sharded over the batch axes."""
  return {k: jax.make_array_from_process_local_data(batch_sharding(mesh, np.ndim(v)), v)
          for k, v in batch.items()}
