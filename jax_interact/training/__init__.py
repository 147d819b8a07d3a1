"""Training building blocks (SPEC §6): optimizer, pure steps, checkpoints, metrics, multi-host.

`jax_interact.trainer` puts them together into the training loop.
"""
