"""The background model (SPEC §5): a causal text LM on the shared transformer core.

Text embedding, `Transformer` (the same core as the interaction model's temporal model, full
causal attention) and a text unembedding. It is trained on context packages followed by the
job's result (data_pipelines/background_data.py) with `background_loss_fn`, and decoded by the
LM worker (jax_interact/background/lm_worker.py) against a KV cache.

The background kind's terms of the counts in counting.py (through registry.py), as LLMs are
counted: matmul applications per token (`BackgroundModel.weight_applications`), training FLOPs
per token with causal attention (`train_flops_per_token`), the description (`describe`) and a
train step's sequence and logits (`train_activations`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from jax_interact.models.attention import KVCache, Window
from jax_interact.models.embeddings import TextEmbed
from jax_interact.models.layers import Dense, Precision, placement
from jax_interact.models.transformer import Dims, Transformer

# Every earlier token is visible: one token per "micro-turn", a window no sequence reaches.
CAUSAL = Window(turn_len=1, window_turns=2**30, sinks=0)


@dataclasses.dataclass(frozen=True)
class BackgroundConfig:
  """What a BackgroundModel is built from (config.model)."""

  vocab_size: int
  precision: Precision
  dims: Dims
  remat: str
  scan_layers: bool

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> BackgroundConfig:
    m = config.model
    return cls(vocab_size=m.vocab_size, precision=Precision.from_config(m),
               dims=Dims.from_config(m), remat=m.remat, scan_layers=m.scan_layers)


class BackgroundModel(nnx.Module):
  """`BackgroundModel(BackgroundConfig.from_config(config), rngs=nnx.Rngs(seed),
  moe_aux_weight=config.loss.moe_aux_weight)`: `background_loss_fn` weighs the MoE auxiliary
  loss by the model's `moe_aux_weight`, so that it needs nothing else of the config."""

  def __init__(self, config: BackgroundConfig, *, rngs: nnx.Rngs, moe_aux_weight: float):
    self.moe_aux_weight = moe_aux_weight
    with placement():
      self._build(config, rngs)

  def _build(self, c: BackgroundConfig, rngs: nnx.Rngs) -> None:
    self.precision = c.precision
    self.vocab_size = c.vocab_size
    self.text_embed = TextEmbed(c.vocab_size, c.dims.d_model, self.precision, rngs=rngs)
    self.transformer = Transformer(c.dims, self.precision, remat=c.remat,
                                   scan_layers=c.scan_layers, rngs=rngs)
    self.text_head = Dense(c.dims.d_model, c.vocab_size, ("embed", "vocab"), self.precision,
                           rngs=rngs)

  def init_cache(self, batch: int, slots: int) -> tuple[KVCache, ...]:
    """An empty cache for `batch` sequences of up to `slots` tokens (positions 0..slots-1)."""
    return self.transformer.init_cache(batch, slots)

  def weight_applications(self, path: tuple[str, ...]) -> float:
    """How many times the matmul weight at `path` is applied in the forward of one token: once,
    every MoE expert included (LLM FLOP counts' 6 x parameters); the embedding table is looked
    up, not multiplied."""
    return 0.0 if path[0] == "text_embed" else 1.0

  def __call__(self, tokens_BT: jax.Array, pos_BT: jax.Array | None = None,
               cache: tuple[KVCache, ...] | None = None
               ) -> tuple[jax.Array, tuple[KVCache, ...] | None, jax.Array]:
    """(logits float32 [B, T, vocab], the cache, MoE aux loss).

    Without `cache`, whole sequences at positions 0..T-1 (training). With one (`init_cache`),
    new tokens at absolute positions `pos_BT` (-1: padding, neither attended to nor cached)
    after the cached ones, written into it.
    """
    h_BTD, cache, aux_loss = self.transformer(self.text_embed(tokens_BT), CAUSAL, pos_BT, cache)
    return self.text_head(h_BTD, out_dtype=jnp.float32), cache, aux_loss


def background_loss_fn(model: BackgroundModel, batch: dict[str, jax.Array],
                       rng: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
  """(scalar loss, metrics): next-token cross-entropy where `loss_mask` marks the targets.

  `batch["loss_mask"][:, i]` weighs predicting token i from tokens < i (so the context package
  is read, never predicted, and only the result is learned). `rng` is unused (no noise).
  """
  del rng
  tokens_BT = batch["tokens"]
  logits_BTV, _, aux_loss = model(tokens_BT[:, :-1])
  targets_BT = tokens_BT[:, 1:]
  weights_BT = batch["loss_mask"][:, 1:].astype(jnp.float32)
  log_probs = jax.nn.log_softmax(logits_BTV, axis=-1)
  nll_BT = -jnp.take_along_axis(log_probs, targets_BT[..., None], axis=-1)[..., 0]
  total = jnp.maximum(jnp.sum(weights_BT), 1e-6)
  text_loss = jnp.sum(nll_BT * weights_BT) / total
  correct = (jnp.argmax(logits_BTV, axis=-1) == targets_BT).astype(jnp.float32)
  loss = text_loss + model.moe_aux_weight * aux_loss
  return loss, {"loss": loss, "text_loss": text_loss,
                "text_accuracy": jnp.sum(correct * weights_BT) / total,
                "tokens": jnp.asarray(tokens_BT.size, jnp.float32), "moe_aux_loss": aux_loss}


# Counting: this kind's terms of models/counting.py (through registry.ModelKind) ----------------


def train_flops_per_token(config: ml_collections.ConfigDict, forward_matmul_flops: float
                          ) -> float:
  """3 x the forward FLOPs of one token: its matmuls (`forward_matmul_flops`, by
  `BackgroundModel.weight_applications`) + causal attention, n_layers * 4 * n_heads * head_dim
  * seq_len / 2 (the keys a token of a training sequence sees on average)."""
  m = config.model
  return 3.0 * (forward_matmul_flops +
                2.0 * m.n_layers * m.n_heads * m.head_dim * config.data.seq_len)


def describe(config: ml_collections.ConfigDict, parts: dict[str, int], flops: float) -> str:
  """One line: parameters (`parts`: per top-level part), sizes, training FLOPs per token."""
  m = config.model
  return (f"background LM {config.name}: {sum(parts.values()) / 1e6:.2f}M parameters, "
          f"{m.n_layers} layers, d_model {m.d_model}, {m.n_heads} heads ({m.n_kv_heads} kv), "
          f"sequences of {config.data.seq_len}; training FLOPs {flops / 1e6:.1f}M per token")


def train_activations(config: ml_collections.ConfigDict, examples: float, kernel: str
                      ) -> tuple[float, float, float]:
  """Of a micro-batch of `examples` sequences: (tokens through the transformer, keys a query's
  attention logits span under `kernel`, bytes of the text logits)."""
  seq_len, vocab_size = config.data.seq_len, config.model.vocab_size
  tokens = examples * seq_len
  keys = seq_len if kernel == "xla" else seq_len / 2
  head_bytes = tokens * vocab_size * 4 * 3  # float32 logits, log-softmax, gradient
  return tokens, keys, head_bytes
