"""InteractionModel: shapes, causality of the local decoder, loss weighting, counting."""

import dataclasses
from unittest import mock

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from jax_interact import config as config_lib
from jax_interact import models, sharding
from jax_interact.errors import ConfigError
from jax_interact.evaluation import transcripts
from jax_interact.inference import engine as engine_lib
from jax_interact.models import counting, decisions, loss_fn, losses
from jax_interact.models.copy_head import CopyHead, CopyMemory, previous_words
from jax_interact.models.layers import Precision, placement
from jax_interact.models.losses import LossWeights, slot_weights
from jax_interact.streams.dmel import SILENCE_BIN, voiced
from jax_interact.streams.layout import (GROUP_KEYS, INPUT_KINDS, Layout, SlotKind, Target,
                                         Token, random_batch)
from jax_interact.streams.tokenizer import PAD, SIL, SPECIAL_PIECES

B, N = 2, 4


def _config() -> ml_collections.ConfigDict:
  c = config_lib.load("configs/tiny.py")
  c.stream.n_mels = 8
  c.stream.video_height = c.stream.video_width = 40
  c.stream.text_in_slots = c.stream.bg_slots = 2
  c.stream.user_transcript_slots = c.stream.text_out_slots = 2
  m = c.model
  m.vocab_size, m.d_model, m.n_layers, m.n_heads, m.n_kv_heads, m.head_dim = 64, 32, 1, 2, 1, 16
  m.d_ff, m.window_turns, m.sinks = 64, 2, 2
  m.local_d_model, m.local_heads, m.local_d_ff, m.flow_hidden = 32, 2, 64, 32
  config_lib.validate(c)
  return c


@pytest.fixture(scope="module")
def setup():
  config = _config()
  layout = Layout.from_config(config.stream)
  model = models.build(config, nnx.Rngs(0))
  graphdef, state = nnx.split(model)
  loss = jax.jit(lambda batch, rng: loss_fn(nnx.merge(graphdef, state), batch, rng,
                                            weights=LossWeights.from_config(config.loss)))
  return config, layout, model, loss


def _jit_method(model, method):
  """model.method(*args) under jax.jit (eager dispatch of a scanned model is slow)."""
  graphdef, state = nnx.split(model)
  return jax.jit(lambda *args: getattr(nnx.merge(graphdef, state), method)(*args))


def _batch(config, layout, seed=0):
  return random_batch(layout, B, N, config.model.vocab_size, config.stream.dmel_bins, seed)


def test_forward_shapes(setup):
  config, layout, model, _ = setup
  out = _jit_method(model, "__call__")(_batch(config, layout))
  assert out["text_logits"].shape == (B, N, 4, config.model.vocab_size)
  assert out["text_logits"].dtype == jnp.float32
  assert out["local_hidden"].shape == (B, N, layout.output_len, config.model.local_d_model)
  assert out["temporal_hidden"].shape == (B, N * layout.turn_len, config.model.d_model)
  assert out["voicing_logits"].shape == (B, N, layout.count(SlotKind.AUDIO_OUT))
  noise = jax.random.normal(jax.random.key(0), (B, N, layout.frames_per_token, layout.n_mels))
  voiced = jnp.arange(N) % 2 == 0  # every other micro-turn's last slot voiced
  mel, bins = model.sample_audio(out["local_hidden"][:, :, -1], jnp.broadcast_to(voiced, (B, N)),
                                 noise)
  assert mel.shape == bins.shape == (B, N, layout.frames_per_token, layout.n_mels)
  assert int(bins.max()) < config.stream.dmel_bins
  assert np.all(np.asarray(bins)[:, 1::2] == SILENCE_BIN)  # unvoiced: exact silence
  flow = model.flow.sample(out["local_hidden"][:, :, -1], noise, config.model.flow_steps)
  np.testing.assert_allclose(mel[:, ::2], flow[:, ::2], atol=1e-5)  # voiced: the flow sample


