"""background_tiny: the background LM (SPEC §5) at a size that trains on 2 CPU cores in minutes.

Train it on the `delegate` episodes of a dataset:
  jax-interact train --config configs/background_tiny.py --workdir W --config.data.dir=DIR
"""

from jax_interact.config import defaults


def get_config():
  c = defaults()
  c.name = "background_tiny"
  c.model.kind = "background"
  c.data.seq_len = 128
  c.data.batch_size = 8
  c.model.vocab_size = 512
  c.model.d_model = 128
  c.model.n_layers = 2
  c.model.n_heads = 4
  c.model.n_kv_heads = 2
  c.model.head_dim = 32
  c.model.d_ff = 384
  c.background.max_new_tokens = 32
  c.train.steps = 300
  c.train.lr = 2e-3
  c.train.warmup_steps = 30
  c.train.weight_decay = 0.0
  c.train.eval_every_steps = 100
  c.train.eval_batches = 2
  c.checkpoint.every_steps = 100
  return c
