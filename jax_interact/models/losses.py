"""Training losses (SPEC §4): text cross-entropy, voicing and flow matching on output slots only.

Input slots are never targets. Every output slot carries a weight within its stream
(`slot_weights`): 0 on input slots and in micro-turns outside the episode (turn_mask False),
`silence_weight` on text targets equal to `<sil>`, 1 otherwise. Audio slots have two losses:
the voicing cross-entropy of every slot against `streams.dmel.voiced` of its target, and the
flow-matching loss of the voiced ones only (an unvoiced slot is exact silence and skips the flow
head). Each stream's loss is its weighted mean; the total is

  loss = transcript_weight * transcript_loss + text_weight * text_loss
         + voicing_weight * voicing_loss + audio_weight * flow_loss
         + moe_aux_weight * moe_aux_loss.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from jax_interact.models.decisions import greedy_text
from jax_interact.models.interaction import InteractionModel
from jax_interact.streams.dmel import SILENCE_BIN, VOICED_MARGIN_BINS, voiced
from jax_interact.streams.layout import GROUP_KEYS, TEXT_OUTPUT_KINDS, Layout, SlotKind
from jax_interact.streams.tokenizer import SIL, SPECIAL_PIECES

# What an audio token the model decided to voice reads as when fed back as voicing only.
VOICED_FILL_BIN = int(SILENCE_BIN + 2 * VOICED_MARGIN_BINS)


@dataclasses.dataclass(frozen=True)
class LossWeights:
  text: float
  transcript: float
  voicing: float
  audio: float
  silence: float
  moe_aux: float

  @classmethod
  def from_config(cls, loss_config) -> "LossWeights":
    return cls(text=loss_config.text_weight, transcript=loss_config.transcript_weight,
               voicing=loss_config.voicing_weight, audio=loss_config.audio_weight, silence=loss_config.silence_weight,
               moe_aux=loss_config.moe_aux_weight)


def slot_weights(layout: Layout, batch: dict[str, jax.Array],
                 silence_weight: float) -> jax.Array:
  """float32 [B, N, turn_len]: the loss weight of every position of every micro-turn."""
  groups = []
  for kind, n in layout.counts:
    if kind in TEXT_OUTPUT_KINDS:
      groups.append(jnp.where(batch[GROUP_KEYS[kind]] == SIL, silence_weight, 1.0))
    else:
      shape = batch["turn_mask"].shape + (n,)
      groups.append(jnp.full(shape, 1.0 if kind == SlotKind.AUDIO_OUT else 0.0))
  weights = jnp.concatenate(groups, axis=-1).astype(jnp.float32)
  return weights * batch["turn_mask"].astype(jnp.float32)[..., None]


def voicing_targets(batch: dict[str, jax.Array]) -> jax.Array:
  """bool [B, N, K_ao]: which audio output slots are voiced, the evaluation's definition."""
  return voiced(batch["audio_out"], xp=jnp)


def _weighted_mean(values: jax.Array, weights: jax.Array) -> jax.Array:
  return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1e-6)


def with_feedback_noise(batch: dict[str, jax.Array], rng: jax.Array, probability: float,
                        vocab_size: int) -> dict[str, jax.Array]:
  """`batch` with each word token of the fed-back text slot groups (user transcript, model text)
  replaced by a uniformly random word with `probability` (specials and `<sil>` kept)."""
  noisy = dict(batch)
  for kind, key in zip(TEXT_OUTPUT_KINDS, jax.random.split(rng, len(TEXT_OUTPUT_KINDS))):
    ids = batch[GROUP_KEYS[kind]]
    flip_rng, word_rng = jax.random.split(key)
    flip = (ids >= len(SPECIAL_PIECES)) & (jax.random.uniform(flip_rng, ids.shape) < probability)
    words = jax.random.randint(word_rng, ids.shape, len(SPECIAL_PIECES), vocab_size, ids.dtype)
    noisy[GROUP_KEYS[kind]] = jnp.where(flip, words, ids)
  return noisy