def test_local_decoder_sees_only_earlier_slots(setup):
  config, layout, model, _ = setup
  batch = _batch(config, layout)
  outputs = model.embed_output_segment(batch["user_transcript"][0], batch["text_out"][0],
                                       batch["audio_out"][0])
  hidden = jnp.ones((N, config.model.d_model))
  local_decode = _jit_method(model, "local_decode")
  before = local_decode(hidden, outputs)
  j = 2
  after = local_decode(hidden, outputs.at[:, j].add(1.0))
  np.testing.assert_array_equal(before[:, :j + 1], after[:, :j + 1])
  assert not np.allclose(before[:, j + 1], after[:, j + 1])


def test_only_output_slots_of_valid_turns_carry_weight(setup):
  config, layout, _, _ = setup
  batch = _batch(config, layout)
  batch["turn_mask"][:, -1] = False
  batch["text_out"][0, 0, 0] = SIL
  weights = np.asarray(slot_weights(layout, batch, 0.1))
  kinds = layout.kinds()
  assert (weights[..., np.isin(kinds, INPUT_KINDS)] == 0).all()
  assert (weights[:, -1] == 0).all()
  assert weights[0, 0, layout.offset(SlotKind.TEXT_OUT)] == pytest.approx(0.1)
  assert (weights[:, :-1][..., ~np.isin(kinds, INPUT_KINDS)] > 0).all()
  changed = _batch(config, layout, seed=1)
  for kind in INPUT_KINDS[1:]:
    batch[GROUP_KEYS[kind]] = changed[GROUP_KEYS[kind]]
  np.testing.assert_array_equal(slot_weights(layout, batch, 0.1), weights)


def test_quiet_and_user_speech_scales_weigh_only_the_models_own_silence_where_they_apply(setup):
  """In a quiet micro-turn the model's `<sil>` and unvoiced audio weigh `quiet_scale` times
  more, in one flagged `user_speaks` `user_speech_scale` times more, in one that is both the
  product; its words, its voiced audio, the user transcript and every other micro-turn keep
  their weights, whatever the user's audio holds."""
  config, layout, _, _ = setup
  batch = _batch(config, layout)
  for flag, turns in (("quiet", slice(1, 3)), ("user_speaks", slice(2, 4))):
    batch[flag] = np.zeros_like(batch["turn_mask"])
    batch[flag][:, turns] = True
  batch["audio_in"][:] = SILENCE_BIN + 6
  for key in ("text_out", "user_transcript"):
    batch[key][:, :, 0] = SIL
    batch[key][:, :, 1:] = len(SPECIAL_PIECES)
  batch["audio_out"][:, :, 0] = SILENCE_BIN
  batch["audio_out"][:, :, 1:] = SILENCE_BIN + 6
  plain = np.asarray(slot_weights(layout, batch, 0.1))
  scaled = np.asarray(slot_weights(layout, batch, 0.1, quiet_scale=4.0, user_speech_scale=3.0))
  text, audio = layout.offset(SlotKind.TEXT_OUT), layout.offset(SlotKind.AUDIO_OUT)
  assert voiced(batch["audio_out"])[0, 1].tolist() == [False] + [True] * (
      layout.count(SlotKind.AUDIO_OUT) - 1)
  expected = plain.copy()
  for turn, scale in ((1, 4.0), (2, 12.0), (3, 3.0)):
    expected[:, turn, [text, audio]] *= scale
  np.testing.assert_allclose(scaled, expected)
  assert scaled[0, 1, text] == pytest.approx(0.4) and scaled[0, 2, audio] == pytest.approx(12.0)
  assert scaled[0, 0, text] == pytest.approx(0.1) and scaled[0, 0, audio] == pytest.approx(1.0)


