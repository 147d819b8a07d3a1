"""Training losses (SPEC §4): text cross-entropy, voicing and flow matching on output slots only.

Input slots are never targets. Every output slot carries a weight within its stream
(`slot_weights`): 0 on input slots and in micro-turns outside the episode (turn_mask False),
`silence_weight` on text targets equal to their group's empty value (`<sil>`), 1 otherwise,
and the model's own silent slots (its `<sil>`, its unvoiced audio) scaled by `loss.quiet_scale`
in micro-turns inside a quiet interval (the batch's `quiet` flag) and by
`loss.user_speech_scale` in micro-turns heard while the user says a word (`user_speaks`);
which slots are targets of which stream is the layout's table (streams/layout.py). Audio slots
have two losses: the voicing cross-entropy of every slot against `streams.dmel.voiced` of its
target, and the flow-matching loss of the voiced ones only (an unvoiced slot is exact silence and
skips the flow head). Each stream's loss is its weighted mean; the total is

  loss = transcript_weight * transcript_loss + text_weight * text_loss
         + voicing_weight * voicing_loss + audio_weight * flow_loss
         + moe_aux_weight * moe_aux_loss + scene_event_weight * scene_event_loss,

the last the cross-entropy of the scene head's logit against `scene_event` over the micro-turns
that have a frame (only a model built with `loss.scene_event_weight > 0` has the head).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jax_interact import cli
from jax_interact.errors import ConfigError
from jax_interact.models.decisions import (greedy_text, is_word, previous_ids,
                                           silence_thresholds, voiced_decision)
from jax_interact.models.interaction import InteractionModel
from jax_interact.streams.dmel import SILENCE_BIN, VOICED_MARGIN_BINS, voiced
from jax_interact.streams.layout import Layout, Segment, Target, Token
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
  scene_event: float
  quiet: float
  user_speech: float

  @classmethod
  def from_config(cls, loss_config) -> "LossWeights":
    return cls(text=loss_config.text_weight, transcript=loss_config.transcript_weight,
               voicing=loss_config.voicing_weight, audio=loss_config.audio_weight,
               silence=loss_config.silence_weight, moe_aux=loss_config.moe_aux_weight,
               scene_event=loss_config.scene_event_weight, quiet=loss_config.quiet_scale,
               user_speech=loss_config.user_speech_scale)


def _silent(group, values: jax.Array) -> jax.Array:
  """bool [B, N, n]: which slots of a target group hold silence (`<sil>`, unvoiced audio)."""
  return values == group.empty if group.token is Token.TEXT else ~voicing_targets(values)


def _silence_scale(batch: dict[str, jax.Array], quiet_scale: float,
                   user_speech_scale: float) -> jax.Array | None:
  """float32 [B, N]: how much more the model's own silence weighs in each micro-turn:
  `quiet_scale` in those flagged `quiet`, times `user_speech_scale` in those flagged
  `user_speaks`; None when both are 1."""
  scaled = [(flag, scale) for flag, scale in (("quiet", quiet_scale),
                                              ("user_speaks", user_speech_scale)) if scale != 1.0]
  if not scaled:
    return None
  scale_BN = jnp.ones(batch["turn_mask"].shape)
  for flag, scale in scaled:
    scale_BN = jnp.where(batch[flag], scale * scale_BN, scale_BN)
  return scale_BN


def slot_weights(layout: Layout, batch: dict[str, jax.Array], silence_weight: float,
                 quiet_scale: float = 1.0, user_speech_scale: float = 1.0) -> jax.Array:
  """float32 [B, N, turn_len]: the loss weight of every position of every micro-turn. The
  weight of the model's own silent output slots (not the user transcript's) is scaled by
  `_silence_scale`: `quiet_scale` in the micro-turns flagged `quiet`, `user_speech_scale` in
  those flagged `user_speaks`."""
  silence_scale_BN = _silence_scale(batch, quiet_scale, user_speech_scale)
  groups = []
  for group, n in layout.group_slots:
    shape = batch["turn_mask"].shape + (n,)
    if group.target is None:
      groups.append(jnp.zeros(shape))
      continue
    weight = (jnp.where(batch[group.key] == group.empty, silence_weight, 1.0)
              if group.token is Token.TEXT else jnp.ones(shape))
    if silence_scale_BN is not None and group.target is not Target.TRANSCRIPT:
      weight = jnp.where(_silent(group, batch[group.key]),
                         silence_scale_BN[..., None] * weight, weight)
    groups.append(weight)
  weights = jnp.concatenate(groups, axis=-1).astype(jnp.float32)
  return weights * batch["turn_mask"].astype(jnp.float32)[..., None]


def output_targets(layout: Layout, batch: dict[str, jax.Array],
                   token: Token) -> tuple[np.ndarray, jax.Array, np.ndarray]:
  """(slots_K, targets [B, N, K, ...], streams_K) of the output slots holding `token`, in layout
  order (the order of the model's text or voicing logits): their indices in the output segment,
  their targets and the Target each is a target of."""
  groups = layout.groups(Segment.OUTPUT, token)
  slots_K = layout.token_slots(token)
  targets = jnp.concatenate([batch[g.key] for g in groups], axis=2)
  streams_K = np.array([g.target for g in groups for _ in range(layout.count(g.kind))])
  return slots_K, targets, streams_K


def voicing_targets(audio_BNKkM: jax.Array) -> jax.Array:
  """bool [B, N, K]: which audio slots (dMel bins [B, N, K, k, M]) are voiced, the
  evaluation's definition."""
  return voiced(audio_BNKkM, xp=jnp)


def _weighted_mean(values: jax.Array, weights: jax.Array) -> jax.Array:
  return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1e-6)