def with_own_predictions(model: InteractionModel, batch: dict[str, jax.Array],
                         rng: jax.Array, probability: float,
                         silence_threshold: float) -> dict[str, jax.Array]:
  """`batch` with each fed-back output token replaced, with `probability`, by the model's own
  decision for that slot in a teacher-forced pass (parallel scheduled sampling): streaming feeds
  back what the model said, right or wrong, and in particular its words and voice after it
  should have fallen silent. Text slots take the sampler's greedy rule; audio slots, when the
  model hears its own audio as voicing only (`audio_feedback="voicing"`), take its voicing
  decision (a voiced decision over an unvoiced target reads as `VOICED_FILL_BIN`; with dMel
  feedback audio slots keep their targets). No gradient flows through the decisions."""
  outputs = jax.lax.stop_gradient(model(batch))
  own = {SlotKind.AUDIO_OUT: outputs["voicing_logits"] > 0}
  text_BNK = greedy_text(outputs["text_logits"], silence_threshold)
  first = 0
  for kind, n in model.layout.counts:
    if kind in TEXT_OUTPUT_KINDS:
      own[kind], first = text_BNK[..., first:first + n], first + n
  fed = dict(batch)
  for kind, own_value in own.items():
    key = GROUP_KEYS[kind]
    take = jax.random.uniform(jax.random.fold_in(rng, kind), batch[key].shape[:3]) < probability
    if kind == SlotKind.AUDIO_OUT:
      if model.audio_feedback != "voicing":
        continue
      bins = batch[key]
      own_bins = jnp.where(own_value[..., None, None],
                           jnp.where(voiced(bins, xp=jnp)[..., None, None], bins,
                                     VOICED_FILL_BIN), SILENCE_BIN).astype(bins.dtype)
      fed[key] = jnp.where(take[..., None, None], own_bins, bins)
    else:
      fed[key] = jnp.where(take, own_value, batch[key])
  return fed


def loss_fn(model: InteractionModel, batch: dict[str, jax.Array], rng: jax.Array, *,
            weights: LossWeights, feedback_noise: float = 0.0, own_feedback: float = 0.0,
            silence_threshold: float = 0.5) -> tuple[jax.Array, dict[str, jax.Array]]:
  """(scalar loss, metrics) of one batch; `rng` draws the flow-matching noise and times, the
  feedback noise (`with_feedback_noise`: the model reads noisy tokens, targets stay clean) and
  which fed-back tokens are the model's own (`with_own_predictions`, targets stay clean)."""
  layout = model.layout
  rng, noise_rng = jax.random.split(rng)
  fed = (with_feedback_noise(batch, noise_rng, feedback_noise, model.vocab_size)
         if feedback_noise > 0 else batch)
  if own_feedback > 0:
    fed = with_own_predictions(model, fed, jax.random.fold_in(noise_rng, 1), own_feedback,
                               silence_threshold)
  outputs = model(fed)
  output_weights = slot_weights(layout, batch, weights.silence)[..., layout.input_len:]

  text_slots = layout.output_slots(TEXT_OUTPUT_KINDS)
  text_kinds = layout.kinds()[layout.input_len:][text_slots]
  targets_BNK = jnp.concatenate([batch[GROUP_KEYS[k]] for k, _ in layout.counts
                                 if k in TEXT_OUTPUT_KINDS], axis=-1)
  text_weights_BNK = output_weights[..., text_slots]
  logits_BNKV = outputs["text_logits"]
  log_probs = jax.nn.log_softmax(logits_BNKV, axis=-1)
  nll_BNK = -jnp.take_along_axis(log_probs, targets_BNK[..., None], axis=-1)[..., 0]
  is_transcript = text_kinds == SlotKind.USER_TRANSCRIPT
  transcript_loss = _weighted_mean(nll_BNK, text_weights_BNK * is_transcript)
  text_loss = _weighted_mean(nll_BNK, text_weights_BNK * ~is_transcript)

  audio_slots = layout.output_slots((SlotKind.AUDIO_OUT,))
  audio_weights_BNK = output_weights[..., audio_slots]
  voiced_BNK = voicing_targets(batch)
  voicing_logits_BNK = outputs["voicing_logits"]
  voicing_BNK = optax.sigmoid_binary_cross_entropy(voicing_logits_BNK,
                                                   voiced_BNK.astype(jnp.float32))
  voicing_loss = _weighted_mean(voicing_BNK, audio_weights_BNK)
  cond_BNKC = jnp.take(outputs["local_hidden"], audio_slots, axis=2)
  flow_BNK = model.flow.loss(cond_BNKC, batch["audio_out"], model.dmel_bins, rng)
  flow_loss = _weighted_mean(flow_BNK, audio_weights_BNK * voiced_BNK)

  loss = (weights.transcript * transcript_loss + weights.text * text_loss +
          weights.voicing * voicing_loss + weights.audio * flow_loss +
          weights.moe_aux * outputs["moe_aux_loss"])
  spoken = (targets_BNK != SIL) & (text_weights_BNK > 0)
  correct = jnp.argmax(logits_BNKV, axis=-1) == targets_BNK
  metrics = {
      "loss": loss,
      "text_loss": text_loss,
      "transcript_loss": transcript_loss,
      "flow_loss": flow_loss,
      "voicing_loss": voicing_loss,
      "voicing_accuracy": _weighted_mean((voicing_logits_BNK > 0) == voiced_BNK,
                                         audio_weights_BNK),
      "text_accuracy": _weighted_mean(correct, spoken),
      "tokens": jnp.sum(batch["turn_mask"].astype(jnp.float32)) * layout.turn_len,
      "moe_aux_loss": outputs["moe_aux_loss"],
  }
  return loss, metrics
