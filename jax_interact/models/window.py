"""What a query may see (SPEC §4): the last W micro-turns, its own included, plus S sink tokens.

One definition, `attention_mask`, of absolute positions, shared by training (a whole window), the
streaming step (a ring-buffer cache whose slots carry their position, -1 when empty), the
attention kernels and the FLOP count. It works on numpy and jax arrays alike.
"""

from __future__ import annotations

import dataclasses

import jax


@dataclasses.dataclass(frozen=True)
class Window:
  """What a query may attend to: the last `window_turns` micro-turns plus `sinks` first tokens."""

  turn_len: int
  window_turns: int
  sinks: int


def attention_mask(q_pos: jax.Array, k_pos: jax.Array, turn_len: int, window_turns: int,
                   sinks: int) -> jax.Array:
  """bool [..., Q, K]: may the query at absolute position q_pos see the key at k_pos.

  A key is visible when it exists (k_pos >= 0), is not in the future (k_pos <= q_pos) and either
  lies in one of the last `window_turns` micro-turns, the query's own included
  (q_pos // turn_len - k_pos // turn_len < window_turns), or is one of the `sinks` first tokens
  of the session (k_pos < sinks).
  """
  q = q_pos[..., :, None]
  k = k_pos[..., None, :]
  in_window = (q // turn_len) - (k // turn_len) < window_turns
  return (k >= 0) & (k <= q) & (in_window | (k < sinks))
