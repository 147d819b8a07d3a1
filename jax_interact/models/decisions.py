"""The speak-or-stay-silent rules of text and audio slots (SPEC §4), shared by the streaming
sampler, training's own-prediction feedback and the evaluation's diagnostics so that all read the
model's logits the same way."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jax_interact.streams import tokenizer


def greedy_text(logits_BV: jax.Array, silence_threshold: float) -> jax.Array:
  """`<sil>` where its probability is at least `silence_threshold`, else the most likely other
  token. Works on numpy and jax arrays [..., V]."""
  xp = jnp if isinstance(logits_BV, jax.Array) else np
  p_sil = jax.nn.softmax(logits_BV, axis=-1)[..., tokenizer.SIL]
  others = xp.where(xp.arange(logits_BV.shape[-1]) == tokenizer.SIL, -xp.inf, logits_BV)
  return xp.where(p_sil >= silence_threshold, tokenizer.SIL,
                  xp.argmax(others, axis=-1)).astype(xp.int32)


def voiced_decision(voicing_logits: jax.Array, voicing_threshold: float) -> jax.Array:
  """bool [...]: an audio slot is voiced where its voicing probability exceeds
  `voicing_threshold` (compared as logits)."""
  return voicing_logits > math.log(voicing_threshold / (1 - voicing_threshold))
