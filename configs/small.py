"""small: about 15M parameters; trains on one GPU in under an hour."""

from jax_interact.config import defaults


def get_config():
  c = defaults()
  c.name = "small"
  c.data.window = 32
  c.data.batch_size = 32
  c.model.d_model = 384
  c.model.n_layers = 6
  c.model.n_heads = 6
  c.model.n_kv_heads = 2
  c.model.head_dim = 64
  c.model.d_ff = 1024
  c.model.window_turns = 32
  c.model.local_layers = 2
  c.model.local_d_model = 256
  c.model.local_heads = 4
  c.model.local_d_ff = 768
  c.model.flow_hidden = 384
  c.model.dtype = "bfloat16"
  c.train.steps = 5000
  c.train.lr = 1e-3
  return c
