"""7b: Moshi-sized, for decode-speed comparison only (never trained here).

The temporal model has the shape of Moshi's 7B Helium backbone (d_model 4096, 32 layers, 32
heads without key/value sharing, d_ff 11264), the local decoder that of its depth transformer
(6 layers, d_model 1024, 16 heads). The window of 70 micro-turns x 43 tokens = 3010 positions
matches Moshi's 3000-step context, so a decode step reads the same KV length.
"""

from jax_interact.config import defaults


def get_config():
  c = defaults()
  c.name = "7b"
  c.model.vocab_size = 32000
  c.model.d_model = 4096
  c.model.n_layers = 32
  c.model.n_heads = 32
  c.model.n_kv_heads = 32
  c.model.head_dim = 128
  c.model.d_ff = 11264
  c.model.window_turns = 70
  c.model.local_layers = 6
  c.model.local_d_model = 1024
  c.model.local_heads = 16
  c.model.local_d_ff = 4096
  c.model.flow_hidden = 1024
  c.model.dtype = "bfloat16"
  c.model.remat = "full"
  c.mesh.fsdp = -1
  c.mesh.data = 1
  return c
