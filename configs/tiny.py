"""tiny: trains on 2 CPU cores in minutes. Small frames, two narrow layers."""

from jax_interact.config import defaults


def get_config():
  c = defaults()
  c.name = "tiny"
  c.stream.n_mels = 40
  c.stream.video_height = 80
  c.stream.video_width = 80
  c.data.window = 16
  c.data.batch_size = 4  # keeps a step well under a second on 2 CPU cores
  c.model.vocab_size = 512
  c.model.d_model = 128
  c.model.n_layers = 2
  c.model.n_heads = 4
  c.model.n_kv_heads = 2
  c.model.head_dim = 32
  c.model.d_ff = 384
  c.model.window_turns = 16
  c.model.sinks = 4
  c.model.local_layers = 1
  c.model.local_d_model = 128
  c.model.local_heads = 4
  c.model.local_d_ff = 256
  c.model.flow_hidden = 256
  c.train.steps = 300
  c.train.lr = 2e-3
  c.train.warmup_steps = 30
  c.train.weight_decay = 0.0
  c.train.eval_every_steps = 100
  c.train.eval_batches = 2
  c.checkpoint.every_steps = 100
  return c
