"""The speak-or-stay-silent rules of text and audio slots (SPEC §4), shared by the streaming
sampler, training's own-prediction feedback and the evaluation's diagnostics so that all read the
model's logits the same way."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jax_interact.streams import tokenizer


def greedy_text(logits_BV: jax.Array, silence_threshold: float | jax.Array) -> jax.Array:
  """`<sil>` where its probability is at least `silence_threshold` (one, or one per slot: see
  `silence_thresholds`), else the most likely other token. Works on numpy and jax arrays
  [..., V]."""
  xp = jnp if isinstance(logits_BV, jax.Array) else np
  p_sil = jax.nn.softmax(logits_BV, axis=-1)[..., tokenizer.SIL]
  others = xp.where(xp.arange(logits_BV.shape[-1]) == tokenizer.SIL, -xp.inf, logits_BV)
  return xp.where(p_sil >= silence_threshold, tokenizer.SIL,
                  xp.argmax(others, axis=-1)).astype(xp.int32)


def is_word(ids: jax.Array) -> jax.Array:
  """bool [...]: token ids that are words (not `<sil>`, `<pad>` or another special)."""
  return ids >= len(tokenizer.SPECIAL_PIECES)


def previous_ids(ids_BNK: jax.Array) -> jax.Array:
  """The token before each slot in its own stream [..., N, K]: the slot before it in micro-turn
  n, or the last of micro-turn n - 1; PAD before the first."""
  xp = jnp if isinstance(ids_BNK, jax.Array) else np
  flat = ids_BNK.reshape(*ids_BNK.shape[:-2], -1)
  shifted = xp.concatenate([xp.full_like(flat[..., :1], tokenizer.PAD), flat[..., :-1]], axis=-1)
  return shifted.reshape(ids_BNK.shape)


def silence_thresholds(previous: jax.Array, silence_threshold: float,
                       continue_threshold: float) -> jax.Array:
  """Per slot, the P(`<sil>`) from which it stays silent, given the token before it
  (`previous_ids`): `continue_threshold` after a word piece (speech going on, e.g. the last
  piece of a number split into two), else `silence_threshold` (speech starting)."""
  xp = jnp if isinstance(previous, jax.Array) else np
  speaking = ~xp.isin(previous, xp.asarray(sorted(tokenizer.EMPTY_IDS)))
  return xp.where(speaking, continue_threshold, silence_threshold)


def voiced_decision(voicing_logits: jax.Array, voicing_threshold: float) -> jax.Array:
  """bool [...]: an audio slot is voiced where its voicing probability exceeds
  `voicing_threshold` (compared as logits)."""
  return voicing_logits > math.log(voicing_threshold / (1 - voicing_threshold))