def test_loss_ignores_turns_outside_the_episode(setup):
  config, layout, _, loss = setup
  batch = _batch(config, layout)
  batch["turn_mask"][:, -1] = False
  rng = jax.random.key(3)
  reference, metrics = loss(batch, rng)
  assert set(metrics) >= {"loss", "text_loss", "transcript_loss", "flow_loss", "text_accuracy",
                          "tokens"}
  assert float(metrics["tokens"]) == B * (N - 1) * layout.turn_len
  other = _batch(config, layout, seed=7)
  for key in GROUP_KEYS.values():
    batch[key][:, -1] = other[key][:, -1]
  assert float(loss(batch, rng)[0]) == pytest.approx(float(reference), rel=1e-6)
  batch["text_out"][:, 0] = (batch["text_out"][:, 0] + 1) % config.model.vocab_size
  assert float(loss(batch, rng)[0]) != pytest.approx(float(reference), rel=1e-6)


def test_missing_video_uses_the_learned_embedding(setup):
  config, layout, model, _ = setup
  batch = _batch(config, layout)
  batch["video_mask"][:] = False
  args = [batch[k] for k in ("turn", "text_in", "video", "video_mask", "audio_in", "bg")]
  embed = _jit_method(model, "embed_input_segment")
  first = embed(*args)
  args[2] = 255 - batch["video"]
  np.testing.assert_array_equal(embed(*args), first)


def test_with_video_motion_the_stem_sees_the_change_since_the_previous_frame():
  config = _config()
  config.stream.video_motion = True
  layout = Layout.from_config(config.stream)
  stem = _jit_method(models.build(config, nnx.Rngs(0)), "video_stem")
  frame = random_batch(layout, B, N, 64, config.stream.dmel_bins, 0)["video"][..., :3]
  still = stem(np.concatenate([frame, frame], axis=-1))
  moved = stem(np.concatenate([frame, 255 - frame], axis=-1))
  assert still.shape == moved.shape == (B, N, layout.count(SlotKind.VIDEO), config.model.d_model)
  assert np.abs(np.asarray(moved - still)).max() > 0.1


def test_a_scene_head_learns_scene_events_where_a_frame_was_seen():
  """With loss.scene_event_weight > 0 the model has a scene head whose cross-entropy against
  `scene_event` counts only micro-turns with a frame and trains the video stem."""
  assert models.build(_config(), nnx.Rngs(0)).scene_head is None
  config = _config()
  config.loss.scene_event_weight = 1.0
  layout = Layout.from_config(config.stream)
  model = models.build(config, nnx.Rngs(0))
  built = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
  assert counting.param_count(config) == built
  only_scene = dataclasses.replace(LossWeights.from_config(config.loss), text=0.0,
                                   transcript=0.0, voicing=0.0, audio=0.0, moe_aux=0.0)
  graphdef, state = nnx.split(model)
  loss = jax.jit(lambda state, batch: loss_fn(nnx.merge(graphdef, state), batch,
                                              jax.random.key(0), weights=only_scene))
  batch = _batch(config, layout)
  batch["video_mask"][:, -1] = False
  total, metrics = loss(state, batch)
  assert float(total) == pytest.approx(float(metrics["scene_event_loss"])) and float(total) > 0
  unseen = dict(batch, scene_event=batch["scene_event"].copy())
  unseen["scene_event"][:, -1] ^= True
  assert float(loss(state, unseen)[0]) == pytest.approx(float(total), rel=1e-6)
  seen = dict(batch, scene_event=batch["scene_event"].copy())
  seen["scene_event"][:, 0] ^= True
  assert float(loss(state, seen)[0]) != pytest.approx(float(total), rel=1e-6)
  grads = jax.grad(lambda state: loss(state, batch)[0])(state)
  assert float(jnp.abs(grads["video_stem"]["stage1"]["w"][...]).max()) > 0


def test_param_count_matches_the_built_model(setup):
  config, _, model, _ = setup
  built = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
  assert counting.param_count(config) == built


