"""background_small: a background LM of about 10M parameters; trains on one GPU in minutes.

The transformer of `small`, as a causal text LM over context packages.

  jax-interact train --config configs/background_small.py --workdir W --config.data.dir=DIR
"""

from configs import small


def get_config():
  c = small.get_config()
  c.name = "background_small"
  c.model.kind = "background"
  c.data.seq_len = 256
  c.background.max_new_tokens = 64
  c.train.steps = 3000
  return c
