"""Every training-attention kernel computes the reference attention under the exact mask."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from jax_interact import config as config_lib
from jax_interact import models, sharding
from jax_interact.models import attention_kernels, loss_for
from jax_interact.models.window import Window
from jax_interact.streams.layout import Layout, random_batch

# (sequence length, turn_len, window_turns, sinks): window shorter than the sequence with and
# without sinks, an odd length (cuDNN pads), a window covering the sequence (plain causal), and
# both at once (the local decoder's seven tokens, which cuDNN refused unpadded).
CASES = [(300, 7, 3, 2), (301, 43, 2, 0), (200, 43, 16, 4), (260, 43, 2, 5), (7, 1, 8, 0)]
KERNELS = {
    "blocked": attention_kernels._blocked,
    # cuDNN's arguments (causal, sliding window, mask) run through XLA's implementation.
    "cudnn_arguments": functools.partial(attention_kernels._flash, implementation="xla"),
    "splash_interpreted": functools.partial(attention_kernels._splash, interpret=True),
}


def _qkv(seq_len, seed=0, batch=2, heads=4, kv_heads=2, head_dim=16):
  keys = jax.random.split(jax.random.key(seed), 3)
  return (jax.random.normal(keys[0], (batch, seq_len, heads, head_dim)),
          jax.random.normal(keys[1], (batch, seq_len, kv_heads, head_dim)),
          jax.random.normal(keys[2], (batch, seq_len, kv_heads, head_dim)))


def _reference(q, k, v, window):
  pos = np.arange(q.shape[1])
  visible = np.zeros((len(pos), len(pos)), bool)
  for i in pos:
    for j in range(i + 1):
      visible[i, j] = i // window.turn_len - j // window.turn_len < window.window_turns or \
          j < window.sinks
  return jax.nn.dot_product_attention(q, k, v, mask=jnp.asarray(visible)[None, None])


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_kernel_matches_reference_attention(kernel, case):
  seq_len, turn_len, window_turns, sinks = case
  window = Window(turn_len, window_turns, sinks)
  q, k, v = _qkv(seq_len)
  got = jax.jit(KERNELS[kernel], static_argnums=3)(q, k, v, window)
  np.testing.assert_allclose(got, _reference(q, k, v, window), atol=2e-6, rtol=0)


@pytest.mark.parametrize("kernel", ["blocked", "splash_interpreted"])
def test_kernel_gradients_match_reference(kernel):
  window = Window(7, 3, 2)
  q, k, v = _qkv(200, seed=1)
  cotangent = jax.random.normal(jax.random.key(9), q.shape)

  def grads(attend):
    return jax.jit(jax.grad(lambda q, k, v: jnp.sum(attend(q, k, v, window) * cotangent),
                            argnums=(0, 1, 2)))(q, k, v)

  for got, want in zip(grads(KERNELS[kernel]), grads(_reference)):
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=0)


def test_splash_runs_per_shard_inside_a_mesh():
  """Batch over data, heads over tensor: the kernel sees each shard's heads and rows."""
  window = Window(7, 3, 2)
  q, k, v = _qkv(130, seed=2, batch=4)
  mesh = sharding.make_mesh(ml_collections.ConfigDict({"data": 2, "fsdp": 2, "tensor": 2}))
  with sharding.use(mesh):
    got = jax.jit(KERNELS["splash_interpreted"], static_argnums=3)(q, k, v, window)
  np.testing.assert_allclose(got, _reference(q, k, v, window), atol=2e-6, rtol=0)


@pytest.mark.parametrize("platform, dtype, expected", [
    ("cpu", jnp.float32, "blocked"), ("cpu", jnp.bfloat16, "blocked"),
    ("gpu", jnp.bfloat16, "cudnn"), ("gpu", jnp.float32, "blocked"),
    ("tpu", jnp.bfloat16, "splash"), ("tpu", jnp.float32, "splash")])
def test_auto_chooses_by_platform_and_named_kernels_are_kept(monkeypatch, platform, dtype,
                                                             expected):
  monkeypatch.setattr(jax, "default_backend", lambda: platform)
  assert attention_kernels.choose("auto", dtype) == expected
  assert attention_kernels.choose("xla", dtype) == "xla"


def test_unknown_kernel_is_a_one_line_config_error():
  with pytest.raises(config_lib.ConfigError, match="model.attention.*expected one of"):
    config_lib.load("configs/tiny.py", ["model.attention=flash"])


def test_tiny_training_loss_and_gradients_are_those_of_the_dense_kernel():
  """configs/tiny.py on CPU trains with the blocked kernel ("auto"): same loss and gradients as
  the dense reference, within float reordering."""
  results = {}
  for kernel in ("xla", "auto"):
    config = config_lib.load("configs/tiny.py", [f"model.attention={kernel}", "data.window=8",
                                                 "model.window_turns=3", "model.sinks=4"])
    layout = Layout.from_config(config.stream)
    batch = random_batch(layout, 2, config.data.window, config.model.vocab_size,
                         config.stream.dmel_bins, seed=0)
    graphdef, params, rest = nnx.split(models.build(config, nnx.Rngs(0)), nnx.Param,
                                       ...)
    loss_fn = loss_for(config)
    loss = lambda p: loss_fn(nnx.merge(graphdef, p, rest), batch, jax.random.key(0))[0]
    results[kernel] = jax.jit(jax.value_and_grad(loss))(params)
  (loss_xla, grads_xla), (loss_auto, grads_auto) = results["xla"], results["auto"]
  assert float(loss_auto) == pytest.approx(float(loss_xla), rel=1e-6)
  for got, want in zip(jax.tree.leaves(grads_auto), jax.tree.leaves(grads_xla)):
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-4)