def test_moe_flops_count_only_active_experts():
  dense, moe = _config(), _config()
  moe.model.num_experts, moe.model.experts_per_token = 4, 2
  moe.model.d_ff = dense.model.d_ff // 2
  router_flops = 3 * 2 * moe.model.d_model * 4 * moe.model.n_layers  # per token
  assert counting.train_flops_per_token(moe) == pytest.approx(
      counting.train_flops_per_token(dense) + router_flops, rel=1e-9)
  assert counting.param_count(moe) > counting.param_count(dense)


def test_a_tied_text_head_says_the_token_whose_embedding_matches():
  """With `model.text_head="tied"` the text logits score the text embedding table itself: give
  one token's row the direction of a hidden state's projection and that token wins, and the
  same row is what the model reads when that token is its input."""
  config = _config()
  config.model.text_head = "tied"
  model = models.build(config, nnx.Rngs(0))
  hidden = jax.random.normal(jax.random.key(1), (3, config.model.local_d_model))
  query = model.text_head(hidden)
  word = len(SPECIAL_PIECES) + 5
  row = 10.0 * query[0] / jnp.linalg.norm(query[0])
  model.text_embed.table[...] = model.text_embed.table[...].at[word].set(row)
  assert int(jnp.argmax(model.text_logits(hidden, turn=None, said=None, memory=None)[0])) == word
  np.testing.assert_allclose(model.text_embed(jnp.array([word]))[0], row, rtol=1e-6)


def test_a_copy_head_says_the_bg_token_it_points_at_and_only_one_it_can_see():
  """With the gate open, a text slot says the bg token whose key its query matches, though the
  text head prefers another; a bg token older than the window or an empty (`<pad>`) bg slot is
  never said; the mixture is a distribution."""
  with placement():
    head = CopyHead(8, 8, window_turns=2, precision=Precision(), follow=False, rngs=nnx.Rngs(0))
  head.key.w[...] = jnp.eye(8)
  head.query.w[...] = jnp.eye(8)
  head.gate.w[...] = jnp.zeros_like(head.gate.w[...])
  head.gate.b[...] = jnp.full_like(head.gate.b[...], 20.0)
  memory = CopyMemory.of_window(10.0 * jnp.eye(8)[:6].reshape(1, 3, 2, 8),  # 3 turns x 2 slots
                                jnp.array([[[5, 6], [7, PAD], [8, 9]]]))
  logits_BQV = jnp.zeros((1, 3, 16)).at[..., 10].set(5.0)
  hidden_BQD = 10.0 * jnp.eye(8)[jnp.array([[1, 1, 3]])]  # the keys of `6`, `6` and `<pad>`
  turn_BQ = jnp.array([[1, 2, 1]])  # `6` (micro-turn 0) is 1 and 2 micro-turns old
  log_probs = head(logits_BQV, hidden_BQD, turn_BQ, jnp.full((1, 3), PAD), memory)
  np.testing.assert_allclose(jnp.exp(log_probs).sum(-1), 1.0, rtol=1e-5)
  assert int(jnp.argmax(log_probs[0, 0])) == 6
  assert float(jnp.exp(log_probs[0, 1, 6])) < 1e-6
  assert float(jnp.exp(log_probs[0, 2, PAD])) < 1e-6


