"""Streaming sessions (SPEC §7): the pure, jitted micro-turn step over a ring-buffer KV cache.

`SessionState` holds, for B sessions in one batch, the temporal model's cache
(`model.init_cache`: per layer, keys and values in a ring buffer of `sinks + window_turns *
turn_len` slots, sinks first and never overwritten, with the absolute position each slot holds),
the next micro-turn index, the previous micro-turn's output segment (fed to the temporal model
at the start of the next step) and a PRNG key per session. Its size is fixed when the session
starts, however long it runs.

`step(model, state, chunk)` for micro-turn t:
  1. embeds [output segment of t-1] + [input segment of t] (turn_len tokens, positions
     (t-1)*L + input_len ... t*L + input_len - 1) and runs the temporal model over them
     against the cache, with the same mask function as training, which writes them into it
     (and, with a copy head, the keys and ids of the input segment's bg tokens into its ring of
     the last window_turns micro-turns);
  2. runs the local decoder slot by slot over the output segment of t (unrolled, each slot one
     token against a cache of the earlier slots): text slots sampled from the text head, audio
     slots from the voicing and flow heads, each fed back.
At t = 0 there is no previous output segment: its tokens are computed but given positions -1,
so they are never attended to and never cached (shapes stay static).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from jax_interact.inference import engine
from jax_interact.models.attention import KVCache
from jax_interact.models.copy_head import CopyMemory
from jax_interact.models.decisions import (greedy_text, is_word, silence_thresholds,
                                           voiced_decision)
from jax_interact.models.interaction import InteractionModel
from jax_interact.models.layers import in_compute_dtype
from jax_interact.streams.dmel import DMelSpec
from jax_interact.streams.tokenizer import PAD
# The segment keys and empty segments are the layout's; session users find them here too.
from jax_interact.streams.layout import (INPUT_KEYS, OUTPUT_KEYS, Token,  # noqa: F401
                                         empty_inputs, empty_outputs)


@dataclasses.dataclass(frozen=True)
class Sampling:
  """How output slots are sampled. Speaking is a decision in text as in audio: a text slot stays
  `<sil>` while the probability of `<sil>` is at least `silence_threshold` (`continue_threshold`
  after a word piece of its own stream), and otherwise holds the most likely other token when
  temperature == 0 (greedy over the whole vocabulary would keep a model silent whenever no single
  word is more likely than `<sil>`), or a draw from softmax(logits / T) top-p. An audio slot is
  voiced when the voicing probability exceeds `voicing_threshold`."""

  temperature: float = 0.0
  top_p: float = 1.0
  silence_threshold: float = 0.5
  continue_threshold: float = 0.5
  voicing_threshold: float = 0.5

  @classmethod
  def from_config(cls, sample_config) -> "Sampling":
    return cls(temperature=float(sample_config.temperature), top_p=float(sample_config.top_p),
               silence_threshold=float(sample_config.silence_threshold),
               continue_threshold=float(sample_config.continue_threshold),
               voicing_threshold=float(sample_config.voicing_threshold))


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class SessionState:
  cache: tuple[KVCache, ...]  # the temporal model's, one per layer (model.init_cache)
  turn_B: jax.Array  # int32 micro-turn the next step runs
  prev_outputs: dict[str, jax.Array]  # output segment of the previous micro-turn (OUTPUT_KEYS)
  last_words: dict[str, jax.Array]  # per text output stream, the last word it said (PAD: none)
  rng_B: jax.Array  # one PRNG key per session
  copy: CopyMemory | None  # bg tokens of the last window_turns micro-turns (model.text_copy)


def init_state(model: InteractionModel, batch: int, seed: int) -> SessionState:
  return SessionState(
      cache=model.init_cache(batch), turn_B=jnp.zeros((batch,), jnp.int32),
      prev_outputs={k: jnp.asarray(v) for k, v in empty_outputs(model.layout, batch).items()},
      last_words={g.key: jnp.full((batch,), PAD, jnp.int32) for g, i in
                  model.layout.output_segment() if g.token is Token.TEXT and i == 0},
      rng_B=jax.random.split(jax.random.PRNGKey(seed), batch),
      copy=model.init_copy_memory(batch))


def start_state(model: InteractionModel, batch: int, seed: int, params) -> SessionState:
  """`init_state` placed where a jitted step over `params` returns its state: on their device
  when they all live on one (served weights), so a session's first step runs the program of
  every later one instead of compiling its own. Over a mesh it is left for the step to place."""
  state = init_state(model, batch, seed)
  devices = {device for leaf in jax.tree.leaves(params) if isinstance(leaf, jax.Array)
             for device in leaf.devices()}
  return jax.device_put(state, devices.pop()) if len(devices) == 1 else state


def reset(model: InteractionModel, state: SessionState, rows_B: jax.Array,
          seed: jax.Array) -> SessionState:
  """Starts fresh sessions (PRNG key from `seed`) in the rows where `rows_B` is True.

  Other rows and all shapes are unchanged.
  """
  fresh = init_state(model, rows_B.shape[0], 0)
  fresh = dataclasses.replace(
      fresh, rng_B=jnp.broadcast_to(jax.random.PRNGKey(seed), fresh.rng_B.shape))

  def pick(new, old):
    return jnp.where(rows_B.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)

  return jax.tree.map(pick, fresh, state)


def _sample_text(logits_BV: jax.Array, previous_B: jax.Array, rng_B: jax.Array,
                 sampling: Sampling) -> jax.Array:
  if sampling.temperature == 0.0:
    return greedy_text(logits_BV, silence_thresholds(previous_B, sampling.silence_threshold,
                                                     sampling.continue_threshold))
  logits_BV = logits_BV / sampling.temperature
  if sampling.top_p < 1.0:
    sorted_BV = jnp.sort(logits_BV, axis=-1)[:, ::-1]
    cum_BV = jnp.cumsum(jax.nn.softmax(sorted_BV, axis=-1), axis=-1)
    keep = jnp.sum(cum_BV < sampling.top_p, axis=-1, keepdims=True)
    cutoff_B1 = jnp.take_along_axis(sorted_BV, keep, axis=-1)
    logits_BV = jnp.where(logits_BV < cutoff_B1, -jnp.inf, logits_BV)
  return jax.vmap(jax.random.categorical)(rng_B, logits_BV).astype(jnp.int32)


def _temporal(model: InteractionModel, state: SessionState,
              chunk: dict[str, jax.Array]) -> tuple[jax.Array, SessionState]:
  """Step 1: temporal pass over [previous output segment, input segment]."""
  layout = model.layout
  turn_B = state.turn_B
  prev = model.embed_output_segment(*(state.prev_outputs[k] for k in OUTPUT_KEYS))
  new = model.embed_input_segment(turn_B, chunk["text_in"], chunk["video"], chunk["video_mask"],
                                  chunk["audio_in"], chunk["bg"])
  x_BTD = jnp.concatenate([prev, new], axis=1)
  first_B = turn_B * layout.turn_len - layout.output_len
  pos_BT = first_B[:, None] + jnp.arange(layout.turn_len, dtype=jnp.int32)
  pos_BT = jnp.where(pos_BT < 0, -1, pos_BT)  # no previous output segment at t = 0

  h_BTD, cache = model.temporal_step(x_BTD, pos_BT, state.cache)
  hidden_BD = h_BTD[:, -1]  # the last input position of micro-turn t
  copy = state.copy
  if copy is not None:
    copy = copy.write(model.bg_keys(h_BTD[:, layout.output_len:]), chunk["bg"], turn_B)
  return hidden_BD, dataclasses.replace(state, cache=cache, copy=copy)


def _local(model: InteractionModel, hidden_BD: jax.Array, state: SessionState, rng_B: jax.Array,
           sampling: Sampling, forced: dict[str, jax.Array]):
  """Step 2: the output segment slot by slot. Returns (outputs, {text_logits, voicing_logits},
  mel, last_words).

  The slots are unrolled (their kinds are known when tracing, so each runs its own head without
  a loop or a branch). Slot j's local-decoder token attends to a cache of slots < j; its input
  comes from slot j - 1's token alone (`local_next_input`), slot 0's from the temporal state.
  """
  layout = model.layout
  b = hidden_BD.shape[0]
  k, m = layout.frames_per_token, layout.n_mels
  cache = model.init_local_cache(b)
  slot_rngs_KB = jax.vmap(lambda key: jax.random.split(key, layout.output_len), out_axes=1)(rng_B)

  x_BD = model.local_from_temporal(hidden_BD)
  tokens, text_logits, voicing_logits, mels = [], [], [], []
  last_words = dict(state.last_words)
  for j, (group, index) in enumerate(layout.output_segment()):
    h_BD, cache = model.local_step(x_BD, j, cache)
    if group.token is Token.DMEL:
      voicing_B = model.voicing_logits(h_BD)
      noise_BKM = jax.vmap(lambda key: jax.random.normal(key, (k, m), jnp.float32))(
          slot_rngs_KB[j])
      voiced_B = voiced_decision(voicing_B, sampling.voicing_threshold)
      mel_BKM, bins_BKM = model.sample_audio(h_BD, voiced_B, noise_BKM)
      if group.key in forced:
        bins_BKM = forced[group.key][:, index]
      voicing_logits.append(voicing_B)
      mels.append(mel_BKM)
      tokens.append(bins_BKM)
      x_BD = model.local_next_input(model.embed_model_audio(bins_BKM), group.kind)
    else:
      previous_B = state.prev_outputs[group.key][:, -1] if index == 0 else tokens[-1]
      logits_BV = model.text_logits(h_BD, state.turn_B, last_words[group.key], state.copy)
      ids_B = _sample_text(logits_BV, previous_B, slot_rngs_KB[j], sampling)
      if group.key in forced:
        ids_B = forced[group.key][:, index]
      text_logits.append(logits_BV)
      tokens.append(ids_B)
      last_words[group.key] = jnp.where(is_word(ids_B), ids_B, last_words[group.key])
      x_BD = model.local_next_input(model.text_embed(ids_B), group.kind)

  outputs = layout.split_output_segment(tokens, jnp.stack)
  logits = {"text_logits": jnp.stack(text_logits, axis=1),  # [B, K_text, V]
            "voicing_logits": jnp.stack(voicing_logits, axis=1)}  # [B, K_ao]
  return outputs, logits, jnp.stack(mels, axis=1), last_words  # mel [B, K_ao, k, M] unit range


def step(model: InteractionModel, state: SessionState, chunk: dict[str, jax.Array],
         sampling: Sampling = Sampling(), forced: dict[str, jax.Array] | None = None
         ) -> tuple[SessionState, dict[str, jax.Array]]:
  """One micro-turn for every session in the batch.

  `chunk` holds the input groups of one micro-turn (INPUT_KEYS, leading axis B). With `forced`
  (an output segment, or some of its groups), those tokens are fed back instead of the samples
  (teacher forcing); the groups it leaves out are sampled.
  Returns the new state and {user_transcript, text_out, audio_out (dMel bins), mel (unit range
  float32 [B, K_ao, k, M]), text_logits [B, K_text, V], voicing_logits [B, K_ao], turn [B]}.
  """
  hidden_BD, state = _temporal(model, state, chunk)
  # Each row draws from its own key, so a session's samples do not depend on its batch mates.
  rngs = jax.vmap(lambda key: jax.random.split(key, 2))(state.rng_B)
  outputs, logits, mel, last_words = _local(model, hidden_BD, state, rngs[:, 1], sampling,
                                            forced or {})
  result = dict(outputs, **logits, mel=mel, turn=state.turn_B)
  state = dataclasses.replace(state, turn_B=state.turn_B + 1, prev_outputs=outputs,
                              last_words=last_words, rng_B=rngs[:, 0])
  return state, result


def serving_params(model: InteractionModel, params: nnx.State) -> nnx.State:
  """Parameters (the model's, or trained ones of its shape) as `jit_step`'s `run` takes them:
  weights in the compute dtype, read at half the bytes in bfloat16 with the same numbers."""
  return in_compute_dtype(params, model.precision)


def jit_step(model: InteractionModel, sampling: Sampling = Sampling()):
  """`run(params, state, chunk[, forced]) -> (state, outputs)` jitted with the state donated,
  and the model's params as `run` reads them (`serving_params`).

  The model is split once into its graph and parameters (cheaper per call than nnx.jit).
  """
  graphdef, params = nnx.split(model)
  params = serving_params(model, params)

  def run(params, state, chunk, forced=None):
    return step(nnx.merge(graphdef, params), state, chunk, sampling, forced)

  return params, jax.jit(run, donate_argnums=(1,))


def program(model: InteractionModel, config) -> engine.Program:
  """The engine's program for `model`, compiled in this process, sampling as `config.sample`."""
  params, run = jit_step(model, Sampling.from_config(config.sample))
  return engine.Program(
      layout=model.layout, dmel_spec=DMelSpec.from_config(config.stream),
      vocab_size=model.vocab_size, params=params,
      init_state=lambda batch, seed: start_state(model, batch, seed, params),
      reset=jax.jit(lambda state, rows_B, seed: reset(model, state, rows_B, seed),
                    donate_argnums=(0,)),
      step=run, prepare_params=lambda trained: serving_params(model, trained))