# The loss streams of the text the model writes and is fed back: its user transcript, its words.
FED_BACK_TEXT = (Target.TRANSCRIPT, Target.TEXT)


def noise_targets(text: str, where: str = "config.train.feedback_noise_on"
                  ) -> tuple[Target, ...]:
  """"transcript,text" -> the loss streams whose fed-back words `train.feedback_noise` replaces;
  ConfigError naming `where` for anything else."""
  known = {target.value: target for target in FED_BACK_TEXT}
  try:
    names = cli.known_names(text, tuple(known))
  except ValueError as error:
    raise ConfigError(where, str(error)) from None
  return tuple(known[name] for name in names)


def with_feedback_noise(layout: Layout, batch: dict[str, jax.Array], rng: jax.Array,
                        probability: float, vocab_size: int,
                        targets: tuple[Target, ...] = FED_BACK_TEXT
                        ) -> dict[str, jax.Array]:
  """`batch` with each word token of the fed-back text slot groups (the output segment's) whose
  loss stream is one of `targets` replaced by a uniformly random word with `probability`
  (specials and `<sil>` kept)."""
  noisy = dict(batch)
  groups = [group for group in layout.groups(Segment.OUTPUT, Token.TEXT)
            if group.target in targets]
  for group, key in zip(groups, jax.random.split(rng, len(groups))):
    ids = batch[group.key]
    flip_rng, word_rng = jax.random.split(key)
    flip = is_word(ids) & (jax.random.uniform(flip_rng, ids.shape) < probability)
    words = jax.random.randint(word_rng, ids.shape, len(SPECIAL_PIECES), vocab_size, ids.dtype)
    noisy[group.key] = jnp.where(flip, words, ids)
  return noisy


