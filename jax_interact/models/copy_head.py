"""The copy head (`model.text_copy`): text slots may say a background-result token by pointing at it.

A calculator's answer ("▁85") reaches the model in the bg slots a few micro-turns before it has
to say it; a generative head must carry the token's identity through the temporal model to the
output slot, and at CPU scale it does not learn to (docs/BENCHMARKS.md, "Delegate: the copy of
the calculator's answer is not learned"). The copy head gives that path directly, as a
pointer-generator does: each text slot's local hidden state queries keys made from the temporal
hidden states at the bg positions of the micro-turns it can see (its own and the `window_turns -
1` before, as the temporal attention), and a gate mixes the generative distribution with the
pointer's, scattered onto the tokens pointed at:

  p(token) = (1 - g) * softmax(generative logits) + g * sum_{m: id_m = token} softmax(scores)_m

With `model.copy_follow` the pointer also knows where a copy goes on: each bg token remembers the
bg token that arrived before it, and where that one is the last word the text slot's stream said
(across any silence since), a bias learned per slot (`follow`) raises its score and opens the
gate. A number split into two pieces ("▁46", "2") then ends with the piece after the one just
said, and a result the model began while it was still arriving goes on where it stopped
(docs/BENCHMARKS.md, "Copy what follows").

Training builds the memory of a whole window (`CopyMemory.of_window`); a streaming session keeps
a ring of the last `window_turns` micro-turns' keys and ids beside the KV cache
(`CopyMemory.empty`, `CopyMemory.write`). Slots with no visible bg token use the generative
distribution alone. Its query, gate and key weights are counted as matmuls
(`InteractionModel.weight_applications`); the pointer's scores (text slots x visible bg tokens x
d_local per micro-turn) are not: 0.35% of a micro-turn's forward FLOPs in recipe_cpu.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from jax_interact.models.decisions import is_word
from jax_interact.models.layers import Dense, Precision
from jax_interact.models.window import attention_mask
from jax_interact.streams.tokenizer import PAD

# Stands for log(0) where a finite value keeps gradients finite.
_LOG_ZERO = -1e30


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class CopyMemory:
  """The bg tokens a text slot may copy: keys, ids, the micro-turn each came in (-1: empty) and
  the bg token before each (`<pad>` for none); `last_B` is the last bg token written."""

  keys_BMC: jax.Array
  ids_BM: jax.Array  # int32
  turn_BM: jax.Array  # int32
  before_BM: jax.Array  # int32
  last_B: jax.Array  # int32

  @classmethod
  def empty(cls, batch: int, turns: int, slots: int, dim: int, dtype) -> CopyMemory:
    """A ring for `turns` micro-turns of `slots` bg tokens each."""
    m = turns * slots
    return cls(keys_BMC=jnp.zeros((batch, m, dim), dtype), ids_BM=jnp.full((batch, m), PAD),
               turn_BM=jnp.full((batch, m), -1, jnp.int32), before_BM=jnp.full((batch, m), PAD),
               last_B=jnp.full((batch,), PAD))

  @classmethod
  def of_window(cls, keys_BNKC: jax.Array, ids_BNK: jax.Array) -> CopyMemory:
    """The memory of a training window: the bg keys and ids of its N micro-turns, numbered 0..N-1
    (only differences of micro-turns matter)."""
    b, n, k, c = keys_BNKC.shape
    ids_BM = ids_BNK.reshape(b, n * k).astype(jnp.int32)
    turn_BM = jnp.broadcast_to(jnp.repeat(jnp.arange(n, dtype=jnp.int32), k), (b, n * k))
    before_BM, last_B = _tokens_before(ids_BM, jnp.full((b,), PAD))
    return cls(keys_BMC=keys_BNKC.reshape(b, n * k, c), ids_BM=ids_BM, turn_BM=turn_BM,
               before_BM=before_BM, last_B=last_B)

  def write(self, keys_BKC: jax.Array, ids_BK: jax.Array, turn_B: jax.Array) -> CopyMemory:
    """The ring with micro-turn `turn_B`'s bg keys and ids in place of the oldest micro-turn's."""
    k = ids_BK.shape[1]
    ids_BK = ids_BK.astype(jnp.int32)
    before_BK, last_B = _tokens_before(ids_BK, self.last_B)
    start_B = (turn_B % (self.ids_BM.shape[1] // k)) * k
    put = jax.vmap(lambda ring, new, start: jax.lax.dynamic_update_slice_in_dim(ring, new, start, 0))
    return CopyMemory(keys_BMC=put(self.keys_BMC, keys_BKC.astype(self.keys_BMC.dtype), start_B),
                      ids_BM=put(self.ids_BM, ids_BK, start_B),
                      turn_BM=put(self.turn_BM, jnp.broadcast_to(turn_B[:, None], ids_BK.shape),
                                  start_B),
                      before_BM=put(self.before_BM, before_BK, start_B), last_B=last_B)


def previous_words(ids_BNK: jax.Array) -> jax.Array:
  """The last word (`decisions.is_word`) a text stream [B, N, K] said before each of its slots,
  across any silence between; PAD before the first."""
  b, n, k = ids_BNK.shape
  flat_BL = ids_BNK.reshape(b, n * k)
  before_BL, _ = _latest_before(flat_BL, is_word(flat_BL), jnp.full((b,), PAD, flat_BL.dtype))
  return before_BL.reshape(b, n, k)


def _tokens_before(ids_BM: jax.Array, last_B: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(the bg token before each of `ids_BM` in arrival order, skipping empty slots, with `last_B`
  before the first; the last of them all)."""
  return _latest_before(ids_BM, ids_BM != PAD, last_B)


