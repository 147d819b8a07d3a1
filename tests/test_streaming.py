"""Streaming sessions agree with the training forward; the engine's rows and bad chunks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jax_interact import config as config_lib
from jax_interact import models
from jax_interact.errors import InputError
from jax_interact.inference import engine as engine_lib
from jax_interact.inference import session
from jax_interact.models.flow import bins_to_unit
from jax_interact.streams.dmel import SILENCE_BIN
from jax_interact.streams.layout import random_batch
from jax_interact.streams.tokenizer import SIL, SPECIAL_PIECES

WINDOW_TURNS = 4


@pytest.fixture(scope="module")
def config():
  return config_lib.load("configs/tiny.py", [f"model.window_turns={WINDOW_TURNS}", "model.sinks=3"])


@pytest.fixture(scope="module")
def model(config):
  return models.build(config, nnx.Rngs(0))


def test_voicing_feedback_tied_text_head_and_copy_head_stream_matches_forward():
  """With the model hearing only the voicing of its own audio, its text head tied to the text
  embedding and a copy head over the bg tokens (as configs/recipe_cpu.py), streaming still
  equals forward, also once the copy head's ring has wrapped."""
  config = config_lib.load("configs/tiny.py", [f"model.window_turns={WINDOW_TURNS}",
                                               "model.sinks=3", "model.audio_feedback=voicing",
                                               "model.text_head=tied", "model.text_copy=True"])
  test_teacher_forced_stream_matches_forward_past_the_window(
      config, models.build(config, nnx.Rngs(0)))


def test_a_copy_head_that_follows_the_bg_tokens_streams_as_forward():
  """With `model.copy_follow` (each bg token's predecessor carried across micro-turns in the
  ring, each stream's last word in the session state), streaming equals forward. Text ids are
  drawn from 12 (4 words and the specials), so bg tokens often follow the last word said, across
  silences too, and the follow bias is large, so a disagreement would show."""
  config = config_lib.load("configs/tiny.py", [f"model.window_turns={WINDOW_TURNS}",
                                               "model.sinks=3", "model.text_copy=True",
                                               "model.copy_follow=True"])
  model = models.build(config, nnx.Rngs(0))
  model.copy.follow.b[...] = jnp.full_like(model.copy.follow.b[...], 8.0)
  test_teacher_forced_stream_matches_forward_past_the_window(config, model, text_vocab=12)


def test_teacher_forced_stream_matches_forward_past_the_window(config, model, text_vocab=None):
  """Logits of every text slot agree with the forward pass, also once the ring has wrapped."""
  n_turns = 3 * WINDOW_TURNS  # the ring buffer wraps twice
  batch = {k: jnp.asarray(v) for k, v in
           random_batch(model.layout, 2, n_turns, text_vocab or config.model.vocab_size,
                        config.stream.dmel_bins, seed=1).items()}
  forward = nnx.jit(lambda m, b: m(b))(model, batch)
  expected, expected_voicing = forward["text_logits"], forward["voicing_logits"]
  params, run = session.jit_step(model)
  state = session.start_state(model, 2, 0, params)
  for t in range(n_turns):
    chunk = {k: batch[k][:, t] for k in session.INPUT_KEYS}
    forced = {k: batch[k][:, t] for k in session.OUTPUT_KEYS}
    state, out = run(params, state, chunk, forced)
    np.testing.assert_allclose(out["text_logits"], expected[:, t], atol=1e-5, rtol=0)
    np.testing.assert_allclose(out["voicing_logits"], expected_voicing[:, t], atol=1e-5, rtol=0)
    for key in session.OUTPUT_KEYS:  # what is fed back is the forced segment
      np.testing.assert_array_equal(out[key], batch[key][:, t])
  last = n_turns * model.layout.turn_len - model.layout.output_len - 1
  assert max(int(jnp.max(layer.pos_BS)) for layer in state.cache) == last