def with_masked_bands(layout: Layout, batch: dict[str, jax.Array], rng: jax.Array, masks: int,
                      max_channels: int) -> dict[str, jax.Array]:
  """`batch` with `masks` bands of 0 to `max_channels` adjacent mel channels of the user's audio
  (the input dMel groups) set to SILENCE_BIN, drawn per example and held across its micro-turns
  (SpecAugment's frequency masks): the model must hear words from the rest of the spectrum.
  The voice the model hears of its own (output groups) is untouched."""
  groups = layout.groups(Segment.INPUT, Token.DMEL)
  n_examples, n_mels = batch[groups[0].key].shape[0], layout.n_mels
  width_rng, start_rng = jax.random.split(rng)
  width_BJ = jax.random.randint(width_rng, (n_examples, masks), 0, max_channels + 1)
  start_BJ = jnp.floor(jax.random.uniform(start_rng, (n_examples, masks)) *
                       (n_mels - width_BJ + 1)).astype(jnp.int32)
  channel_M = jnp.arange(n_mels)
  masked_BM = jnp.any((channel_M >= start_BJ[..., None]) &
                      (channel_M < (start_BJ + width_BJ)[..., None]), axis=1)
  masked = dict(batch)
  for group in groups:
    bins = batch[group.key]
    in_band = masked_BM.reshape(n_examples, *(1,) * (bins.ndim - 2), n_mels)
    masked[group.key] = jnp.where(in_band, jnp.asarray(SILENCE_BIN, bins.dtype), bins)
  return masked


def with_own_predictions(model: InteractionModel, batch: dict[str, jax.Array],
                         rng: jax.Array, probability: float, silence_threshold: float,
                         continue_threshold: float, voicing_threshold: float
                         ) -> dict[str, jax.Array]:
  """`batch` with each fed-back output token replaced, with `probability`, by the model's own
  decision for that slot in a teacher-forced pass (parallel scheduled sampling): streaming feeds
  back what the model said, right or wrong, and in particular its words and voice after it should
  have fallen silent. Text slots take the sampler's greedy rule (its thresholds chosen by the
  fed-back token before each slot); audio slots, when the model hears its own audio as voicing only
  (`audio_feedback="voicing"`), take its voicing decision at the sampler's `voicing_threshold` (a
  voiced decision over an unvoiced target reads as `VOICED_FILL_BIN`; with dMel feedback audio slots
  keep their targets). No gradient flows through the decisions."""
  layout = model.layout
  outputs = jax.lax.stop_gradient(model(batch))
  before_BNK = jnp.concatenate([previous_ids(batch[group.key])
                                for group in layout.groups(Segment.OUTPUT, Token.TEXT)], axis=-1)
  own = {Token.TEXT: greedy_text(outputs["text_logits"], silence_thresholds(
             before_BNK, silence_threshold, continue_threshold)),
         Token.DMEL: voiced_decision(outputs["voicing_logits"], voicing_threshold)}
  fed = dict(batch)
  for token, own_BNK in own.items():
    if token is Token.DMEL and model.audio_feedback != "voicing":
      continue
    first = 0
    for group in layout.groups(Segment.OUTPUT, token):
      n = layout.count(group.kind)
      own_group, first = own_BNK[..., first:first + n], first + n
      target = batch[group.key]
      take = jax.random.uniform(jax.random.fold_in(rng, group.kind), own_group.shape) < probability
      if token is Token.DMEL:
        fill = jnp.where(voiced(target, xp=jnp)[..., None, None], target, VOICED_FILL_BIN)
        own_group = jnp.where(own_group[..., None, None], fill, SILENCE_BIN).astype(target.dtype)
        take = take[..., None, None]
      fed[group.key] = jnp.where(take, own_group, target)
  return fed


