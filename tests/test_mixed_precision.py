"""bfloat16 compute with float32 parameters and optimizer state (the accelerator configs)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jax_interact import config as config_lib
from jax_interact import models, sharding, trainer
from jax_interact.inference import session
from jax_interact.streams.layout import random_batch

STEPS = 20
# configs/tiny.py shrunk so two runs of STEPS steps stay short on CPU.
SMALL = [
    "model.d_model=64", "model.n_layers=2", "model.n_heads=4", "model.n_kv_heads=2",
    "model.head_dim=16", "model.d_ff=128", "model.local_d_model=32", "model.local_heads=2",
    "model.local_d_ff=64", "model.flow_hidden=32", "model.window_turns=2", "model.sinks=1",
    "model.vocab_size=64", "stream.n_mels=8", "stream.video_height=40", "stream.video_width=40",
    "data.window=4", "data.batch_size=8", "train.log_every_steps=1", "train.eval_batches=0",
    "train.warmup_steps=0", "train.lr=3e-3", f"train.steps={STEPS}",
    f"checkpoint.every_steps={STEPS}", "mesh.data=1", "data.source=random",
]
# Relative difference allowed between the bfloat16 and float32 loss at every step (seen: 3e-4).
LOSS_TOLERANCE = 0.01


@pytest.mark.parametrize("name", ["small", "base", "1b", "7b", "moe"])
def test_accelerator_configs_compute_in_bfloat16_and_keep_float32_parameters(name):
  model = config_lib.load(f"configs/{name}.py").model
  assert (model.dtype, model.param_dtype) == ("bfloat16", "float32")


def test_bfloat16_loss_tracks_float32_over_a_short_run(tmp_path):
  losses = {}
  for dtype in ("float32", "bfloat16"):
    config = config_lib.load("configs/tiny.py", SMALL + [f"model.dtype={dtype}"])
    trainer.train(config, tmp_path / dtype, devices=jax.devices()[:1])
    rows = (tmp_path / dtype / "metrics.jsonl").read_text().splitlines()
    losses[dtype] = np.array([json.loads(row)["loss"] for row in rows])
  assert len(losses["bfloat16"]) == STEPS
  np.testing.assert_allclose(losses["bfloat16"], losses["float32"], rtol=LOSS_TOLERANCE)
  assert losses["bfloat16"][-5:].mean() < losses["bfloat16"][0] - 0.5  # it learns

  config = config_lib.load("configs/tiny.py", SMALL + ["model.dtype=bfloat16"])
  mesh = sharding.make_mesh(config.mesh, jax.devices()[:1])
  with sharding.use(mesh):
    program = trainer.Program.create(config, mesh)
  dtypes = {x.dtype for x in jax.tree.leaves((program.abstract_state,
                                               program.abstract_opt_state))
            if jnp.issubdtype(x.dtype, jnp.floating)}
  assert dtypes == {jnp.dtype(jnp.float32)}


def test_bfloat16_model_computes_in_bfloat16_and_serves_with_the_same_numbers():
  """Activations are bfloat16, logits float32; the decode step reads weights stored in
  bfloat16 (norm scales in float32) and gives what float32 weights cast at use give."""
  config = config_lib.load("configs/tiny.py", SMALL + ["model.dtype=bfloat16"])
  model = models.build(config, nnx.Rngs(0))
  batch = random_batch(model.layout, 2, 2, config.model.vocab_size, config.stream.dmel_bins, 0)
  graphdef, state = nnx.split(model)
  out = jax.jit(lambda s, b: nnx.merge(graphdef, s)(b))(state, batch)
  assert out["temporal_hidden"].dtype == jnp.bfloat16
  assert out["text_logits"].dtype == out["voicing_logits"].dtype == jnp.float32

  params, run = session.jit_step(model)
  stored = {name: leaf.dtype for name, leaf in nnx.to_flat_state(params)}
  assert stored[("temporal", "blocks", "attn", "w_q")] == jnp.bfloat16
  assert stored[("temporal", "blocks", "attn_norm", "scale")] == jnp.float32
  chunk = {k: jnp.asarray(batch[k][:, 0]) for k in session.INPUT_KEYS}
  _, served = run(params, session.init_state(model, 2, 0), chunk)
  _, cast_at_use = run(state, session.init_state(model, 2, 0), chunk)
  np.testing.assert_array_equal(served["text_logits"], cast_at_use["text_logits"])