def test_a_following_copy_head_says_the_piece_after_the_word_said_last():
  """With `follow`, a slot whose stream said "▁46" last says the bg token that arrived after it
  ("2"), across an empty slot and a micro-turn boundary, though its query matches nothing and
  its gate alone is shut; a slot that said something else says what follows that, one whose
  stream said nothing stays generative; a ring written micro-turn by micro-turn remembers the
  same predecessors as a training window; the last word said skips silences."""
  with placement():
    head = CopyHead(8, 8, window_turns=4, precision=Precision(), follow=True, rngs=nnx.Rngs(0))
  head.query.w[...] = jnp.zeros_like(head.query.w[...])
  head.gate.w[...] = jnp.zeros_like(head.gate.w[...])
  head.gate.b[...] = jnp.full_like(head.gate.b[...], -10.0)
  head.follow.w[...] = jnp.zeros_like(head.follow.w[...])
  head.follow.b[...] = jnp.array([20.0, 30.0])
  piece_46, piece_2, piece_is = 20, 21, 22
  ids_BNK = jnp.array([[[piece_is, piece_46], [PAD, piece_2]]])
  keys_BNKC = jnp.zeros((1, 2, 2, 8))
  memory = CopyMemory.of_window(keys_BNKC, ids_BNK)
  logits_BQV = jnp.zeros((1, 3, 32)).at[..., 10].set(5.0)
  said_BQ = jnp.array([[piece_46, piece_is, PAD]])
  log_probs = head(logits_BQV, jnp.zeros((1, 3, 8)), jnp.ones((1, 3), jnp.int32), said_BQ,
                   memory)
  assert int(jnp.argmax(log_probs[0, 0])) == piece_2
  assert int(jnp.argmax(log_probs[0, 1])) == piece_46
  assert int(jnp.argmax(log_probs[0, 2])) == 10
  ring = CopyMemory.empty(1, 4, 2, 8, jnp.float32)
  for turn in range(2):
    ring = ring.write(keys_BNKC[:, turn], ids_BNK[:, turn], jnp.array([turn]))
  np.testing.assert_array_equal(ring.before_BM[:, :4], memory.before_BM)
  np.testing.assert_array_equal(memory.before_BM, [[PAD, piece_is, piece_46, piece_46]])
  text_BNK = jnp.array([[[SIL, piece_is], [SIL, SIL], [piece_46, SIL]]])
  np.testing.assert_array_equal(previous_words(text_BNK),
                                [[[PAD, PAD], [piece_is, piece_is], [piece_is, piece_46]]])


def test_a_tied_text_head_is_charged_its_table_as_a_matmul():
  """Tying replaces the [d_local, vocab] head by a [d_local, d_model] projection and the
  [vocab, d_model] table, applied per text slot of a micro-turn."""
  separate, tied = _config(), _config()
  tied.model.text_head = "tied"
  layout = Layout.from_config(separate.stream)
  m = separate.model
  per_turn = 2 * len(layout.token_slots(Token.TEXT)) * (
      m.local_d_model * m.d_model + m.d_model * m.vocab_size - m.local_d_model * m.vocab_size)
  assert counting.train_flops_per_token(tied) == pytest.approx(
      counting.train_flops_per_token(separate) + 3 * per_turn / layout.turn_len, rel=1e-9)
  assert counting.param_count(tied) == counting.param_count(separate) + (
      m.local_d_model * m.d_model - m.local_d_model * m.vocab_size)


def test_parameters_carry_logical_sharding():
  config = _config()
  mesh = sharding.make_mesh(ml_collections.ConfigDict({"data": 2, "fsdp": 2, "tensor": 2}))
  with sharding.use(mesh):
    abstract = nnx.eval_shape(lambda: models.build(config, nnx.Rngs(0)))
    specs = nnx.get_partition_spec(nnx.state(abstract, nnx.Param))
  w_q = specs["temporal"]["blocks"]["attn"]["w_q"]
  assert tuple(w_q.get_value()) == (None, "fsdp", "tensor", None)


def test_voicing_targets_are_what_the_evaluation_calls_speaking(setup):
  """Training's voicing targets and the eval's speech activity come from one definition: a slot
  the loss calls voiced is exactly a slot during which the scorers see the model speaking."""
  config, layout, _, _ = setup
  batch = _batch(config, layout, seed=3)
  rng = np.random.default_rng(0)
  # Mean bins spread around the voicing margin, so both answers occur.
  level = rng.integers(0, 4, batch["audio_out"].shape[:3])
  batch["audio_out"] = np.broadcast_to(level[..., None, None],
                                       batch["audio_out"].shape).astype(np.uint8).copy()
  targets = np.asarray(losses.voicing_targets(jnp.asarray(batch["audio_out"])))
  assert 0 < targets.mean() < 1
  tokenizer = mock.Mock(size=config.model.vocab_size)
  for (b, t, j), target in np.ndenumerate(targets):
    # One micro-turn whose only non-silent audio slot is slot j (so no merging across slots).
    audio = np.zeros_like(batch["audio_out"][b, t])
    audio[j] = batch["audio_out"][b, t, j]
    out = engine_lib.TurnOutput(turn=t, user_transcript=np.full(2, SIL), text_out=np.full(2, SIL),
                                audio_out=audio, missing_input=False, step_ms=0.0)
    behaviour = transcripts.from_outputs([out], layout, tokenizer)
    assert (behaviour.spoken_s(0.0, 1e9) > 0) == target, (b, t, j)