def loss_fn(model: InteractionModel, batch: dict[str, jax.Array], rng: jax.Array, *,
            weights: LossWeights, feedback_noise: float = 0.0,
            feedback_noise_on: tuple[Target, ...] = FED_BACK_TEXT,
            own_feedback: float = 0.0,
            freq_masks: int = 0, freq_mask_channels: int = 0, silence_threshold: float = 0.5,
            continue_threshold: float = 0.5, voicing_threshold: float = 0.5
            ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """(scalar loss, metrics) of one batch; `rng` draws the flow-matching noise and times, the
  frequency masks of the user's audio (`with_masked_bands`), the feedback noise
  (`with_feedback_noise`: the model reads noisy tokens, targets stay clean) and which fed-back
  tokens are the model's own (`with_own_predictions`, targets stay clean)."""
  layout = model.layout
  rng, noise_rng = jax.random.split(rng)
  fed = (with_masked_bands(layout, batch, jax.random.fold_in(noise_rng, 2), freq_masks,
                           freq_mask_channels) if freq_masks > 0 else batch)
  if feedback_noise > 0:
    fed = with_feedback_noise(layout, fed, noise_rng, feedback_noise, model.vocab_size,
                              feedback_noise_on)
  if own_feedback > 0:
    fed = with_own_predictions(model, fed, jax.random.fold_in(noise_rng, 1), own_feedback,
                               silence_threshold, continue_threshold, voicing_threshold)
  outputs = model(fed)
  output_weights = slot_weights(layout, batch, weights.silence, weights.quiet,
                                weights.user_speech)[..., layout.input_len:]

  text_slots, targets_BNK, text_streams_K = output_targets(layout, batch, Token.TEXT)
  text_weights_BNK = output_weights[..., text_slots]
  logits_BNKV = outputs["text_logits"]
  log_probs = jax.nn.log_softmax(logits_BNKV, axis=-1)
  nll_BNK = -jnp.take_along_axis(log_probs, targets_BNK[..., None], axis=-1)[..., 0]
  transcript_loss = _weighted_mean(nll_BNK,
                                   text_weights_BNK * (text_streams_K == Target.TRANSCRIPT))
  text_loss = _weighted_mean(nll_BNK, text_weights_BNK * (text_streams_K == Target.TEXT))

  audio_slots, audio_BNKkM, _ = output_targets(layout, batch, Token.DMEL)
  audio_weights_BNK = output_weights[..., audio_slots]
  voiced_BNK = voicing_targets(audio_BNKkM)
  voicing_logits_BNK = outputs["voicing_logits"]
  voicing_BNK = optax.sigmoid_binary_cross_entropy(voicing_logits_BNK,
                                                   voiced_BNK.astype(jnp.float32))
  voicing_loss = _weighted_mean(voicing_BNK, audio_weights_BNK)
  cond_BNKC = jnp.take(outputs["local_hidden"], audio_slots, axis=2)
  flow_BNK = model.flow.loss(cond_BNKC, audio_BNKkM, model.dmel_bins, rng)
  flow_loss = _weighted_mean(flow_BNK, audio_weights_BNK * voiced_BNK)

  loss = (weights.transcript * transcript_loss + weights.text * text_loss +
          weights.voicing * voicing_loss + weights.audio * flow_loss +
          weights.moe_aux * outputs["moe_aux_loss"])
  scene_metrics = {}
  if "scene_logits" in outputs:
    seen_BN = (batch["turn_mask"] & batch["video_mask"]).astype(jnp.float32)
    event_BN = batch["scene_event"].astype(jnp.float32)
    scene_loss = _weighted_mean(
        optax.sigmoid_binary_cross_entropy(outputs["scene_logits"], event_BN), seen_BN)
    loss = loss + weights.scene_event * scene_loss
    scene_metrics = {"scene_event_loss": scene_loss,
                     "scene_event_recall": _weighted_mean(outputs["scene_logits"] > 0,
                                                          seen_BN * event_BN)}
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
      "text_accuracy": _weighted_mean(correct, spoken * (text_streams_K == Target.TEXT)),
      "transcript_accuracy": _weighted_mean(correct,
                                            spoken * (text_streams_K == Target.TRANSCRIPT)),
      "tokens": jnp.sum(batch["turn_mask"].astype(jnp.float32)) * layout.turn_len,
      "moe_aux_loss": outputs["moe_aux_loss"],
      **scene_metrics,
  }
  return loss, metrics
