"""The JAX background LM worker (SPEC §5): greedy decoding of a `BackgroundModel` in a thread.

One jitted function does a whole job on device: a prefill of the prompt (left-padded to a fixed
length, so it compiles once) into a KV cache, then a `lax.while_loop` that decodes one token per
iteration against the cache until `<eos>`, `max_new_tokens` or cancellation. Each token leaves
the loop through an ordered `io_callback` that puts it on the job's queue (so results stream
back token by token) and answers whether the job was cancelled. Jobs run one at a time, first
in first out, on the worker's thread and, optionally, on a device of its own.
"""

from __future__ import annotations

import functools
import queue
import threading

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental import io_callback

from jax_interact.background.transcript import package_ids
from jax_interact.background.workers import Job, task_of
from jax_interact.models.background import BackgroundModel
from jax_interact.streams.tokenizer import EOS, PAD, Tokenizer


def _generate(graphdef: nnx.GraphDef, max_new_tokens: int, emit, params: nnx.State,
              prompt_P: jax.Array, length: jax.Array) -> jax.Array:
  """Greedy decode after `prompt_P` (int32 [P], its last `length` entries are the prompt).

  Calls `emit(token) -> cancelled` for each generated token before `<eos>`; returns how many.
  """
  model: BackgroundModel = nnx.merge(graphdef, params)
  p = prompt_P.shape[0]
  pos_P = jnp.arange(p, dtype=jnp.int32) - (p - length)
  pos_P = jnp.where(pos_P < 0, -1, pos_P)  # padding: never attended to
  cache = model.init_cache(1, p + max_new_tokens)
  logits_1PV, cache, _ = model(prompt_P[None], pos_P[None], cache)

  def keep_going(carry):
    i, _, _, stop = carry
    return (i < max_new_tokens) & ~stop

  def decode_one(carry):
    i, token, cache, _ = carry
    ended = token == EOS
    cancelled = io_callback(emit, jax.ShapeDtypeStruct((), jnp.bool_), token, ended,
                            ordered=True)
    pos_11 = jnp.reshape(length + i, (1, 1)).astype(jnp.int32)
    logits_11V, cache, _ = model(token.reshape(1, 1), pos_11, cache)
    next_token = jnp.argmax(logits_11V[0, -1]).astype(jnp.int32)
    return i + (~ended).astype(jnp.int32), next_token, cache, ended | cancelled

  first = jnp.argmax(logits_1PV[0, -1]).astype(jnp.int32)
  count, _, _, _ = jax.lax.while_loop(keep_going, decode_one,
                                      (jnp.int32(0), first, cache, jnp.bool_(False)))
  return count


class LMWorker:
  """`LMWorker(model, tokenizer, context_len=..., max_new_tokens=...)`: the worker protocol of
  workers.py over a background LM. `context_len` bounds prompt plus result (the training
  sequence length); `device` places the model on a device of its own."""

  def __init__(self, model: BackgroundModel, tokenizer: Tokenizer, *, context_len: int,
               max_new_tokens: int, device: jax.Device | None = None):
    if max_new_tokens >= context_len:
      raise ValueError(f"max_new_tokens {max_new_tokens} leaves no room for a prompt in "
                       f"context_len {context_len}")
    graphdef, params = nnx.split(model)
    self._params = jax.device_put(params, device) if device is not None else params
    self._device = device
    self._tokenizer = tokenizer
    self._prompt_len = context_len - max_new_tokens
    self._generate = jax.jit(functools.partial(_generate, graphdef, max_new_tokens, self._emit))
    self._current: Job | None = None
    self._jobs: queue.SimpleQueue = queue.SimpleQueue()
    self._thread = threading.Thread(target=self._serve, daemon=True)
    self._thread.start()

  def submit(self, package: str) -> Job:
    job = Job(task_of(package))
    self._jobs.put((job, package))
    return job

  def close(self) -> None:
    if self._thread.is_alive():
      if self._current is not None:
        self._current.cancel()
      self._jobs.put(None)
      self._thread.join()

  def _emit(self, token: np.ndarray, ended: np.ndarray) -> np.ndarray:
    job = self._current
    if not ended:
      job.put([int(token)])
    return np.bool_(job.cancelled)

  def _serve(self) -> None:
    while (item := self._jobs.get()) is not None:
      job, package = item
      self._current = job
      try:
        if not job.cancelled:
          ids = package_ids(package, self._tokenizer, self._prompt_len)
          prompt = np.full(self._prompt_len, PAD, np.int32)
          prompt[self._prompt_len - len(ids):] = ids
          inputs = (prompt, np.int32(len(ids)))
          if self._device is not None:
            inputs = jax.device_put(inputs, self._device)
          jax.block_until_ready(self._generate(self._params, *inputs))
      finally:
        job.finish()
        self._current = None
