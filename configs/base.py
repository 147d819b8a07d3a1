"""base: the defaults of jax_interact.config (about 33M parameters)."""

from jax_interact.config import defaults


def get_config():
  return defaults()
