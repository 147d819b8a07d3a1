"""`jax-interact bench train`: train step time, tokens/s, model FLOP/s and MFU (random batches).

After two warm-up steps (compilation), times `--steps` sharded train steps on one random batch
and reports the step time, temporal-sequence tokens/s, model FLOP/s (counting's FLOPs/token
times tokens/s) and, on an accelerator, the bf16 matmul peak measured in the same run (a large
jnp.dot timed on every device at once) with the MFU against it; the vendor peak from
training/metrics.py and the MFU against that are reported beside it. On CPU both are null.
Memory: the estimate of counting.train_memory beside, on an accelerator, the device's peak use
and size. A step that does not fit writes the one-line OutOfMemory advice as the result.
"""

from __future__ import annotations

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jax_interact import atomic, bench, sharding, trainer
from jax_interact.models import attention_kernels, counting
from jax_interact.training import metrics as metrics_lib

_WARMUP_STEPS = 2


def measured_matmul_peak(n: int = 8192, repeats: int = 10) -> float:
  """bf16 FLOP/s of all devices together: a [n, n] @ [n, n] per device, timed."""
  devices = jax.devices()
  mesh = jax.make_mesh((len(devices),), ("d",), devices=devices)
  spec = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("d"))
  x = jax.device_put(jax.random.normal(jax.random.key(0), (len(devices), n, n), jnp.bfloat16),
                     spec)  # random values: constant ones or zeros run faster than real data
  matmul = jax.jit(lambda a, b: jnp.einsum("dij,djk->dik", a, b))
  matmul(x, x).block_until_ready()
  start = time.perf_counter()
  for _ in range(repeats):
    out = matmul(x, x)
  out.block_until_ready()
  return 2 * n**3 * len(devices) * repeats / (time.perf_counter() - start)


def measure(config, steps: int) -> dict:
  mesh = sharding.make_mesh(config.mesh)
  trainer.check_batch_divides(config, mesh)
  with sharding.use(mesh, sharding.rules(config, mesh)), trainer.memory_explained(
      config, mesh.devices.size):
    program = trainer.Program.create(config, mesh)
    host_batch = trainer.random_batches(config, 0)(0)
    train_step, _ = program.checked_steps(host_batch)
    state, opt_state = program.init()
    batch = sharding.shard_batch(host_batch, mesh)
    start = time.perf_counter()
    for index in range(_WARMUP_STEPS):
      state, opt_state, metrics = train_step(state, opt_state, batch, np.int32(index))
    jax.block_until_ready(metrics)
    warmup_s = time.perf_counter() - start
    start = time.perf_counter()
    for index in range(steps):
      state, opt_state, metrics = train_step(state, opt_state, batch, np.int32(index))
    jax.block_until_ready(metrics)
    step_time = (time.perf_counter() - start) / steps

  tokens_per_s = trainer.tokens_per_step(config) / step_time
  flops_per_s = counting.train_flops_per_token(config) * tokens_per_s
  device = jax.devices()[0]
  on_accelerator = device.platform != "cpu"
  measured_peak = measured_matmul_peak() if on_accelerator else None
  vendor_peak = metrics_lib.peak_flops_per_device(device)
  vendor_peak_total = vendor_peak * jax.device_count() if vendor_peak else None
  estimate = counting.train_memory(config, mesh.devices.size)
  stats = device.memory_stats() or {}
  headline = {
      "step_time_s": step_time,
      "tokens_per_s": tokens_per_s,
      "model_tflops_per_s": flops_per_s / 1e12,
      "mfu": metrics_lib.mfu(flops_per_s, measured_peak),
  }
  return {
      "benchmark": "train",
      "config": config.name,
      "headline": headline,
      "device": device.device_kind,
      "devices": jax.device_count(),
      "mesh": dict(mesh.shape),
      "dtype": config.model.dtype,
      "global_batch": config.data.batch_size,
      "window": config.data.window,
      "tokens_per_step": trainer.tokens_per_step(config),
      "params": counting.param_count(config),
      "train_flops_per_token": counting.train_flops_per_token(config),
      "warmup_s": warmup_s,
      "timed_steps": steps,
      "loss_after": float(metrics["loss"]),
      "measured_bf16_peak_tflops": measured_peak / 1e12 if measured_peak else None,
      "vendor_bf16_peak_tflops": vendor_peak_total / 1e12 if vendor_peak_total else None,
      "mfu_vs_vendor_peak": metrics_lib.mfu(flops_per_s, vendor_peak_total),
      "grad_accum": config.train.grad_accum,
      "remat": config.model.remat,
      "attention": attention_kernels.choose(config.model.attention, config.model.dtype),
      "estimated_memory_gib": estimate["total"] / 2**30,
      "peak_memory_gib": stats["peak_bytes_in_use"] / 2**30 if stats else None,
      "device_memory_gib": stats["bytes_limit"] / 2**30 if stats else None,
  }


def main(args) -> int:
  config = bench.load_config(args)
  try:
    result = measure(config, args.steps)
  except trainer.OutOfMemory as e:
    result = {"benchmark": "train", "config": config.name, "error": str(e),
              "headline": {"result": "out of memory"}}
  atomic.write_json(args.out, result)
  if "error" in result:
    print(f"error: {result['error']}", file=sys.stderr)
    return 2
  bench.print_headline(result)
  return 0