def test_flow_loss_ignores_unvoiced_slots(setup):
  """Unvoiced target slots (whatever they hold below the voicing margin) carry no flow loss;
  voiced ones do, and the voicing loss depends on which slots are voiced."""
  config, layout, model, loss = setup
  batch = _batch(config, layout, seed=4)
  quiet = np.zeros_like(batch["audio_out"])
  hum = quiet.copy()
  hum[..., 0, :] = 1  # mean bin 0.25: still unvoiced
  rng = jax.random.key(1)
  _, m_quiet = loss(dict(batch, audio_out=quiet), rng)
  _, m_hum = loss(dict(batch, audio_out=hum), rng)
  assert float(m_quiet["flow_loss"]) == float(m_hum["flow_loss"]) == 0.0
  loud = np.full_like(quiet, 8)
  _, m_loud = loss(dict(batch, audio_out=loud), rng)
  assert float(m_loud["flow_loss"]) > 0
  assert float(m_loud["voicing_loss"]) != pytest.approx(float(m_quiet["voicing_loss"]))


def test_feedback_noise_replaces_only_fed_back_words():
  """Training noise touches the fed-back words of the text output groups at the asked rate, never
  `<sil>`, specials or inputs; with probability 0 the batch is unchanged."""
  config = _config()
  layout = Layout.from_config(config.stream)
  batch = jax.tree.map(jnp.asarray, random_batch(layout, 8, 16, 64, 16, seed=5))
  batch["text_out"] = batch["text_out"].at[:, ::2].set(SIL)
  noisy = losses.with_feedback_noise(layout, batch, jax.random.key(0), 0.5, vocab_size=64)
  for key in batch:
    if key not in ("user_transcript", "text_out"):
      np.testing.assert_array_equal(noisy[key], batch[key])
  special = batch["text_out"] < len(SPECIAL_PIECES)
  np.testing.assert_array_equal(noisy["text_out"][special], batch["text_out"][special])
  changed = np.asarray(noisy["user_transcript"] != batch["user_transcript"])
  words = np.asarray(batch["user_transcript"] >= len(SPECIAL_PIECES))
  assert 0.35 < changed[words].mean() < 0.55  # 0.5, less the draws that pick the same word
  assert np.all(np.asarray(noisy["user_transcript"])[changed] >= len(SPECIAL_PIECES))
  same = losses.with_feedback_noise(layout, batch, jax.random.key(0), 0.0, vocab_size=64)
  np.testing.assert_array_equal(same["text_out"], batch["text_out"])
  transcript_only = losses.with_feedback_noise(layout, batch, jax.random.key(0), 0.5,
                                               vocab_size=64, targets=(Target.TRANSCRIPT,))
  np.testing.assert_array_equal(transcript_only["text_out"], batch["text_out"])
  assert np.asarray(transcript_only["user_transcript"] != batch["user_transcript"])[words].any()


def test_feedback_noise_on_names_the_fed_back_streams():
  assert losses.noise_targets("transcript") == (Target.TRANSCRIPT,)
  assert losses.noise_targets("transcript,text") == (Target.TRANSCRIPT, Target.TEXT)
  config = _config()
  config.train.feedback_noise_on = "transcript,audio"
  with pytest.raises(ConfigError, match="train.feedback_noise_on.*'transcript,audio'"):
    config_lib.validate(config)