def test_a_step_forced_on_some_groups_samples_the_others(config, model):
  """Forcing only the user transcript (the `tf_heard_*` diagnostics): fed its own samples, a
  session repeats its free run token for token, so the other groups are still sampled as free;
  fed other ids, those are what its transcript slots hold."""
  batch = {k: jnp.asarray(v) for k, v in
           random_batch(model.layout, 2, 3, config.model.vocab_size, config.stream.dmel_bins,
                        seed=2).items()}
  params, run = session.jit_step(model)

  def stream(forced_transcripts):
    state, outs = session.start_state(model, 2, 5, params), []
    for t, transcript in enumerate(forced_transcripts):
      chunk = {k: batch[k][:, t] for k in session.INPUT_KEYS}
      forced = None if transcript is None else {"user_transcript": transcript}
      state, out = run(params, state, chunk, forced)
      outs.append({k: np.asarray(out[k]) for k in session.OUTPUT_KEYS})
    return outs

  free = stream([None] * 3)
  for out, free_out in zip(stream([o["user_transcript"] for o in free]), free):
    for key in session.OUTPUT_KEYS:
      np.testing.assert_array_equal(out[key], free_out[key])
  other = [batch["user_transcript"][:, t] for t in range(3)]
  assert not all(np.array_equal(o["user_transcript"], x) for o, x in zip(free, other))
  for out, transcript in zip(stream(other), other):
    np.testing.assert_array_equal(out["user_transcript"], transcript)


def _chunks(layout, n, seed):
  rng = np.random.default_rng(seed)
  return [engine_lib.Chunk(audio=rng.uniform(-0.3, 0.3, layout.chunk_samples).astype(np.float32),
                           frame=rng.integers(0, 256, (60, 90, 3), np.uint8), text_ids=(9, 10))
          for _ in range(n)]


def _tokens(outputs):
  return [np.concatenate([o.user_transcript, o.text_out, o.audio_out.ravel()]) for o in outputs]


def test_a_session_compiles_its_step_once(config, model):
  """Served weights are committed to a device (inference/trained.py), and so is every state a
  step returns: a session's first micro-turn must run the program of the later ones, or its
  second micro-turn stalls on a compile."""
  program = session.program(model, config)
  engine = engine_lib.Engine(program, batch_size=2)
  engine.set_params(jax.device_put(nnx.state(model), jax.devices()[0]))
  row = engine.add("a")
  for chunk in _chunks(model.layout, 3, seed=0):
    engine.step({row: chunk})
  engine.reset(row)
  engine.step({row: None})
  assert program.step._cache_size() == 1
  assert program.reset._cache_size() == 1


def test_reset_and_evict_leave_other_rows_alone(config, model):
  engine = engine_lib.Engine(session.program(model, config), batch_size=2, seed=3)
  a, b = engine.add("a"), engine.add("b")
  chunks_a, chunks_b = _chunks(model.layout, 3, 0), _chunks(model.layout, 3, 1)
  for ca, cb in zip(chunks_a, chunks_b):
    engine.step({a: ca, b: cb})
  untouched = jax.device_get([layer.k_BSKH[a] for layer in engine.state.cache])

  engine.evict(b)
  c = engine.add("c")  # takes b's row, starting from micro-turn 0
  assert c == b
  np.testing.assert_array_equal(
      jax.device_get([layer.k_BSKH[a] for layer in engine.state.cache]), untouched)
  assert int(engine.state.turn_B[c]) == 0 and int(engine.state.turn_B[a]) == 3
  assert all(np.all(jax.device_get(layer.pos_BS[c]) == -1) for layer in engine.state.cache)

  # The new session produces what a session alone in a fresh engine produces.
  fresh = engine_lib.Engine(session.program(model, config), batch_size=2, seed=3)
  alone = fresh.add("c")
  got = [engine.step({a: chunk_a, c: chunk})[c]
         for chunk_a, chunk in zip(_chunks(model.layout, 2, 5), chunks_b)]
  want = [fresh.step({alone: chunk})[alone] for chunk in chunks_b[:2]]
  assert [o.turn for o in got] == [0, 1]
  for x, y in zip(_tokens(got), _tokens(want)):
    np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("bad, field", [
    (engine_lib.Chunk(audio=np.zeros(100, np.float32)), "audio"),
    (engine_lib.Chunk(audio=np.zeros(3200, np.int16)), "audio"),
    (engine_lib.Chunk(audio=np.full(3200, np.nan, np.float32)), "audio"),
    (engine_lib.Chunk(frame=np.zeros((40, 40), np.uint8)), "frame"),
    (engine_lib.Chunk(text_ids=(10**6,)), "text_ids"),
])
def test_malformed_chunk_raises_and_leaves_state(config, model, bad, field):
  engine = engine_lib.Engine(session.program(model, config), batch_size=2)
  a, b = engine.add("a"), engine.add("b")
  engine.step({a: _chunks(model.layout, 1, 0)[0], b: None})
  before = jax.device_get(engine.state)
  with pytest.raises(InputError, match=f"session 'b' chunk.{field}"):
    engine.step({a: _chunks(model.layout, 1, 1)[0], b: bad})
  after = jax.device_get(engine.state)
  for x, y in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
    np.testing.assert_array_equal(x, y)


