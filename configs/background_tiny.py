"""background_tiny: the background LM (SPEC §5) at a size that trains on 2 CPU cores in minutes.

The transformer and training schedule of `tiny`, as a causal text LM over context packages.
Train it on the `delegate` episodes of a dataset:
  jax-interact train --config configs/background_tiny.py --workdir W --config.data.dir=DIR
"""

from configs import tiny


def get_config():
  c = tiny.get_config()
  c.name = "background_tiny"
  c.model.kind = "background"
  c.data.seq_len = 128
  c.data.batch_size = 8
  c.background.max_new_tokens = 32
  return c