def test_frequency_masks_silence_bands_of_what_the_model_hears(setup):
  """Each example loses at most `masks` runs of at most `max_channels` adjacent mel channels of
  the user's audio, the same channels in every micro-turn and frame, different between examples;
  nothing else in the batch changes. The training loss applies them, the evaluation's does not."""
  config, layout, model, _ = setup
  batch = jax.tree.map(jnp.asarray, random_batch(layout, 16, N, 64, config.stream.dmel_bins, 7))
  batch["audio_in"] = batch["audio_in"] | 1  # no bin is SILENCE_BIN before masking
  masked = losses.with_masked_bands(layout, batch, jax.random.key(0), masks=2, max_channels=3)
  for key in batch:
    if key != "audio_in":
      np.testing.assert_array_equal(masked[key], batch[key])
  silenced = np.asarray(masked["audio_in"] == SILENCE_BIN)  # [B, N, K, k, M]
  channels_BM = silenced.reshape(16, -1, config.stream.n_mels)
  assert np.all(channels_BM == channels_BM[:, :1])  # whole channels, held across micro-turns
  per_example = channels_BM[:, 0]
  for row in per_example:
    runs = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(int), [0]])) == 1)
    assert len(runs) <= 2 and row.sum() <= 6
  assert per_example.any() and len({row.tobytes() for row in per_example}) > 1
  np.testing.assert_array_equal(np.asarray(masked["audio_in"])[~silenced],
                                np.asarray(batch["audio_in"])[~silenced])

  masking = config.copy_and_resolve_references()
  masking.train.freq_masks, masking.train.freq_mask_channels = 2, config.stream.n_mels
  graphdef, state = nnx.split(model)
  losses_by_phase = {train: models.kind_of(masking).loss(masking, train)
                     for train in (True, False)}
  value = {train: float(jax.jit(lambda b, r, fn=fn: fn(nnx.merge(graphdef, state), b, r)[0])(
               batch, jax.random.key(3))) for train, fn in losses_by_phase.items()}
  plain = float(jax.jit(lambda b, r: loss_fn(nnx.merge(graphdef, state), b, r,
                                             weights=LossWeights.from_config(config.loss))[0])(
      batch, jax.random.key(3)))
  assert value[False] == pytest.approx(plain, rel=1e-6)
  assert value[True] != pytest.approx(plain, rel=1e-6)


