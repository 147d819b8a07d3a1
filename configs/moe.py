"""moe: the base model with a mixture of 8 SwiGLU experts (top-2) in every temporal block."""

from jax_interact.config import defaults


def get_config():
  c = defaults()
  c.name = "moe"
  c.model.num_experts = 8
  c.model.experts_per_token = 2
  c.model.d_ff = 768
  return c
