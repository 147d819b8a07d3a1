"""1b: a billion-parameter interaction model in bfloat16 (multi-GPU / TPU pod training)."""

from jax_interact.config import defaults


def get_config():
  c = defaults()
  c.name = "1b"
  c.data.window = 64
  # 64 windows in 2 micro-batches with remat "dots" and fused attention: about 102 GiB of an
  # H200's 141 by counting.train_memory (an 80 GB H100: grad_accum 4, or fsdp over more GPUs).
  c.data.batch_size = 64
  c.train.grad_accum = 2
  c.model.d_model = 2048
  c.model.n_layers = 20
  c.model.n_heads = 16
  c.model.n_kv_heads = 4
  c.model.head_dim = 128
  c.model.d_ff = 5632
  c.model.window_turns = 128
  c.model.local_layers = 4
  c.model.local_d_model = 768
  c.model.local_heads = 12
  c.model.local_d_ff = 2048
  c.model.flow_hidden = 1024
  c.model.dtype = "bfloat16"
  c.model.remat = "dots"
  c.mesh.fsdp = -1
  c.mesh.data = 1
  return c
