"""Parameter and FLOP counts of a model config, without allocating parameters.

`param_count` sums the parameters of the abstract model (`nnx.eval_shape`).

`train_flops_per_token` is the model FLOPs of one training step divided by the temporal tokens
(N * turn_len per window), the convention of MFU: 3 x (forward FLOPs), where the forward of one
micro-turn is

  sum over matmul weights W of 2 * size(W) * (applications of W per micro-turn)
  + temporal attention: n_layers * 4 * n_heads * head_dim * (keys visible to a query, summed
    over the turn_len queries; averaged over the positions of a training window of
    data.window micro-turns under the window-plus-sinks mask)
  + local attention: local_layers * 4 * local_heads * local_head_dim * sum_{j<K} (j + 1).

Applications per micro-turn (the model's `weight_applications`): temporal blocks turn_len (MoE
experts: turn_len * k / E); local decoder blocks K = output_len (it runs only over output
slots); local input projections 1 and K - 1; text head K_ut + K_to; flow head K_ao (one velocity
evaluation per audio slot); hMLP stages (P/4)^2, (P/8)^2 and 1 per video patch; time projection
1. Table lookups (text, dMel bag,
kind, position embeddings) count zero FLOPs, as embeddings do in LLM FLOP counts.

A background LM (model.kind "background") counts as LLMs do: 6 x (matmul parameters) plus
causal attention, 6 * n_layers * n_heads * head_dim * seq_len per token. MoE layers count the
k routed experts of a token, not the room a capacity factor leaves (model FLOPs, as in MFU).

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

from jax_interact import models
from jax_interact.models import attention_kernels
from jax_interact.models.interaction import InteractionConfig
from jax_interact.models.transformer import Dims
from jax_interact.models.window import attention_mask
from jax_interact.streams.layout import TEXT_OUTPUT_KINDS, Layout, SlotKind


def _abstract_model(config: ml_collections.ConfigDict) -> nnx.Module:
  with nnx.use_eager_sharding(False):
    return nnx.eval_shape(lambda: models.build(config, nnx.Rngs(0)))


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
  return path[-1] in ("w", "router") or path[-1].startswith("w_")


def _visible_keys_per_turn(config: ml_collections.ConfigDict, layout: Layout) -> float:
  """Keys visible to the queries of one micro-turn, averaged over a training window."""
  m = config.model
  pos = layout.positions(config.data.window)
  visible = attention_mask(pos, pos, layout.turn_len, m.window_turns, m.sinks).sum()
  return float(visible) / config.data.window


def forward_flops_per_turn(config: ml_collections.ConfigDict) -> float:
  layout = Layout.from_config(config.stream)
  m = config.model
  model = _abstract_model(config)
  matmul = sum(2.0 * np.prod(shape) * model.weight_applications(path)
               for path, shape in _param_shapes(model) if _is_matmul(path))
  temporal_attention = (m.n_layers * 4.0 * m.n_heads * m.head_dim *
                        _visible_keys_per_turn(config, layout))
  local = InteractionConfig.from_config(config).local
  k = layout.output_len
  local_attention = local.n_layers * 4.0 * local.n_heads * local.head_dim * k * (k + 1) / 2
  return matmul + temporal_attention + local_attention


def train_flops_per_token(config: ml_collections.ConfigDict) -> float:
  """Training (forward + backward) model FLOPs per temporal token; see the module docstring."""
  if config.model.kind == "background":
    m = config.model
    matmul = sum(np.prod(shape) for path, shape in _abstract_params(config) if _is_matmul(path))
    return 6.0 * matmul + 6.0 * m.n_layers * m.n_heads * m.head_dim * config.data.seq_len
  layout = Layout.from_config(config.stream)
  return 3.0 * forward_flops_per_turn(config) / layout.turn_len


def describe(config: ml_collections.ConfigDict) -> str:
  """A few lines on the model: sizes, parameters per part, FLOPs, stream rate."""
  m = config.model
  if m.kind == "background":
    return (f"background LM {config.name}: {param_count(config) / 1e6:.2f}M parameters, "
            f"{m.n_layers} layers, d_model {m.d_model}, {m.n_heads} heads ({m.n_kv_heads} kv), "
            f"sequences of {config.data.seq_len}; training FLOPs "
            f"{train_flops_per_token(config) / 1e6:.1f}M per token")
  layout = Layout.from_config(config.stream)
  m = config.model
  parts = param_counts_by_part(config)
  total = sum(parts.values())
  tokens_per_s = layout.turn_len * 1000 / layout.chunk_ms
  flops = train_flops_per_token(config)
  experts = f", {m.num_experts} experts top-{m.experts_per_token}" if m.num_experts else ""
  lines = [
      f"model {config.name}: {total / 1e6:.2f}M parameters",
      f"  temporal: {m.n_layers} layers, d_model {m.d_model}, {m.n_heads} heads "
      f"({m.n_kv_heads} kv) x {m.head_dim}, d_ff {m.d_ff}{experts}; window "
      f"{m.window_turns} micro-turns + {m.sinks} sinks",
      f"  local decoder: {m.local_layers} layers, d_model {m.local_d_model}, "
      f"{m.local_heads} heads, d_ff {m.local_d_ff}; flow head {m.flow_hidden} wide, "
      f"{m.flow_steps} Euler steps",
      f"  micro-turn: {layout.turn_len} tokens ({layout.input_len} in, {layout.output_len} out) "
      f"= {tokens_per_s:.0f} tokens per second of stream",
      "  parameters: " + ", ".join(f"{name} {n / 1e6:.2f}M" for name, n in
                                   sorted(parts.items(), key=lambda item: -item[1])),
      f"  training FLOPs: {flops / 1e6:.1f}M per token, "
      f"{flops * tokens_per_s / 1e9:.2f}G per second of stream",
  ]
  return "\n".join(lines)


def _layer_values_per_token(dims: Dims, remat: str) -> tuple[float, float]:
  """(values a layer keeps per token for the backward pass under `remat`, values its backward
  recomputes per token): the layer input; with "dots", the matmul outputs too (q, k, v,
  attention projection, gate, up, down); with "none", norms and products besides."""
  d, qh, kvh = dims.d_model, dims.n_heads * dims.head_dim, dims.n_kv_heads * dims.head_dim
  ff = dims.d_ff * (dims.experts_per_token * max(dims.expert_capacity, 1.0)
                    if dims.num_experts else 1)
  everything = 7 * d + 2 * qh + 2 * kvh + 3 * ff
  kept = {"full": d, "dots": 3 * d + qh + 2 * kvh + 2 * ff, "none": everything}[remat]
  return kept, everything


def train_memory(config: ml_collections.ConfigDict, devices: int) -> dict[str, float]:
  """Estimated bytes per device of one train step on `devices` devices with config.mesh:
  {state, activations, total}. State: parameters, gradients and two AdamW moments, split over
  the mesh axes other than `data`. Activations: of one micro-batch (data.batch_size /
  train.grad_accum windows split over the batch axes): what every layer keeps, one layer's
  recomputed working set (with the attention logits when the kernel materialises them), the
  video stem's stages, the local decoder and the text logits."""
  m, mesh = config.model, config.mesh
  sizes = {axis: mesh.get(axis, 1) for axis in ("data", "fsdp", "expert", "tensor")}
  known = int(np.prod([n for n in sizes.values() if n != -1]))
  sizes = {axis: devices // known if n == -1 else n for axis, n in sizes.items()}
  param_bytes = jnp.dtype(m.param_dtype).itemsize
  state = 4 * param_count(config) * param_bytes * sizes["data"] / devices

  act = jnp.dtype(m.dtype).itemsize
  windows = config.data.batch_size / config.train.grad_accum / (
      sizes["data"] * sizes["fsdp"] * sizes["expert"])
  kept, everything = _layer_values_per_token(Dims.from_config(m), m.remat)
  kernel = attention_kernels.choose(m.attention, m.dtype)
  if m.kind == "background":
    tokens = windows * config.data.seq_len
    keys = config.data.seq_len if kernel == "xla" else config.data.seq_len / 2
    heads = tokens * m.vocab_size * 4 * 3  # float32 logits, log-softmax, gradient
  else:
    layout = Layout.from_config(config.stream)
    turns = windows * config.data.window
    tokens = turns * layout.turn_len
    keys = (config.data.window * layout.turn_len if kernel == "xla"
            else _visible_keys_per_turn(config, layout) / layout.turn_len)
    patch, width = config.stream.patch, max(m.d_model // 4, 16)
    stem_values = ((patch // 4) ** 2 + (patch // 8) ** 2) * width * 3  # linear, norm, gelu
    local = InteractionConfig.from_config(config).local
    local_kept, local_everything = _layer_values_per_token(local, m.remat)
    text_slots = sum(layout.count(k) for k in TEXT_OUTPUT_KINDS)
    heads = (turns * layout.count(SlotKind.VIDEO) * stem_values * act +
             (local_kept * local.n_layers + local_everything) * turns * layout.output_len * act +
             turns * text_slots * m.vocab_size * 4 * 3)
  activations = (kept * m.n_layers + everything) * tokens * act + heads
  if kernel in ("xla", "blocked"):  # one layer's float32 logits and softmax, all keys or seen
    activations += tokens * m.n_heads * keys * 4 * 2
  return {"state": state, "activations": activations, "total": state + activations}


def device_memory_bytes(device: jax.Device) -> int | None:
  """Bytes of memory the device offers, or None where it does not say (CPU)."""
  stats = device.memory_stats() or {}
  return stats.get("bytes_limit")
