"""The decoder-only transformer core: pre-norm blocks stacked on a `layers` axis and scanned.

Shared by the temporal model, the local decoder (and later the background LM). Layers are built
with `nnx.vmap` (one parameter pytree with a leading `layers` axis) and run with `jax.lax.scan`
over that axis, each step wrapped in `jax.checkpoint` according to `remat`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from jax_interact import sharding
from jax_interact.models.attention import Attention, KeyValues
from jax_interact.models.layers import Precision, RMSNorm, SwiGLU
from jax_interact.models.moe import MoE
from jax_interact.models.window import Window, attention_mask

_REMAT_POLICIES = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


@dataclasses.dataclass(frozen=True)
class Dims:
  """Shape of one transformer stack."""

  d_model: int
  n_layers: int
  n_heads: int
  n_kv_heads: int
  head_dim: int
  d_ff: int
  num_experts: int = 0  # 0: dense SwiGLU MLPs
  experts_per_token: int = 1
  expert_capacity: float = 0.0  # MoE capacity factor, 0: dropless (moe.py)
  rope_theta: float = 10000.0
  attention: str = "auto"  # kernel of whole-sequence attention (attention_kernels.KERNELS)


class Block(nnx.Module):
  """x + attn(norm(x)), then + mlp(norm(x)). Returns (x, new KeyValues, MoE aux loss)."""

  def __init__(self, dims: Dims, precision: Precision, *, rngs: nnx.Rngs):
    self.attn_norm = RMSNorm(dims.d_model, precision)
    self.attn = Attention(dims.d_model, dims.n_heads, dims.n_kv_heads, dims.head_dim,
                          dims.rope_theta, precision, kernel=dims.attention, rngs=rngs)
    self.mlp_norm = RMSNorm(dims.d_model, precision)
    if dims.num_experts:
      self.mlp = MoE(dims.d_model, dims.d_ff, dims.num_experts, dims.experts_per_token,
                     dims.expert_capacity, precision, rngs=rngs)
    else:
      self.mlp = SwiGLU(dims.d_model, dims.d_ff, precision, rngs=rngs)

  def __call__(self, x_BTD: jax.Array, pos_BT: jax.Array, window: Window,
               mask_BTS: jax.Array | None = None,
               context: KeyValues | None = None) -> tuple[jax.Array, KeyValues, jax.Array]:
    y_BTD, kv = self.attn(self.attn_norm(x_BTD), pos_BT, window, mask_BTS, context)
    x_BTD = x_BTD + y_BTD
    y_BTD, aux_loss = self.mlp(self.mlp_norm(x_BTD), dropless=mask_BTS is not None)
    x_BTD = sharding.constrain(x_BTD + y_BTD, ("batch", "seq", "embed"))
    return x_BTD, kv, aux_loss


class Transformer(nnx.Module):
  """A stack of `dims.n_layers` blocks followed by a final RMSNorm."""

  def __init__(self, dims: Dims, precision: Precision, *, remat: str = "none",
               scan_layers: bool = True, rngs: nnx.Rngs):
    self.dims = dims
    self.precision = precision
    self.remat = remat
    self.scan_layers = scan_layers

    @nnx.split_rngs(splits=dims.n_layers)
    @nnx.vmap(axis_size=dims.n_layers, transform_metadata={nnx.PARTITION_NAME: "layers"})
    def make_block(rngs: nnx.Rngs) -> Block:
      return Block(dims, precision, rngs=rngs)

    self.blocks = make_block(rngs)
    self.final_norm = RMSNorm(dims.d_model, precision)

  def __call__(self, x_BTD: jax.Array, pos_BT: jax.Array | None, window: Window,
               context: KeyValues | None = None,
               unroll: bool = False) -> tuple[jax.Array, KeyValues, jax.Array]:
    """Runs the new tokens `x_BTD` at absolute positions `pos_BT`; None: a whole sequence at
    0..T-1 (training), whose attention runs the model's kernel without a materialised mask.

    `context` holds per-layer cached keys/values (k/v [layers, B, S, kv_heads, head_dim], pos
    [B, S]) that every layer attends to before the new tokens. Returns the normed output, the
    new tokens' keys/values per layer (k/v [layers, B, T, ...], pos = pos_BT) and the summed
    MoE auxiliary loss (0 for dense MLPs). `unroll` unrolls the layer loop whatever
    `scan_layers` says: decoding a few tokens reads each layer's weights in place instead of
    through a dynamic slice of the stacked weights (1.7x faster temporal pass for 7b on an H100).
    """
    graphdef, block_state = nnx.split(self.blocks)
    if pos_BT is None:
      b, t = x_BTD.shape[:2]
      pos_BT = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
      mask_BTS = None
    else:
      keys_pos_BS = (pos_BT if context is None
                     else jnp.concatenate([context.pos_BS, pos_BT], axis=1))
      mask_BTS = attention_mask(pos_BT, keys_pos_BS, window.turn_len, window.window_turns,
                                window.sinks)

    def layer(x_BTD, layer_inputs):
      state, cached = layer_inputs
      block = nnx.merge(graphdef, state)
      layer_context = None if cached is None else KeyValues(*cached, context.pos_BS)
      x_BTD, kv, aux_loss = block(x_BTD, pos_BT, window, mask_BTS, layer_context)
      return x_BTD, (kv.k_BSKH, kv.v_BSKH, aux_loss)

    if self.remat != "none":
      layer = jax.checkpoint(layer, policy=_REMAT_POLICIES[self.remat], prevent_cse=False)
    cached = None if context is None else (context.k_BSKH, context.v_BSKH)
    x_BTD = sharding.constrain(x_BTD.astype(self.precision.dtype), ("batch", "seq", "embed"))
    x_BTD, (k_LBTKH, v_LBTKH, aux_L) = jax.lax.scan(
        layer, x_BTD, (block_state, cached), unroll=self.dims.n_layers if unroll or not self.scan_layers else 1)
    return self.final_norm(x_BTD), KeyValues(k_LBTKH, v_LBTKH, pos_BT), jnp.sum(aux_L)
