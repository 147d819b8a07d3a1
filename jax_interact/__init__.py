"""jax_interact: interaction models (listen, watch and speak in 200 ms micro-turns) in JAX."""

__version__ = "0.1.0"
