"""background_small: a background LM of about 10M parameters; trains on one GPU in minutes.

  jax-interact train --config configs/background_small.py --workdir W --config.data.dir=DIR
"""

from jax_interact.config import defaults


def get_config():
  c = defaults()
  c.name = "background_small"
  c.model.kind = "background"
  c.data.seq_len = 256
  c.data.batch_size = 32
  c.model.d_model = 384
  c.model.n_layers = 6
  c.model.n_heads = 6
  c.model.n_kv_heads = 2
  c.model.head_dim = 64
  c.model.d_ff = 1024
  c.background.max_new_tokens = 64
  c.train.steps = 3000
  c.train.lr = 1e-3
  return c
