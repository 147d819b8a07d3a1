"""Sharding as data: logical axis names on every parameter and activation, one rules table.

Parameters declare logical names (`nnx.Param(value, sharding_names=("embed", "mlp"))`) and
activations are constrained with `constrain(x, ("batch", "seq", "embed"))`. The table
`config.sharding_rules` maps each logical name to mesh axes; this module is the only place that
turns names into `PartitionSpec`s. The mesh uses Auto axis types (the compiler propagates
shardings between the annotated points).
"""

from __future__ import annotations

import contextlib
import math
from typing import Sequence

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


def rules(config=None) -> tuple:
  return tuple(config.sharding_rules) if config is not None and "sharding_rules" in config \
      else DEFAULT_RULES


def logical_to_spec(names: Sequence[str | None], rule_table=DEFAULT_RULES) -> P:
  """PartitionSpec for logical names; a mesh axis is used at most once per spec."""
  table = dict(rule_table)
  used: set[str] = set()
  spec = []
  for name in names:
    target = table.get(name) if name is not None else None
    axes = (target,) if isinstance(target, str) else tuple(target or ())
    axes = tuple(a for a in axes if a not in used)
    used.update(axes)
    spec.append(axes[0] if len(axes) == 1 else (axes or None))
  return P(*spec)


@contextlib.contextmanager
def use(mesh: Mesh, rule_table=DEFAULT_RULES):
  """Context in which models are built and stepped: the mesh plus the logical rules."""
  with jax.set_mesh(mesh), nnx.logical_axis_rules(rule_table):
    yield


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
  """Sharding constraint on an activation by logical names; no-op without a mesh."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty:
    return x
  return jax.lax.with_sharding_constraint(x, spec(names))


def spec(names: Sequence[str | None]) -> P:
  """PartitionSpec of logical names under the active rules (those of `use`)."""
  return logical_to_spec(names, _current_rules())


def _current_rules():
  from flax.core import spmd  # flax keeps the active nnx.logical_axis_rules here
  active = spmd.get_logical_axis_rules()
  return active if active else DEFAULT_RULES


def state_shardings(state, mesh: Mesh):
  """NamedSharding pytree for an nnx State (from each variable's logical names)."""
  specs = nnx.get_partition_spec(state)
  return jax.tree.map(lambda spec: NamedSharding(mesh, spec), specs,
                      is_leaf=lambda x: isinstance(x, P))


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
  """Sharding of a batch array: leading axis over the batch axes, the rest replicated."""
  return NamedSharding(mesh, logical_to_spec(("batch",) + (None,) * (ndim - 1)))


def host_local_batch_size(global_batch: int) -> int:
  if global_batch % jax.process_count():
    raise ConfigError("config.data.batch_size", f"{global_batch} does not divide over "
                      f"{jax.process_count()} processes")
  return global_batch // jax.process_count()


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Assembles each process's local batch into global arrays sharded over the batch axes."""
  return {k: jax.make_array_from_process_local_data(batch_sharding(mesh, np.ndim(v)), v)
          for k, v in batch.items()}
