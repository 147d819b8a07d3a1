"""Streaming inference (SPEC §7): sessions, the batched engine, the `stream` command."""
