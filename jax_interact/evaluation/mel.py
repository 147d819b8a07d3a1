"""Teacher-forced mel L1 of the audio head on held-out windows.

Windows come from the caller (the evaluation pipeline's ordered pass over the split). A forward
pass is teacher-forced on the reference streams; every audio output slot inside the episode is
sampled as streaming samples it (silence-mel unless its voicing logit says voiced, else the flow
head from that slot's `local_hidden`), and the L1 distance to the target mel (the reference dMel
bins' centres in the unit range of models/flow.py) is averaged over slots, frames
and channels. `silent_mel_l1` is the same distance for a silence-mel output (the silent
baseline).
"""

from __future__ import annotations

import itertools
from typing import Iterable

import jax
import jax.numpy as jnp
from flax import nnx

from jax_interact.models.decisions import voiced_decision
from jax_interact.models.flow import bins_to_unit
from jax_interact.models.interaction import InteractionModel
from jax_interact.streams.dmel import SILENCE_BIN
from jax_interact.streams.layout import SlotKind


def mel_l1(model: InteractionModel, batches: Iterable[dict], max_batches: int,
           voicing_threshold: float, seed: int = 0) -> dict[str, float | None]:
  """{"mel_l1", "silent_mel_l1", "mel_slots"} over the first `max_batches` of `batches`, the
  model's audio voiced where the sampler would voice it (`voicing_threshold`)."""
  graphdef, state = nnx.split(model)
  audio_slots = model.layout.output_slots((SlotKind.AUDIO_OUT,))
  n_bins = model.dmel_bins

  @jax.jit
  def sums(state, batch, rng):
    model = nnx.merge(graphdef, state)
    outputs = model(batch)
    hidden = jnp.take(outputs["local_hidden"], audio_slots, axis=2)
    noise = jax.random.normal(rng, batch["audio_out"].shape, jnp.float32)
    mel_BNKFM, _ = model.sample_audio(
        hidden, voiced_decision(outputs["voicing_logits"], voicing_threshold), noise)
    target = bins_to_unit(batch["audio_out"], n_bins)
    silence = bins_to_unit(jnp.full((), SILENCE_BIN), n_bins)
    mask_BNK = jnp.broadcast_to(batch["turn_mask"][..., None], mel_BNKFM.shape[:3])
    l1 = lambda x: jnp.sum(jnp.mean(jnp.abs(x - target), axis=(-2, -1)) * mask_BNK)
    return l1(mel_BNKFM), l1(silence), jnp.sum(mask_BNK)

  totals = jnp.zeros(3)
  for i, batch in enumerate(itertools.islice(batches, max_batches)):
    totals += jnp.stack(sums(state, batch, jax.random.fold_in(jax.random.key(seed), i)))
  model_sum, silent_sum, slots = (float(x) for x in totals)
  mean = lambda total: total / slots if slots else None
  return {"mel_l1": mean(model_sum), "silent_mel_l1": mean(silent_sum), "mel_slots": int(slots)}
