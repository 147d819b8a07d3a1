"""The layout's table of slot groups is the one statement of the micro-turn format: a group added
to a copy of it reaches the empty segments, random batches, featurization, the session's output
splitting and the loss targets without other edits."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from data_pipelines import featurize
from jax_interact.streams.episode import Episode, Word
from jax_interact.config import defaults
from jax_interact.inference import session
from jax_interact.models import losses
from jax_interact.streams import tokenizer as tok
from jax_interact.streams.layout import (IN, OUT, SLOT_GROUPS, Layout, SlotGroup, SlotKind, Target,
                                         Token, random_batch)

STREAM = defaults().stream
# An input group (captions of the user's video) and an output group (the model's words
# translated), each with a kind of its own (the model's next kind-embedding rows).
CAPTION = SlotGroup(len(SlotKind), "caption", IN, Token.TEXT, lambda s: 2, tok.PAD)
TRANSLATION = SlotGroup(len(SlotKind) + 1, "translation", OUT, Token.TEXT, lambda s: 3, tok.SIL,
                        Target.TEXT)
TABLE = SLOT_GROUPS[:3] + (CAPTION,) + SLOT_GROUPS[3:-1] + (TRANSLATION, SLOT_GROUPS[-1])
STANDARD = Layout.from_config(STREAM)
LAYOUT = Layout.from_config(STREAM, TABLE)


def test_the_new_groups_have_their_slots_in_sequence_order():
  assert LAYOUT.input_len == STANDARD.input_len + 2
  assert LAYOUT.output_len == STANDARD.output_len + 3
  assert LAYOUT.offset(CAPTION.kind) == STANDARD.offset(SlotKind.AUDIO_IN)
  assert LAYOUT.offset(TRANSLATION.kind) == STANDARD.offset(SlotKind.AUDIO_OUT) + 2
  assert LAYOUT.input_keys == ("text_in", "video", "caption", "audio_in", "bg", "video_mask")
  assert LAYOUT.output_keys == ("user_transcript", "text_out", "translation", "audio_out")


def test_empty_segments_and_random_batches_hold_the_new_groups():
  inputs, outputs = session.empty_inputs(LAYOUT, 2), session.empty_outputs(LAYOUT, 2)
  assert set(inputs) == set(LAYOUT.input_keys) and set(outputs) == set(LAYOUT.output_keys)
  np.testing.assert_array_equal(inputs["caption"], np.full((2, 2), tok.PAD, np.int32))
  np.testing.assert_array_equal(outputs["translation"], np.full((2, 3), tok.SIL, np.int32))
  for key, value in session.empty_inputs(STANDARD, 2).items():
    np.testing.assert_array_equal(inputs[key], value)
  batch = random_batch(LAYOUT, 2, 4, vocab_size=64, dmel_bins=16)
  assert batch["caption"].shape == (2, 4, 2) and batch["translation"].shape == (2, 4, 3)
  assert batch["translation"].dtype == np.int32 and batch["translation"].max() < 64


def test_featurization_lays_out_the_new_groups():
  """An episode feeds no source into the new groups yet: they are there, empty, and every other
  group is featurized as with the standard table."""
  words = [Word("model", "red", 0.4, 0.55), Word("user", "hello", 0.1, 0.4)]
  episode = Episode(index=0, task="test", user_audio=np.zeros(16000, np.int16),
                    model_audio=np.zeros(16000, np.int16), video=np.zeros((0, 80, 80, 3), np.uint8),
                    video_times_s=np.zeros(0, np.float32), words=words, events=[])
  tokenizer = types.SimpleNamespace(encode=lambda text: [len(text) + 10])
  tracks, stats = featurize.featurize_episode(episode, LAYOUT, tokenizer, STREAM)
  standard, _ = featurize.featurize_episode(episode, STANDARD, tokenizer, STREAM)
  assert set(tracks) == set(standard) | {"caption", "translation"}
  np.testing.assert_array_equal(tracks["caption"], np.full((5, 2), tok.PAD))
  np.testing.assert_array_equal(tracks["translation"], np.full((5, 3), tok.SIL))
  assert stats["translation_spilled_tokens"] == stats["translation_dropped_tokens"] == 0
  for key, value in standard.items():
    np.testing.assert_array_equal(tracks[key], value)


def test_the_session_splits_an_output_segment_by_the_table():
  """`_local` generates one token per output slot in order; the segment is split into groups as
  the table says (what the session returns and feeds back)."""
  owners = LAYOUT.output_segment()
  assert [(g.key, i) for g, i in owners] == (
      [("user_transcript", i) for i in range(STANDARD.count(SlotKind.USER_TRANSCRIPT))]
      + [("text_out", i) for i in range(STANDARD.count(SlotKind.TEXT_OUT))]
      + [("translation", i) for i in range(3)]
      + [("audio_out", i) for i in range(STANDARD.count(SlotKind.AUDIO_OUT))])
  slots = [jnp.full((2, *g.token.shape(LAYOUT)), j, g.token.dtype)
           for j, (g, _) in enumerate(owners)]
  outputs = LAYOUT.split_output_segment(slots, jnp.stack)
  empty = session.empty_outputs(LAYOUT, 2)
  start = 0
  for key in LAYOUT.output_keys:
    assert outputs[key].shape == empty[key].shape and outputs[key].dtype == empty[key].dtype
    n = empty[key].shape[1]
    np.testing.assert_array_equal(outputs[key][0].reshape(n, -1)[:, 0],
                                  np.arange(start, start + n))
    start += n


def test_the_loss_takes_the_new_output_group_as_a_target_and_never_the_input_group():
  batch = jax.tree.map(jnp.asarray, random_batch(LAYOUT, 2, 3, vocab_size=64, dmel_bins=16))
  batch["translation"] = batch["translation"].at[:, :, 0].set(tok.SIL)
  weights = np.asarray(losses.slot_weights(LAYOUT, batch, 0.1))
  caption = LAYOUT.offset(CAPTION.kind)
  translation = LAYOUT.offset(TRANSLATION.kind)
  assert (weights[..., caption:caption + 2] == 0).all()
  assert weights[..., translation] == pytest.approx(0.1)
  assert (weights[..., translation + 1:translation + 3] == 1).all()

  slots_K, targets_BNK, streams_K = losses.output_targets(LAYOUT, batch, Token.TEXT)
  first = STANDARD.count(SlotKind.USER_TRANSCRIPT) + STANDARD.count(SlotKind.TEXT_OUT)
  np.testing.assert_array_equal(targets_BNK[..., first:], batch["translation"])
  assert list(streams_K[first:]) == [Target.TEXT] * 3
  np.testing.assert_array_equal(slots_K[first:], translation - LAYOUT.input_len + np.arange(3))

  noisy = losses.with_feedback_noise(LAYOUT, batch, jax.random.key(0), 1.0, vocab_size=64)
  words = np.asarray(batch["translation"] >= len(tok.SPECIAL_PIECES))
  assert (np.asarray(noisy["translation"] != batch["translation"])[words]).mean() > 0.8
  np.testing.assert_array_equal(noisy["caption"], batch["caption"])