def test_missing_chunk_is_empty_input_and_flagged(config, model):
  engine = engine_lib.Engine(session.program(model, config), batch_size=2, seed=1)
  a, b = engine.add("a"), engine.add("b")
  out = engine.step({a: _chunks(model.layout, 1, 0)[0]})  # b sent nothing
  assert out[b].missing_input and not out[a].missing_input

  reference = engine_lib.Engine(session.program(model, config), batch_size=2, seed=1)
  a2, b2 = reference.add("a"), reference.add("b")
  ref = reference.step({a2: _chunks(model.layout, 1, 0)[0], b2: engine_lib.Chunk()})
  assert not ref[b2].missing_input
  np.testing.assert_array_equal(_tokens([out[b]])[0], _tokens([ref[b2]])[0])


@pytest.mark.parametrize("bias, voiced", [(-50.0, False), (50.0, True)])
def test_unvoiced_slots_stream_exact_silence(config, model, bias, voiced):
  """The voicing decision gates the audio: unvoiced slots are exact silence-mel (what the
  scorers count as not speaking), voiced ones carry the flow head's mel."""
  graphdef, state = nnx.split(model)
  gated = nnx.merge(graphdef, jax.tree.map(lambda x: x, state))
  gated.voicing_head.b[...] = jnp.full_like(gated.voicing_head.b[...], bias)
  params, run = session.jit_step(gated)
  state = session.start_state(gated, 2, 0, params)
  for _ in range(3):
    inputs = session.empty_inputs(model.layout, 2)
    inputs["audio_in"][:] = 3
    state, out = run(params, state, {k: jnp.asarray(v) for k, v in inputs.items()})
    silence = float(bins_to_unit(jnp.asarray(SILENCE_BIN), config.stream.dmel_bins))
    if voiced:
      assert np.all(np.asarray(out["mel"]) != silence)
    else:
      assert np.all(np.asarray(out["audio_out"]) == SILENCE_BIN)
      assert np.all(np.asarray(out["mel"]) == silence)


def test_a_stream_that_speaks_goes_on_at_the_continue_threshold(model):
  """The same P(`<sil>`) (an untrained model's, about 1/V) keeps a stream silent that was silent
  (below `silence_threshold` it would speak; here that is 1e-4) and lets one that was speaking
  go on (`continue_threshold` 0.9): what decides is the token before each text slot."""
  sampling = session.Sampling(silence_threshold=1e-4, continue_threshold=0.9)
  params, run = session.jit_step(model, sampling)
  inputs = {k: jnp.asarray(v) for k, v in session.empty_inputs(model.layout, 1).items()}
  text_keys = ("user_transcript", "text_out")

  def stream_after(first_token):
    state = session.start_state(model, 1, 0, params)
    forced = {k: jnp.asarray(v) for k, v in session.empty_outputs(model.layout, 1).items()}
    for key in text_keys:
      forced[key] = jnp.full_like(forced[key], first_token)
    state, _ = run(params, state, inputs, forced)
    state, out = run(params, state, inputs)
    return [np.asarray(out[key]) for key in text_keys]

  assert all((ids == SIL).all() for ids in stream_after(SIL))
  assert all((ids != SIL).all() for ids in stream_after(len(SPECIAL_PIECES)))
