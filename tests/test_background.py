"""The background LM: model and loss, the KV-cached LM worker, and its training sequences."""

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from data_pipelines import background_data, dataset
from jax_interact import config as config_lib
from jax_interact import models
from jax_interact.background import transcript as transcript_lib
from jax_interact.background.lm_worker import LMWorker
from jax_interact.errors import ConfigError
from jax_interact.streams.tokenizer import BG, BOS, EOS, PAD
from tests.test_dataset import tiny_episode, tiny_stream
from tests.test_orchestrator import QUESTION, RESULT, delegate_episode

SEQ_LEN, MAX_NEW = 48, 8


def background_config(*overrides):
  return config_lib.load("configs/background_tiny.py", [
      "model.vocab_size=64", "model.d_model=32", "model.n_heads=2", "model.n_kv_heads=1",
      "model.head_dim=16", "model.d_ff=64", f"data.seq_len={SEQ_LEN}", "data.batch_size=2",
      "data.num_workers=0", f"background.max_new_tokens={MAX_NEW}", *overrides])


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  out = tmp_path_factory.mktemp("bg") / "ds"
  episodes = [delegate_episode(), tiny_episode(1), delegate_episode(), delegate_episode()]
  for index, episode in enumerate(episodes):
    episode.index = index
  dataset.write_dataset(out, episodes, vocab_size=64, stream_config=tiny_stream())
  return out


@pytest.fixture(scope="module")
def tokenizer(data_dir):
  return dataset.load_tokenizer(data_dir)


def test_dispatch_builds_the_model_and_loss_of_the_kind():
  config = background_config()
  assert isinstance(nnx.eval_shape(lambda: models.build(config, nnx.Rngs(0))), models.BackgroundModel)
  assert models.loss_for(config) is models.background_loss_fn
  assert models.loss_for(config_lib.load("configs/tiny.py")).func is models.loss_fn
  with pytest.raises(ConfigError, match="model.kind"):
    background_config("model.kind=oracle")


def test_loss_counts_only_the_masked_targets():
  config = background_config()
  model = models.build(config, nnx.Rngs(0))
  tokens = jax.random.randint(jax.random.key(1), (2, 12), 8, 64)
  mask = jnp.zeros((2, 12)).at[:, 6:9].set(1.0)
  loss, _ = models.background_loss_fn(model, {"tokens": tokens, "loss_mask": mask}, None)
  logits, _, _ = model(tokens[:, :-1])
  nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), tokens[:, 1:, None], -1)[..., 0]
  assert np.isclose(float(loss), float(jnp.mean(nll[:, 5:8])), rtol=1e-5)
  changed = tokens.at[:, 9:].set(7)  # after the last target: cannot matter
  assert np.isclose(float(models.background_loss_fn(
      model, {"tokens": changed, "loss_mask": mask}, None)[0]), float(loss), rtol=1e-6)


def collect(job, limit_s=60.0):
  ids, deadline = [], time.monotonic() + limit_s
  while time.monotonic() < deadline:
    new, finished = job.poll(0.0)
    ids += new
    if finished:
      return ids
    time.sleep(0.005)
  raise AssertionError("job did not finish")


def test_lm_worker_streams_the_greedy_continuation(tokenizer):
  """Cached decoding in the worker's while_loop = argmax of the full forward, token by token."""
  config = background_config()
  model = models.build(config, nnx.Rngs(3))
  worker = LMWorker(model, tokenizer, context_len=SEQ_LEN, max_new_tokens=MAX_NEW,
                    device=jax.devices()[1])
  package = f"0.0s user typed: {QUESTION}\ntask: {QUESTION}"
  try:
    got = collect(worker.submit(package))
    cancelled = worker.submit(package)
    cancelled.cancel()
    assert len(collect(cancelled)) <= 1  # stops at the first token it hands back
  finally:
    worker.close()
  prompt = transcript_lib.package_ids(package, tokenizer, SEQ_LEN - MAX_NEW)
  sequence = np.full((1, len(prompt) + MAX_NEW), PAD, np.int32)
  sequence[0, :len(prompt)] = prompt
  forward = jax.jit(lambda params, tokens: nnx.merge(graphdef, params)(tokens)[0])
  graphdef, params = nnx.split(model)
  expected = []
  for i in range(len(prompt), len(prompt) + MAX_NEW):  # causal: later padding changes nothing
    token = int(jnp.argmax(forward(params, sequence)[0, i - 1]))
    if token == EOS:
      break
    expected.append(token)
    sequence[0, i] = token
  assert got == expected


def test_sequences_are_package_then_result(data_dir, tokenizer):
  config = background_config()
  assert background_data.split_jobs(data_dir, "train") == [(0, 0), (2, 0)]
  iterator = background_data.make_iterator(config, data_dir, "train", seed=0)
  batch = next(iterator)
  assert batch["tokens"].shape == (2, SEQ_LEN) and batch["tokens"].dtype == np.int32
  assert batch["loss_mask"].dtype == np.float32
  for tokens, mask in zip(batch["tokens"], batch["loss_mask"]):
    assert tokens[0] == BOS
    start = int(np.argmax(mask))
    assert tokens[start - 1] == BG
    result = tokens[mask > 0]
    assert result[-1] == EOS and tokenizer.decode(result) == RESULT
    prompt = tokenizer.decode(tokens[:start])
    assert QUESTION in prompt and "let me" in prompt
    assert set(tokens[start + len(result):]) <= {PAD}


def test_iterator_state_resumes_the_same_batches(data_dir):
  config = background_config()
  iterator = background_data.make_iterator(config, data_dir, "train", seed=1)
  next(iterator)
  state = iterator.get_state()
  expected = [next(iterator)["tokens"] for _ in range(3)]
  resumed = background_data.make_iterator(config, data_dir, "train", seed=1)
  resumed.set_state(state)
  assert all(np.array_equal(next(resumed)["tokens"], e) for e in expected)


def test_package_for_training_matches_the_runtime_rendering(tokenizer):
  """The package an episode trains on is the one its session would render at the delegation."""
  package = transcript_lib.from_episode(delegate_episode(), 0.8, tokenizer, 200).package(tokenizer)
  assert package == (f"0.0s user typed: {QUESTION}\n0.8s model: let me\n"
                     f"task: {QUESTION}")
