"""Parameter, FLOP and memory counts of a model config, without allocating parameters.

What differs between model kinds is each kind's term (`registry.ModelKind`, written beside each
model); what is counted alike for every kind is here.

`param_count` sums the parameters of the abstract model (`nnx.eval_shape`).

`train_flops_per_token` is the model FLOPs of one training step divided by the tokens, the
convention of MFU: 3 x (forward FLOPs). The forward's matmuls are

  sum over matmul weights W of 2 * size(W) * (applications of W)

with the applications the model's `weight_applications` gives (per micro-turn for the
interaction model, per token for the background LM); the kind adds its attention
(`ModelKind.train_flops_per_token`). Table lookups (text, dMel bag, kind, position embeddings)
count zero FLOPs, as embeddings do in LLM FLOP counts; a table the model also scores against (a
tied text head) is charged its applications as a matmul, like any other weight.

`train_memory` estimates a train step's device memory (what picks batch, micro-batches and
remat for a device, and what an out-of-memory error reports): the optimizer state, the
activations the layers keep for the backward pass under `model.remat`, and the working set the
backward pass recomputes one layer at a time.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from jax_interact.models import attention_kernels, registry
from jax_interact.models.transformer import Dims, layer_values_per_token


def _abstract_model(config: ml_collections.ConfigDict) -> nnx.Module:
  with nnx.use_eager_sharding(False):
    return nnx.eval_shape(lambda: registry.build(config, nnx.Rngs(0)))


def _param_shapes(model: nnx.Module) -> list[tuple[tuple[str, ...], tuple]]:
  flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
  return [(tuple(str(k) for k in path), tuple(var.shape)) for path, var in flat]


def _abstract_params(config: ml_collections.ConfigDict) -> list[tuple[tuple[str, ...], tuple]]:
  return _param_shapes(_abstract_model(config))


def param_count(config: ml_collections.ConfigDict) -> int:
  return int(sum(np.prod(shape) for _, shape in _abstract_params(config)))


def param_counts_by_part(config: ml_collections.ConfigDict) -> dict[str, int]:
  """Parameters per top-level part of the model (temporal, local, text_embed, ...)."""
  counts: dict[str, int] = {}
  for path, shape in _abstract_params(config):
    counts[path[0]] = counts.get(path[0], 0) + int(np.prod(shape))
  return counts


def _is_matmul(path: tuple[str, ...]) -> bool:
  return path[-1] in ("w", "router", "table") or path[-1].startswith("w_")


def _forward_matmul_flops(model: nnx.Module) -> float:
  return sum(2.0 * np.prod(shape) * model.weight_applications(path)
             for path, shape in _param_shapes(model) if _is_matmul(path))


def train_flops_per_token(config: ml_collections.ConfigDict) -> float:
  """Training (forward + backward) model FLOPs per token; see the module docstring."""
  return registry.kind_of(config).train_flops_per_token(
      config, _forward_matmul_flops(_abstract_model(config)))


def describe(config: ml_collections.ConfigDict) -> str:
  """A few lines on the model: sizes, parameters per part, FLOPs (interaction: stream rate)."""
  return registry.kind_of(config).describe(config, param_counts_by_part(config),
                                           train_flops_per_token(config))


def train_memory(config: ml_collections.ConfigDict, devices: int) -> dict[str, float]:
  """Estimated bytes per device of one train step on `devices` devices with config.mesh:
  {state, activations, total}. State: parameters, gradients and two AdamW moments, split over
  the mesh axes other than `data`. Activations: of one micro-batch (data.batch_size /
  train.grad_accum examples split over the batch axes): what every layer of the main
  transformer keeps, one layer's recomputed working set (with the attention logits when the
  kernel materialises them), and the kind's other activations (`ModelKind.train_activations`)."""
  m, mesh = config.model, config.mesh
  sizes = {axis: mesh.get(axis, 1) for axis in ("data", "fsdp", "expert", "tensor")}
  known = int(np.prod([n for n in sizes.values() if n != -1]))
  sizes = {axis: devices // known if n == -1 else n for axis, n in sizes.items()}
  param_bytes = jnp.dtype(m.param_dtype).itemsize
  state = 4 * param_count(config) * param_bytes * sizes["data"] / devices

  act = jnp.dtype(m.dtype).itemsize
  examples = config.data.batch_size / config.train.grad_accum / (
      sizes["data"] * sizes["fsdp"] * sizes["expert"])
  kept, everything = layer_values_per_token(Dims.from_config(m), m.remat)
  kernel = attention_kernels.choose(m.attention, m.dtype)
  tokens, keys, head_bytes = registry.kind_of(config).train_activations(config, examples, kernel)
  activations = (kept * m.n_layers + everything) * tokens * act + head_bytes
  if kernel in ("xla", "blocked"):  # one layer's float32 logits and softmax, all keys or seen
    activations += tokens * m.n_heads * keys * 4 * 2
  return {"state": state, "activations": activations, "total": state + activations}


def device_memory_bytes(device: jax.Device) -> int | None:
  """Bytes of memory the device offers, or None where it does not say (CPU)."""
  stats = device.memory_stats() or {}
  return stats.get("bytes_limit")
