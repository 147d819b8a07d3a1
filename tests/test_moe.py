"""Sorted MoE dispatch equals computing every expert on every token (the dense reference)."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from jax_interact import sharding
from jax_interact.models.layers import Precision
from jax_interact.models.moe import MoE

D, F, E, K = 16, 24, 4, 2
B, T = 2, 12


def _moe(capacity: float) -> MoE:
  with nnx.use_eager_sharding(False):
    return MoE(D, F, E, K, capacity, Precision(), rngs=nnx.Rngs(0))


def _x(seed=0):
  return jax.random.normal(jax.random.key(seed), (B, T, D))


def _dense_reference(moe: MoE, x_BTD, kept_BTK=None):
  """Every expert on every token, mixed by the router's renormalised top-k weights; assignments
  where `kept_BTK` is False add nothing."""
  probs = jax.nn.softmax(x_BTD @ moe.router[...], axis=-1)
  top_probs, experts = jax.lax.top_k(probs, K)
  weights = top_probs / top_probs.sum(-1, keepdims=True)
  if kept_BTK is not None:
    weights = weights * kept_BTK
  weights_BTE = jnp.einsum("btk,btke->bte", weights, jax.nn.one_hot(experts, E))
  h = jax.nn.silu(jnp.einsum("btd,edf->btef", x_BTD, moe.w_gate[...])) * jnp.einsum(
      "btd,edf->btef", x_BTD, moe.w_up[...])
  return jnp.einsum("btef,efd,bte->btd", h, moe.w_down[...], weights_BTE), experts


def _run(moe, x, **kwargs):
  graphdef, state = nnx.split(moe)
  return jax.jit(lambda s, x: nnx.merge(graphdef, s)(x, **kwargs))(state, x)


@pytest.mark.parametrize("capacity", [0.0, E / K])  # dropless; room for every token
def test_dispatch_without_drops_equals_the_dense_reference(capacity):
  moe, x = _moe(capacity), _x()
  y, aux = _run(moe, x)
  want, _ = _dense_reference(moe, x)
  np.testing.assert_allclose(y, want, atol=1e-5, rtol=0)
  assert float(aux) >= 1.0 - 1e-6  # the balancing term is at least 1, its balanced value


def test_capacity_drops_the_assignments_past_each_experts_room():
  """Each expert takes its first C assignments of a sequence in token order; later ones add
  nothing. Decoding (dropless) drops none."""
  capacity = 0.5
  moe, x = _moe(capacity), _x(1)
  _, experts = _dense_reference(moe, x)
  slots = math.ceil(capacity * T * K / E)
  kept = np.zeros((B, T, K), bool)
  for b in range(B):
    taken = np.zeros(E, int)
    for t in range(T):
      for j in range(K):
        e = int(experts[b, t, j])
        kept[b, t, j] = taken[e] < slots
        taken[e] += 1
  assert 0 < kept.mean() < 1  # the case drops some, keeps some
  y, _ = _run(moe, x)
  want, _ = _dense_reference(moe, x, jnp.asarray(kept, jnp.float32))
  np.testing.assert_allclose(y, want, atol=1e-5, rtol=0)
  decoded, _ = _run(moe, x, dropless=True)
  np.testing.assert_allclose(decoded, _dense_reference(moe, x)[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("capacity", [0.0, E / K])
def test_gradients_equal_the_dense_reference(capacity):
  moe = _moe(capacity)
  graphdef, state = nnx.split(moe)
  x, cotangent = _x(2), jax.random.normal(jax.random.key(3), (B, T, D))

  def loss(state, x, reference):
    model = nnx.merge(graphdef, state)
    y = _dense_reference(model, x)[0] if reference else model(x)[0]
    return jnp.sum(y * cotangent)

  got = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)(state, x, False)
  want = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)(state, x, True)
  for name in ("w_gate", "w_up", "w_down", "router"):
    np.testing.assert_allclose(got[0][name][...], want[0][name][...], atol=1e-5, rtol=0,
                               err_msg=name)
  np.testing.assert_allclose(got[1], want[1], atol=1e-5, rtol=0)


def test_experts_split_over_the_expert_mesh_axis():
  mesh = sharding.make_mesh(ml_collections.ConfigDict(
      {"data": 2, "fsdp": 1, "expert": 2, "tensor": 2}))
  x = _x(4)
  unsharded, _ = _run(_moe(E / K), x)
  with sharding.use(mesh):
    moe = MoE(D, F, E, K, E / K, Precision(), rngs=nnx.Rngs(0))
    assert tuple(moe.w_gate[...].sharding.spec) == ("expert", "fsdp", "tensor")
    y, _ = _run(moe, x)
  np.testing.assert_allclose(y, unsharded, atol=1e-5, rtol=0)
