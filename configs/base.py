"""base: the defaults of jax_interact.config (about 33M parameters), computing in bfloat16."""

from jax_interact.config import defaults


def get_config():
  c = defaults()
  c.model.dtype = "bfloat16"
  return c
