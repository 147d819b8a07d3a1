"""The interaction model (SPEC §4): temporal transformer over micro-turns + local decoder.

Training (`__call__`): every slot of every micro-turn is embedded, the window is flattened to
[B, N * turn_len, D] in layout order and run through the temporal transformer with the
sliding-window-plus-sinks mask. For every micro-turn in parallel the local decoder then reads
[temporal hidden state at the last input position] + [embeddings of output slots 0..K-2] (teacher
forcing, causal) and predicts each output slot: text slots through a text unembedding, audio slots
through a voicing logit (is this 40 ms token voiced at all?) and, for voiced ones, the
flow-matching head. An unvoiced slot is exact silence-mel (SPEC §4): speaking is a decision.
With `model.text_copy`, text slots may also say a bg token of the micro-turns they see through
the copy head (copy_head.py), whose keys come from the temporal hidden states at bg positions.

Streaming uses the same pieces one micro-turn at a time: `embed_input_segment`,
`embed_output_segment`, `temporal_step` (new tokens against the temporal cache of
`init_cache`), `bg_keys` (written into the copy head's ring of `init_copy_memory`),
`local_step` (causal, so slot j's hidden state depends only on slots < j: a
runtime decodes slot by slot against the cache of `init_local_cache`), `local_next_input`,
`text_logits`, `voicing_logits` and `sample_audio`.

The interaction kind's terms of the counts in counting.py (through registry.py): matmul
applications per micro-turn (`InteractionModel.weight_applications`), training FLOPs per token
with the temporal and local attention (`train_flops_per_token`), the description (`describe`)
and a train step's activations besides the temporal layers (`train_activations`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from jax_interact import sharding
from jax_interact.errors import ConfigError
from jax_interact.models.attention import KVCache, Window
from jax_interact.models.copy_head import CopyHead, CopyMemory, previous_words
from jax_interact.models.embeddings import (TIME_FEATURES, DMelBag, HMLPStem, TextEmbed,
                                            time_features)
from jax_interact.models.flow import FlowHead, bins_to_unit, unit_to_bins
from jax_interact.models.layers import Dense, Precision, param, placement
from jax_interact.models.transformer import Dims, Transformer, layer_values_per_token
from jax_interact.models.window import attention_mask
from jax_interact.streams.dmel import SILENCE_BIN, voiced
from jax_interact.streams.layout import OUTPUT_KINDS, Layout, SlotKind, Token


@dataclasses.dataclass(frozen=True)
class InteractionConfig:
  """What an InteractionModel is built from: config.model's sizes and the stream format
  (config.stream) it reads and writes."""

  layout: Layout
  dmel_bins: int
  vocab_size: int
  precision: Precision
  temporal: Dims
  local: Dims
  window_turns: int  # W: sliding attention window in micro-turns
  sinks: int
  flow_hidden: int
  flow_steps: int
  audio_feedback: str  # "dmel" | "voicing": what the model hears of its own audio
  text_head: str  # "separate" | "tied": text logits from their own table or the text embedding
  text_copy: bool  # text slots may point at bg tokens (models/copy_head.py)
  copy_follow: bool  # ... and know which bg token follows the one they said last
  scene_head: bool  # a logit per micro-turn: does its frame first show a scene event?
  remat: str
  scan_layers: bool

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> InteractionConfig:
    m = config.model
    if m.local_d_model % m.local_heads:
      raise ConfigError("config.model.local_heads", f"got {m.local_heads}, expected a divisor "
                        f"of model.local_d_model={m.local_d_model}")
    local = Dims(d_model=m.local_d_model, n_layers=m.local_layers, n_heads=m.local_heads,
                 n_kv_heads=m.local_heads, head_dim=m.local_d_model // m.local_heads,
                 d_ff=m.local_d_ff, rope_theta=m.rope_theta, attention=m.attention)
    return cls(layout=Layout.from_config(config.stream), dmel_bins=config.stream.dmel_bins,
               vocab_size=m.vocab_size, precision=Precision.from_config(m),
               temporal=Dims.from_config(m), local=local, window_turns=m.window_turns,
               sinks=m.sinks, flow_hidden=m.flow_hidden, flow_steps=m.flow_steps,
               audio_feedback=m.audio_feedback, text_head=m.text_head, text_copy=m.text_copy,
               copy_follow=m.copy_follow, scene_head=config.loss.scene_event_weight > 0,
               remat=m.remat, scan_layers=m.scan_layers)


class InteractionModel(nnx.Module):
  """`InteractionModel(InteractionConfig.from_config(config), rngs=nnx.Rngs(seed))`.

  Built inside `sharding.use(mesh)` its parameters are sharded by their logical names; built
  without a mesh they are placed unsharded.
  """

  def __init__(self, config: InteractionConfig, *, rngs: nnx.Rngs):
    with placement():
      self._build(config, rngs)

  def _build(self, c: InteractionConfig, rngs: nnx.Rngs) -> None:
    layout, precision = c.layout, c.precision
    self.layout = layout
    self.precision = precision
    self.dmel_bins = c.dmel_bins
    self.flow_steps = c.flow_steps
    self.vocab_size = c.vocab_size
    self.window = Window(layout.turn_len, c.window_turns, c.sinks)
    self.local_window = Window(layout.output_len, 1, 0)
    d, d_local = c.temporal.d_model, c.local.d_model

    self.text_embed = TextEmbed(c.vocab_size, d, precision, rngs=rngs)
    self.dmel_embed = DMelBag(layout.frames_per_token, layout.n_mels, c.dmel_bins, d, precision,
                              rngs=rngs)
    self.audio_feedback = c.audio_feedback
    if c.audio_feedback == "voicing":
      self.voicing_embed = param(rngs, (2, d), (None, "embed"), precision, std=1.0)
    self.video_stem = HMLPStem(layout.patch, layout.patch_channels, d, precision, rngs=rngs)
    self.video_missing = param(rngs, (d,), ("embed",), precision, std=1.0)
    self.video_position = param(rngs, (layout.count(SlotKind.VIDEO), d), (None, "embed"),
                                precision, std=1.0)
    self.kind_embed = param(rngs, (len(SlotKind), d), (None, "embed"), precision, std=1.0)
    self.time_proj = Dense(TIME_FEATURES, d, (None, "embed"), precision, rngs=rngs)
    self.temporal = Transformer(c.temporal, precision, remat=c.remat, scan_layers=c.scan_layers,
                                rngs=rngs)

    self.local_from_temporal = Dense(d, d_local, ("embed", None), precision, rngs=rngs)
    self.local_from_slots = Dense(d, d_local, ("embed", None), precision, rngs=rngs)
    self.local_position = param(rngs, (layout.output_len, d_local), (None, "embed"), precision,
                                std=1.0)
    self.local = Transformer(c.local, precision, remat=c.remat, scan_layers=c.scan_layers,
                             rngs=rngs)
    self.tied_text_head = c.text_head == "tied"
    self.text_head = (Dense(d_local, d, ("embed", None), precision, rngs=rngs)
                      if self.tied_text_head else
                      Dense(d_local, c.vocab_size, ("embed", "vocab"), precision, rngs=rngs))
    self.copy = (CopyHead(d, d_local, c.window_turns, precision, follow=c.copy_follow, rngs=rngs)
                 if c.text_copy else None)
    self.voicing_head = Dense(d_local, 1, ("embed", None), precision, rngs=rngs, use_bias=True)
    self.scene_head = (Dense(d, 1, ("embed", None), precision, rngs=rngs, use_bias=True)
                       if c.scene_head else None)
    self.flow = FlowHead(d_local, layout.frames_per_token, layout.n_mels, c.flow_hidden,
                         precision, rngs=rngs)

  # Embeddings ------------------------------------------------------------------------------

  def _with_kinds(self, x_BNLD: jax.Array, kinds) -> jax.Array:
    kind_LD = jnp.take(self.kind_embed[...], kinds, axis=0).astype(self.precision.dtype)
    return x_BNLD + kind_LD

  def embed_input_segment(self, turn: jax.Array, text_in: jax.Array, video: jax.Array,
                          video_mask: jax.Array, audio_in: jax.Array,
                          bg: jax.Array) -> jax.Array:
    """[..., input_len, D] for the input segments of micro-turns with leading dims `...`."""
    dtype = self.precision.dtype
    boundary = self.time_proj(time_features(turn, self.layout.chunk_ms))[..., None, :]
    video_emb = jnp.where(video_mask[..., None, None], self.video_stem(video).astype(dtype),
                          self.video_missing[...].astype(dtype))
    video_emb = video_emb + self.video_position[...].astype(dtype)
    groups = {SlotKind.BOUNDARY: boundary.astype(dtype), SlotKind.TEXT_IN: self.text_embed(text_in),
              SlotKind.VIDEO: video_emb, SlotKind.AUDIO_IN: self.dmel_embed(audio_in),
              SlotKind.BG: self.text_embed(bg)}
    x = jnp.concatenate([groups[k] for k, _ in self.layout.counts if k in groups], axis=-2)
    return self._with_kinds(x, self.layout.kinds()[:self.layout.input_len])

  def embed_output_segment(self, user_transcript: jax.Array, text_out: jax.Array,
                           audio_out: jax.Array) -> jax.Array:
    """[..., output_len, D] for the output segments (fed back to the temporal model)."""
    groups = {SlotKind.USER_TRANSCRIPT: self.text_embed(user_transcript),
              SlotKind.TEXT_OUT: self.text_embed(text_out),
              SlotKind.AUDIO_OUT: self.embed_model_audio(audio_out)}
    x = jnp.concatenate([groups[k] for k, _ in self.layout.counts if k in OUTPUT_KINDS], axis=-2)
    return self._with_kinds(x, self.layout.kinds()[self.layout.input_len:])

  def embed_model_audio(self, bins: jax.Array) -> jax.Array:
    """[..., D] for the model's own audio tokens (dMel bins [..., k, M]) fed back to it: the
    dMel bag, or with `model.audio_feedback="voicing"` only whether each token is voiced (so
    what the model hears of itself is the same in training, where the targets are real speech,
    and in streaming, where they are the flow head's samples)."""
    if self.audio_feedback == "voicing":
      table = self.voicing_embed[...].astype(self.precision.dtype)
      return jnp.take(table, voiced(bins, xp=jnp).astype(jnp.int32), axis=0)
    return self.dmel_embed(bins)

  def embed_turns(self, batch: dict[str, jax.Array]) -> jax.Array:
    """[B, N, turn_len, D]: both segments of every micro-turn of a batch."""
    inputs = self.embed_input_segment(batch["turn"], batch["text_in"], batch["video"],
                                      batch["video_mask"], batch["audio_in"], batch["bg"])
    outputs = self.embed_output_segment(batch["user_transcript"], batch["text_out"],
                                        batch["audio_out"])
    return jnp.concatenate([inputs, outputs], axis=-2)

  # Local decoder and heads -----------------------------------------------------------------

  def local_decode(self, hidden_BD: jax.Array, outputs_BKD: jax.Array) -> jax.Array:
    """Local hidden states [B, output_len, d_local] of one output segment, teacher-forced.

    `hidden_BD`: temporal hidden state at the micro-turn's last input position;
    `outputs_BKD`: embeddings of the output slots (`embed_output_segment`). Causal: row j uses
    only slots < j, so it is what a slot-by-slot decoder computes for slot j.
    """
    y_BKD, _, _ = self.local(self.local_inputs(hidden_BD, outputs_BKD), self.local_window)
    return y_BKD

  def local_inputs(self, hidden_BD: jax.Array, outputs_BKD: jax.Array) -> jax.Array:
    """The local decoder's input sequence [B, output_len, d_local]: the projected temporal state,
    then the output slots shifted right by one, plus slot positions."""
    x_BKD = jnp.concatenate([self.local_from_temporal(hidden_BD)[:, None],
                             self.local_from_slots(outputs_BKD[:, :-1])], axis=1)
    return x_BKD + self.local_position[...].astype(self.precision.dtype)

  def local_next_input(self, slot_BD: jax.Array, kind: jax.Array) -> jax.Array:
    """Row j + 1 of `local_inputs` without its position, from slot j alone: `slot_BD` is its
    token's embedding (`text_embed` or `embed_model_audio`) and `kind` its SlotKind. Lets a
    slot-by-slot decoder embed each token once instead of the whole segment per slot."""
    kind_D = jnp.take(self.kind_embed[...], kind, axis=0).astype(self.precision.dtype)
    return self.local_from_slots(slot_BD + kind_D)

  # Decoding ----------------------------------------------------------------------------------

  def init_cache(self, batch: int) -> tuple[KVCache, ...]:
    """The temporal model's empty cache for `batch` sessions: the sinks, then a ring of the
    last `window_turns` micro-turns (its size is fixed however long a session runs)."""
    window = self.window
    return self.temporal.init_cache(batch, window.sinks + window.window_turns * window.turn_len)

  def temporal_step(self, x_BTD: jax.Array, pos_BT: jax.Array, cache: tuple[KVCache, ...]
                    ) -> tuple[jax.Array, tuple[KVCache, ...]]:
    """Temporal hidden states of new tokens at absolute positions `pos_BT` (-1: not attended
    to nor cached) against `cache`, and the cache with them written."""
    h_BTD, cache, _ = self.temporal(x_BTD, self.window, pos_BT, cache)
    return h_BTD, cache

  def init_local_cache(self, batch: int) -> tuple[KVCache, ...]:
    """The local decoder's empty cache for one output segment of `batch` sessions."""
    return self.local.init_cache(batch, self.layout.output_len)

  def local_step(self, x_BD: jax.Array, slot: int, cache: tuple[KVCache, ...]
                 ) -> tuple[jax.Array, tuple[KVCache, ...]]:
    """Local hidden state [B, d_local] of output slot `slot` from its row of `local_inputs`
    without the position (`local_from_temporal` for slot 0, `local_next_input` after) against
    the cache of the earlier slots, and the cache with it written."""
    x_B1D = (x_BD + self.local_position[slot].astype(self.precision.dtype))[:, None]
    pos_B1 = jnp.full((x_BD.shape[0], 1), slot, jnp.int32)
    y_B1D, cache, _ = self.local(x_B1D, self.local_window, pos_B1, cache)
    return y_B1D[:, 0], cache

  def text_logits(self, local_hidden: jax.Array, turn: jax.Array, said: jax.Array,
                  memory: CopyMemory | None) -> jax.Array:
    """float32 [B, ..., vocab] from local hidden states [B, ..., d_local] of text slots in
    micro-turns `turn` [B, ...]: through their own table, or with `model.text_head="tied"`
    projected to d_model and scored against the text embedding table (scaled by 1/sqrt(d_model)).
    With `model.text_copy` they are log-probabilities mixing those logits with the copy head's
    pointer over the bg tokens of `memory` (models/copy_head.py), which with `model.copy_follow`
    reads the last word each slot's stream said before it, `said` [B, ...] (PAD for none)."""
    if self.tied_text_head:
      logits = self.text_embed.decode(self.text_head(local_hidden))
    else:
      logits = self.text_head(local_hidden, out_dtype=jnp.float32)
    if self.copy is None:
      return logits
    b = logits.shape[0]
    mixed = self.copy(logits.reshape(b, -1, logits.shape[-1]),
                      local_hidden.reshape(b, -1, local_hidden.shape[-1]), turn.reshape(b, -1),
                      said.reshape(b, -1), memory)
    return mixed.reshape(logits.shape)

  def init_copy_memory(self, batch: int) -> CopyMemory | None:
    """A streaming session's empty ring of bg tokens to copy from (None without a copy head)."""
    if self.copy is None:
      return None
    return CopyMemory.empty(batch, self.window.window_turns, self.layout.count(SlotKind.BG),
                            self.copy.key.w.shape[-1], self.precision.dtype)

  def bg_keys(self, input_hidden: jax.Array) -> jax.Array:
    """Copy keys [..., K_bg, d_local] of the bg tokens of input segments from their temporal
    hidden states [..., input_len, D]."""
    first = self.layout.offset(SlotKind.BG)
    return self.copy.key(input_hidden[..., first:first + self.layout.count(SlotKind.BG), :])

  def voicing_logits(self, local_hidden: jax.Array) -> jax.Array:
    """float32 [...]: logit that the audio slot of each local hidden state [..., d_local] is
    voiced (`streams.dmel.voiced` of its target)."""
    return self.voicing_head(local_hidden, out_dtype=jnp.float32)[..., 0]

  def sample_audio(self, local_hidden: jax.Array, voiced: jax.Array,
                   noise: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(mel in unit range float32 [..., k, M], dMel bins uint8 [..., k, M]) of audio slots.

    Where `voiced` (bool [...]) is False the slot is exact silence-mel; the flow head runs (from
    the standard-normal `noise` [..., k, M]) only when some slot is voiced, and its mel is
    re-quantised to bins for feedback.
    """
    silence = jnp.full(noise.shape, bins_to_unit(jnp.asarray(SILENCE_BIN), self.dmel_bins))
    mel = jax.lax.cond(jnp.any(voiced),
                       lambda: self.flow.sample(local_hidden, noise, self.flow_steps),
                       lambda: silence)
    mel = jnp.where(voiced[..., None, None], mel, silence)
    return mel, unit_to_bins(mel, self.dmel_bins)

  # Counting ------------------------------------------------------------------------------------

  def weight_applications(self, path: tuple[str, ...]) -> float:
    """How many times the matmul weight at `path` (in this model's parameter tree) is applied
    in the forward of one micro-turn: what counting.py charges FLOPs for. The local decoder
    runs only over the K output slots, the flow head once per audio slot (one velocity
    evaluation), the hMLP stages per video patch, the text table (looked up, otherwise) per text
    slot when it is the tied text head, the copy head's key per bg slot and its query and gate
    per text slot; MoE experts count the k routed experts of a token, not the room a capacity
    factor leaves (model FLOPs, as in MFU)."""
    layout = self.layout
    part = path[0]
    if part == "temporal":
      dims = self.temporal.dims
      experts = dims.num_experts and "mlp" in path and path[-1] != "router"
      return layout.turn_len * (dims.experts_per_token / dims.num_experts if experts else 1.0)
    if part == "video_stem":
      per_patch = {"stage1": (layout.patch // 4) ** 2, "stage2": (layout.patch // 8) ** 2,
                   "stage3": 1}[path[1]]
      return layout.count(SlotKind.VIDEO) * per_patch
    text_slots, audio_slots = (len(layout.token_slots(t)) for t in (Token.TEXT, Token.DMEL))
    if part == "copy":  # keys of the bg tokens; queries and gates of the text slots
      return layout.count(SlotKind.BG) if path[1] == "key" else text_slots
    return {"time_proj": 1, "local_from_temporal": 1, "local_from_slots": layout.output_len - 1,
            "local": layout.output_len, "text_head": text_slots, "voicing_head": audio_slots,
            "scene_head": 1,
            "flow": audio_slots, "text_embed": text_slots if self.tied_text_head else 0,
            "dmel_embed": 0}[part]

  # Training forward ------------------------------------------------------------------------

  def __call__(self, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Teacher-forced forward over a batch of windows (layout.py format).

    Returns text_logits float32 [B, N, K_text, vocab] (user transcript then model text slots,
    in layout order), voicing_logits float32 [B, N, K_ao], local_hidden
    [B, N, output_len, d_local], temporal_hidden [B, N * turn_len, D], moe_aux_loss (a
    scalar) and, with a scene head, scene_logits float32 [B, N] (read from the temporal hidden
    state the local decoder starts from).
    """
    layout = self.layout
    x_BNLD = self.embed_turns(batch)
    b, n, l, d = x_BNLD.shape
    h_BTD, _, aux_loss = self.temporal(x_BNLD.reshape(b, n * l, d), self.window)
    h_BNLD = h_BTD.reshape(b, n, l, d)
    last_BND = h_BNLD[:, :, layout.last_input]
    outputs_BNKD = x_BNLD[:, :, layout.input_len:]
    local_hidden = self.local_decode(last_BND.reshape(b * n, d),
                                     outputs_BNKD.reshape(b * n, layout.output_len, d))
    local_hidden = sharding.constrain(local_hidden.reshape(b, n, layout.output_len, -1),
                                      ("batch", None, None, "embed"))
    text_hidden = jnp.take(local_hidden, layout.token_slots(Token.TEXT), axis=2)
    audio_hidden = jnp.take(local_hidden, layout.token_slots(Token.DMEL), axis=2)
    memory = (CopyMemory.of_window(self.bg_keys(h_BNLD[:, :, :layout.input_len]), batch["bg"])
              if self.copy is not None else None)
    turn_BNK = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32)[:, None], text_hidden.shape[:3])
    said = {g.key: previous_words(batch[g.key]) for g, _ in layout.output_segment()
            if g.token is Token.TEXT}
    said_BNK = jnp.stack([said[g.key][:, :, i] for g, i in layout.output_segment()
                          if g.token is Token.TEXT], axis=2)
    outputs = {"text_logits": self.text_logits(text_hidden, turn_BNK, said_BNK, memory),
               "voicing_logits": self.voicing_logits(audio_hidden), "local_hidden": local_hidden,
               "temporal_hidden": h_BTD, "moe_aux_loss": aux_loss}
    if self.scene_head is not None:
      outputs["scene_logits"] = self.scene_head(last_BND, out_dtype=jnp.float32)[..., 0]
    return outputs


# Counting: this kind's terms of models/counting.py (through registry.ModelKind) ----------------


def _visible_keys_per_turn(config: ml_collections.ConfigDict, layout: Layout) -> float:
  """Keys visible to the queries of one micro-turn, averaged over a training window."""
  m = config.model
  pos = layout.positions(config.data.window)
  visible = attention_mask(pos, pos, layout.turn_len, m.window_turns, m.sinks).sum()
  return float(visible) / config.data.window


def train_flops_per_token(config: ml_collections.ConfigDict, forward_matmul_flops: float
                          ) -> float:
  """3 x the forward FLOPs of one micro-turn / turn_len. The forward: its matmuls
  (`forward_matmul_flops`, by `InteractionModel.weight_applications`)
  + temporal attention: n_layers * 4 * n_heads * head_dim * (keys visible to a query, summed
    over the turn_len queries; averaged over the positions of a training window of
    data.window micro-turns under the window-plus-sinks mask)
  + local attention: local_layers * 4 * local_heads * local_head_dim * sum_{j<K} (j + 1)."""
  layout = Layout.from_config(config.stream)
  m = config.model
  temporal_attention = (m.n_layers * 4.0 * m.n_heads * m.head_dim *
                        _visible_keys_per_turn(config, layout))
  local = InteractionConfig.from_config(config).local
  k = layout.output_len
  local_attention = local.n_layers * 4.0 * local.n_heads * local.head_dim * k * (k + 1) / 2
  return 3.0 * (forward_matmul_flops + temporal_attention + local_attention) / layout.turn_len


def describe(config: ml_collections.ConfigDict, parts: dict[str, int], flops: float) -> str:
  """Sizes of the temporal model, the local decoder and the micro-turn, `parts` (parameters
  per top-level part) and `flops` (training FLOPs per token) per second of stream."""
  layout = Layout.from_config(config.stream)
  m = config.model
  total = sum(parts.values())
  tokens_per_s = layout.turn_len * 1000 / layout.chunk_ms
  experts = f", {m.num_experts} experts top-{m.experts_per_token}" if m.num_experts else ""
  lines = [
      f"model {config.name}: {total / 1e6:.2f}M parameters",
      (f"  temporal: {m.n_layers} layers, d_model {m.d_model}, {m.n_heads} heads "
       f"({m.n_kv_heads} kv) x {m.head_dim}, d_ff {m.d_ff}{experts}; window "
       f"{m.window_turns} micro-turns + {m.sinks} sinks"),
      (f"  local decoder: {m.local_layers} layers, d_model {m.local_d_model}, "
       f"{m.local_heads} heads, d_ff {m.local_d_ff}; flow head {m.flow_hidden} wide, "
       f"{m.flow_steps} Euler steps{'; copy head over bg tokens' if m.text_copy else ''}"),
      (f"  micro-turn: {layout.turn_len} tokens ({layout.input_len} in, "
       f"{layout.output_len} out) = {tokens_per_s:.0f} tokens per second of stream"),
      "  parameters: " + ", ".join(f"{name} {n / 1e6:.2f}M" for name, n in
                                   sorted(parts.items(), key=lambda item: -item[1])),
      (f"  training FLOPs: {flops / 1e6:.1f}M per token, "
       f"{flops * tokens_per_s / 1e9:.2f}G per second of stream"),
  ]
  return "\n".join(lines)


def train_activations(config: ml_collections.ConfigDict, examples: float, kernel: str
                      ) -> tuple[float, float, float]:
  """Of a micro-batch of `examples` windows: (tokens through the temporal model, keys a query's
  attention logits span under `kernel`, bytes of the activations besides the temporal model:
  the video stem's stages, the local decoder and the text logits)."""
  layout = Layout.from_config(config.stream)
  m = config.model
  act = jnp.dtype(m.dtype).itemsize
  turns = examples * config.data.window
  tokens = turns * layout.turn_len
  keys = (config.data.window * layout.turn_len if kernel == "xla"
          else _visible_keys_per_turn(config, layout) / layout.turn_len)
  patch, width = config.stream.patch, max(m.d_model // 4, 16)
  stem_values = ((patch // 4) ** 2 + (patch // 8) ** 2) * width * 3  # linear, norm, gelu
  local = InteractionConfig.from_config(config).local
  local_kept, local_everything = layer_values_per_token(local, m.remat)
  text_slots = len(layout.token_slots(Token.TEXT))
  head_bytes = (turns * layout.count(SlotKind.VIDEO) * stem_values * act +
                (local_kept * local.n_layers + local_everything) * turns * layout.output_len *
                act + turns * text_slots * m.vocab_size * 4 * 3)
  return tokens, keys, head_bytes