def _latest_before(ids_BL: jax.Array, kept_BL: jax.Array, first_B: jax.Array
                   ) -> tuple[jax.Array, jax.Array]:
  """(for each position, the latest id before it where `kept_BL`, `first_B` where none; the
  latest kept id of the whole row, `first_B` where none)."""
  ids_BL = jnp.concatenate([first_B[:, None], ids_BL], axis=1)
  position_BL = jnp.where(jnp.pad(kept_BL, ((0, 0), (1, 0))), jnp.arange(ids_BL.shape[1]), 0)
  latest_BL = jnp.take_along_axis(ids_BL, jax.lax.cummax(position_BL, axis=1), axis=1)
  return latest_BL[:, :-1], latest_BL[:, -1]


class CopyHead(nnx.Module):
  """Keys from temporal hidden states (d_model), queries and gates from local ones (d_local)."""

  def __init__(self, d_model: int, d_local: int, window_turns: int, precision: Precision, *,
               follow: bool, rngs: nnx.Rngs):
    self.window_turns = window_turns
    self.key = Dense(d_model, d_local, ("embed", None), precision, rngs=rngs)
    self.query = Dense(d_local, d_local, ("embed", None), precision, rngs=rngs)
    self.gate = Dense(d_local, 1, ("embed", None), precision, rngs=rngs, use_bias=True)
    # Per slot: the bias of the bg token after the last word said, on its score and on the gate.
    self.follow = (Dense(d_local, 2, ("embed", None), precision, rngs=rngs, use_bias=True)
                   if follow else None)

  def __call__(self, logits_BQV: jax.Array, hidden_BQD: jax.Array, turn_BQ: jax.Array,
               said_BQ: jax.Array, memory: CopyMemory) -> jax.Array:
    """float32 log-probabilities [B, Q, V] of Q text slots (micro-turn `turn_BQ`, local hidden
    states `hidden_BQD`, the last word each one's stream said before it `said_BQ`, PAD for none)
    mixing the generative `logits_BQV` with the pointer over `memory`."""
    query_BQC = self.query(hidden_BQD, out_dtype=jnp.float32)
    scores_BQM = jnp.einsum("bqc,bmc->bqm", query_BQC, memory.keys_BMC.astype(jnp.float32))
    scores_BQM = scores_BQM / jnp.sqrt(jnp.float32(query_BQC.shape[-1]))
    # The temporal attention's window rule, with micro-turns as positions (one token each).
    visible_BQM = (attention_mask(turn_BQ, memory.turn_BM, 1, self.window_turns, 0) &
                   (memory.ids_BM != PAD)[:, None, :])
    gate_BQ = self.gate(hidden_BQD, out_dtype=jnp.float32)[..., 0]
    if self.follow is not None:
      follows_BQM = (visible_BQM & (said_BQ != PAD)[..., None] &
                     (memory.before_BM[:, None, :] == said_BQ[..., None]))
      bias_BQ2 = self.follow(hidden_BQD, out_dtype=jnp.float32)
      scores_BQM = scores_BQM + bias_BQ2[..., :1] * follows_BQM
      gate_BQ = gate_BQ + bias_BQ2[..., 1] * jnp.any(follows_BQM, axis=-1)
    pointer_BQM = jax.nn.softmax(jnp.where(visible_BQM, scores_BQM, _LOG_ZERO), axis=-1)
    ids_BMV = jax.nn.one_hot(memory.ids_BM, logits_BQV.shape[-1], dtype=jnp.float32)
    copy_BQV = jnp.einsum("bqm,bmv->bqv", pointer_BQM, ids_BMV)
    log_copy_BQV = jnp.where(copy_BQV > 0, jnp.log(jnp.where(copy_BQV > 0, copy_BQV, 1.0)),
                             _LOG_ZERO)
    log_generate_BQV = jax.nn.log_softmax(logits_BQV.astype(jnp.float32), axis=-1)
    mixed_BQV = jnp.logaddexp(jax.nn.log_sigmoid(-gate_BQ)[..., None] + log_generate_BQV,
                              jax.nn.log_sigmoid(gate_BQ)[..., None] + log_copy_BQV)
    return jnp.where(jnp.any(visible_BQM, axis=-1)[..., None], mixed_BQV, log_generate_BQV)