def test_own_predictions_feed_back_the_models_decisions(setup):
  """With probability 1 every fed-back text token is the sampler's greedy decision from the
  teacher-forced logits (the transcript group first, then the model's text, as the logits are
  laid out), at the silence or continue threshold as the fed-back token before it says; other
  groups are untouched; with probability 0 the batch is unchanged."""
  config, layout, model, _ = setup
  batch = jax.tree.map(jnp.asarray, _batch(config, layout, seed=3))
  own = _jit_method(model, "__call__")(batch)["text_logits"]
  p_sil = np.sort(np.asarray(jax.nn.softmax(own, axis=-1)[..., SIL]), axis=None)
  silence, go_on = float(p_sil[p_sil.size // 4]), float(p_sil[3 * p_sil.size // 4])
  before = jnp.concatenate([decisions.previous_ids(batch[key])
                            for key in ("user_transcript", "text_out")], axis=-1)
  expected = decisions.greedy_text(own, decisions.silence_thresholds(before, silence, go_on))
  assert not np.array_equal(expected, decisions.greedy_text(own, silence))
  k_ut = layout.count(SlotKind.USER_TRANSCRIPT)
  graphdef, state = nnx.split(model)
  feed = jax.jit(lambda batch, p: losses.with_own_predictions(
      nnx.merge(graphdef, state), batch, jax.random.key(0), p, silence, go_on,
      config.sample.voicing_threshold), static_argnums=1)
  fed = feed(batch, 1.0)
  np.testing.assert_array_equal(fed["user_transcript"], expected[..., :k_ut])
  np.testing.assert_array_equal(fed["text_out"], expected[..., k_ut:])
  assert not np.array_equal(fed["text_out"], batch["text_out"])
  for key in batch:
    if key not in ("user_transcript", "text_out"):
      np.testing.assert_array_equal(fed[key], batch[key])
  same = feed(batch, 0.0)
  np.testing.assert_array_equal(same["text_out"], batch["text_out"])
  np.testing.assert_array_equal(same["user_transcript"], batch["user_transcript"])


def test_own_predictions_feed_back_the_models_voicing():
  """A model that hears its own audio as voicing is fed back its own voicing decisions at the
  sampler's voicing threshold: an audio slot is voiced exactly where its voicing probability
  exceeds it (here the median one, not 0.5), and keeps its target's bins where both agree it is
  voiced."""
  config = _config()
  config.model.audio_feedback = "voicing"
  layout = Layout.from_config(config.stream)
  model = models.build(config, nnx.Rngs(0))
  batch = jax.tree.map(jnp.asarray, _batch(config, layout, seed=4))
  graphdef, state = nnx.split(model)
  voicing_logits = np.asarray(jax.jit(
      lambda batch: nnx.merge(graphdef, state)(batch)["voicing_logits"])(batch))
  ranked = np.sort(voicing_logits, axis=None)
  cut = float(ranked[ranked.size // 2 - 1] + ranked[ranked.size // 2]) / 2  # between two logits
  threshold = 1 / (1 + np.exp(-cut))
  fed = jax.jit(lambda batch: losses.with_own_predictions(
      nnx.merge(graphdef, state), batch, jax.random.key(0), 1.0,
      config.sample.silence_threshold, config.sample.continue_threshold, threshold))(batch)
  own_voiced = voicing_logits > cut
  assert 0 < own_voiced.mean() < 1
  assert not np.array_equal(own_voiced, voicing_logits > 0)
  np.testing.assert_array_equal(np.asarray(voiced(fed["audio_out"])), own_voiced)
  keep = own_voiced & np.asarray(voiced(batch["audio_out"]))
  np.testing.assert_array_equal(np.asarray(fed["audio_out"])[keep],
                                np.asarray(batch["audio_out"])[keep])


def test_word_accuracy_is_reported_per_stream():
  """A text head predicting <pad> everywhere is right on every <pad> target and wrong on every
  word: put the <pad> targets in one stream and the words in the other, then swap."""
  config = _config()
  layout = Layout.from_config(config.stream)
  model = models.build(config, nnx.Rngs(0))
  model.text_head.w[...] = jnp.zeros_like(model.text_head.w[...])  # equal logits: argmax <pad>
  weights = LossWeights.from_config(config.loss)
  word = len(SPECIAL_PIECES)
  for right, wrong in (("user_transcript", "text_out"), ("text_out", "user_transcript")):
    batch = _batch(config, layout)
    batch[right] = np.zeros_like(batch[right])  # <pad>: not <sil>, so a spoken target
    batch[wrong] = np.full_like(batch[wrong], word)
    _, metrics = loss_fn(model, batch, jax.random.key(0), weights=weights)
    accuracy = {"user_transcript": metrics["transcript_accuracy"],
                "text_out": metrics["text_accuracy"]}
    assert float(accuracy[right]) == 1.0 and float(accuracy[wrong]) == 0.0


def test_previous_ids_follow_each_stream_across_micro_turns():
  """The token before a slot is the one before it in its micro-turn, or the last of the previous
  micro-turn; the rule then picks `continue_threshold` after a word piece only."""
  ids_BNK = np.array([[[10, SIL], [11, 12]]])
  previous = decisions.previous_ids(ids_BNK)
  np.testing.assert_array_equal(previous, [[[PAD, 10], [SIL, 11]]])
  np.testing.assert_array_equal(decisions.silence_thresholds(previous, 0.3, 0.6),
                                [[[0.3, 0.6], [0.3, 0.6]]])
