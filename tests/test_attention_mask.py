"""The sliding-window-plus-sinks mask, and that cached (streaming) attention equals the full pass."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jax_interact.models.layers import Precision
from jax_interact.models.transformer import Dims, Transformer
from jax_interact.models.window import Window, attention_mask


def _mask_by_loops(q_pos, k_pos, turn_len, window_turns, sinks):
  mask = np.zeros((len(q_pos), len(k_pos)), bool)
  for i, q in enumerate(q_pos):
    for j, k in enumerate(k_pos):
      if k < 0 or k > q:
        continue
      recent = q // turn_len - k // turn_len <= window_turns - 1
      mask[i, j] = recent or k < sinks
  return mask


@pytest.mark.parametrize("window_turns,sinks,turn_len",
                         [(1, 0, 1), (2, 3, 4), (3, 0, 5), (4, 4, 3), (10, 2, 7)])
def test_mask_matches_direct_construction(window_turns, sinks, turn_len):
  n = 6 * turn_len  # longer than the window in most cases
  pos = np.arange(n)
  got = attention_mask(pos, pos, turn_len, window_turns, sinks)
  np.testing.assert_array_equal(got, _mask_by_loops(pos, pos, turn_len, window_turns, sinks))
  # A ring buffer: keys in any order, empty slots marked -1.
  rng = np.random.default_rng(turn_len)
  k_pos = rng.permutation(np.concatenate([pos, -np.ones(5, int)]))
  q_pos = pos[-turn_len:]
  got = attention_mask(q_pos, k_pos, turn_len, window_turns, sinks)
  np.testing.assert_array_equal(got, _mask_by_loops(q_pos, k_pos, turn_len, window_turns, sinks))


def test_window_and_sinks_are_what_a_late_query_sees():
  turn_len, window_turns, sinks = 3, 2, 2
  pos = np.arange(30)
  visible = np.flatnonzero(attention_mask(pos, pos, turn_len, window_turns, sinks)[29])
  # Query in micro-turn 9 sees micro-turns 8 and 9 (positions 24..29) and the 2 sinks.
  np.testing.assert_array_equal(visible, [0, 1, 24, 25, 26, 27, 28, 29])


def test_cached_steps_match_full_forward():
  """Micro-turn by micro-turn against a ring-buffer cache == one pass over the sequence."""
  turn_len, n_turns, batch = 3, 7, 2
  window = Window(turn_len, window_turns=3, sinks=2)
  with nnx.use_eager_sharding(False):
    model = Transformer(Dims(d_model=16, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8,
                             d_ff=32), Precision(), rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(model)
  run = jax.jit(lambda state, x, pos, cache: nnx.merge(graphdef, state)(x, window, pos, cache))
  x = jax.random.normal(jax.random.key(1), (batch, n_turns * turn_len, 16))
  full, _, _ = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x, window))(state, x)

  pos = jnp.broadcast_to(jnp.arange(n_turns * turn_len), x.shape[:2])
  cache = model.init_cache(batch, window.sinks + window.window_turns * turn_len)
  steps = []
  for t in range(n_turns):
    chunk = slice(t * turn_len, (t + 1) * turn_len)
    y, cache, _ = run(state, x[:, chunk], pos[:, chunk], cache)
    steps.append(y)
  np.testing.assert_allclose(jnp.concatenate(steps, axis=1), full, atol=1e-5, rtol=0)
