"""`jax-interact bench decode`: latency of the streaming micro-turn step (random weights).

Runs B sessions for N micro-turns through the jitted step (inputs pre-featurized, so the
number is the model's), for each batch size B asked for, on one model, and reports step-time
percentiles, the step time per session, the real-time factor, drift over the session (p50 of
the first and last 100 steps), resident memory at start and end, and on an accelerator the
memory-bandwidth bound of one step: bytes of weights and KV cache read, over a copy bandwidth
measured in the same run. Once per run it checks the agreement of a teacher-forced stream with
the training forward.
"""

from __future__ import annotations

import resource
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jax_interact import atomic, bench, models
from jax_interact.background import orchestrator as orchestrator_lib
from jax_interact.background import workers
from jax_interact.inference import engine, session
from jax_interact.models import InteractionModel
from jax_interact.streams.layout import random_batch
from jax_interact.streams.tokenizer import Tokenizer, train_tokenizer


def _rss_mb() -> float:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith("VmRSS:"):
        return int(line.split()[1]) / 1024
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def agreement(model: InteractionModel, config, n_turns: int) -> tuple[float, bool]:
  """(max |logit difference|, bitwise equal) of a teacher-forced stream vs the forward pass."""
  batch = {k: jnp.asarray(v) for k, v in random_batch(
      model.layout, 1, n_turns, config.model.vocab_size, config.stream.dmel_bins, 7).items()}
  expected = np.asarray(jax.jit(lambda p, b: nnx.merge(nnx.graphdef(model), p)(b))(
      nnx.state(model), batch)["text_logits"])
  params, run = session.jit_step(model)
  state = session.start_state(model, 1, 0, params)
  got = []
  for t in range(n_turns):
    state, out = run(params, state, {k: batch[k][:, t] for k in session.INPUT_KEYS},
                     {k: batch[k][:, t] for k in session.OUTPUT_KEYS})
    got.append(np.asarray(out["text_logits"]))
  got = np.stack(got, axis=1)
  return float(np.max(np.abs(got - expected))), bool(np.array_equal(got, expected))


def _copy_bandwidth() -> float:
  """Bytes/s of a device-to-device copy (read + write counted), or 0 on CPU."""
  if jax.devices()[0].platform == "cpu":
    return 0.0
  x = jnp.ones((256, 1024, 1024), jnp.float32)
  copy = jax.jit(lambda a: a + 1)
  copy(x).block_until_ready()
  start = time.perf_counter()
  for _ in range(10):
    y = copy(x)
  y.block_until_ready()
  return 2 * x.nbytes * 10 / (time.perf_counter() - start)


def _bytes(tree) -> int:
  return sum(x.nbytes for x in jax.tree.leaves(tree) if hasattr(x, "nbytes"))


def measure(model: InteractionModel, config, batch: int, micro_turns: int,
            bandwidth: float) -> dict:
  """Step times of `batch` sessions; with `bandwidth` (bytes/s, 0 on CPU) the bound beside."""
  params, run = session.jit_step(model)
  state = session.start_state(model, batch, 0, params)
  inputs = random_batch(model.layout, batch, 1, config.model.vocab_size,
                        config.stream.dmel_bins, 3)
  chunk = {k: jnp.asarray(inputs[k][:, 0]) for k in session.INPUT_KEYS}
  state, out = run(params, state, chunk)  # compile
  jax.block_until_ready(out)
  rss_start = _rss_mb()
  times = []
  for _ in range(micro_turns):
    start = time.perf_counter()
    state, out = run(params, state, chunk)
    jax.block_until_ready(out)
    times.append((time.perf_counter() - start) * 1000)
  rss_end = _rss_mb()
  result = engine.latency_summary(times, config.stream.chunk_ms)
  head, tail = times[:100], times[-100:]
  result.update({
      "batch": batch, "p50_step_ms_per_session": result["p50_step_ms"] / batch,
      "p50_step_ms_first_100": float(np.median(head)),
      "p50_step_ms_last_100": float(np.median(tail)),
      "drift_last_over_first": float(np.median(tail) / np.median(head)),
      "rss_mb_start": rss_start, "rss_mb_end": rss_end,
      "sessions_per_device_at_real_time": batch * config.stream.chunk_ms / result["p99_step_ms"],
  })
  if bandwidth:
    bytes_read = _bytes(params) + _bytes([(layer.k_BSKH, layer.v_BSKH) for layer in state.cache])
    bound_ms = bytes_read / bandwidth * 1000
    result.update({"bytes_read_per_step": bytes_read, "bandwidth_bound_ms": bound_ms,
                   "p50_over_bandwidth_bound": result["p50_step_ms"] / bound_ms})
  return result


def measure_background(config, batch: int, micro_turns: int, tool: str,
                       delegate_every: int) -> dict:
  """p99 step time of the orchestrated loop (engine.step plus job polling) without and with a
  background tool worker running beside it, every session delegating every `delegate_every`
  micro-turns (a job still running is left alone)."""
  with tempfile.TemporaryDirectory() as tmp:
    train_tokenizer(["what is 17 times 23", "17 times 23 is 391", "think about it slowly"] * 4,
                    f"{tmp}/tokenizer.model", vocab_size=48)
    tokenizer = Tokenizer.load(f"{tmp}/tokenizer.model")
  model = models.build(config, nnx.Rngs(0))
  engine_ = engine.Engine(session.program(model, config), batch)
  result = {"background": tool, "delegate_every": delegate_every}
  for label, delegating in (("without", False), ("with", True)):
    worker = workers.tool_worker(tool, tokenizer, slow_token_s=config.background.slow_token_s)
    orchestrator = orchestrator_lib.Orchestrator(engine_, worker, tokenizer,
                                                 timeout_s=config.background.timeout_s)
    rows = [orchestrator.add(f"{label}/{i}") for i in range(batch)]
    orchestrator.step({})  # compile
    times, jobs = [], 0
    for t in range(micro_turns):
      if delegating and t % delegate_every == 0:
        jobs += sum(orchestrator.delegate(row, task="what is 17 times 23") for row in rows)
      start = time.perf_counter()
      orchestrator.step({})
      times.append((time.perf_counter() - start) * 1000)
    orchestrator.close()
    for row in rows:
      orchestrator.evict(row)
    result[f"p99_step_ms_{label}_background"] = float(np.percentile(times, 99))
    result[f"p50_step_ms_{label}_background"] = float(np.percentile(times, 50))
    if delegating:
      result["jobs_started"] = jobs
  result["p99_ratio_with_over_without"] = (result["p99_step_ms_with_background"] /
                                           result["p99_step_ms_without_background"])
  return result


# Per batch size; with several, each key carries the batch as a suffix (`p50_step_ms_b8`).
HEADLINE = ("batch", "p50_step_ms", "p99_step_ms", "p50_step_ms_per_session", "rtf",
            "drift_last_over_first", "rss_mb_start", "rss_mb_end",
            "sessions_per_device_at_real_time", "bandwidth_bound_ms", "p50_over_bandwidth_bound",
            "p99_step_ms_without_background", "p99_step_ms_with_background",
            "p99_ratio_with_over_without")


def run(config, batches, micro_turns: int, agreement_turns: int | None = None,
        background: str | None = None, delegate_every: int = 25) -> dict:
  """The benchmark's JSON: a run per batch size, the agreement check, the headline."""
  model = models.build(config, nnx.Rngs(0))
  bandwidth = _copy_bandwidth()
  runs = []
  for batch in batches:
    runs.append(measure(model, config, batch, micro_turns, bandwidth))
    if background:
      runs[-1].update(measure_background(config, batch, micro_turns,
                                         background.removeprefix("tool:"), delegate_every))
  if agreement_turns is None:
    agreement_turns = min(2 * config.model.window_turns, 32)
  agreement_ = {}
  if agreement_turns:
    diff, bitwise = agreement(model, config, agreement_turns)
    agreement_ = {"max_abs_logit_diff_vs_forward": diff, "bitwise_equal": bitwise,
                  "agreement_turns": agreement_turns}

  def short(value):
    return float(f"{value:.4g}") if isinstance(value, float) else value

  suffix = (lambda r: "") if len(runs) == 1 else (lambda r: f"_b{r['batch']}")
  headline = {f"{key}{suffix(r)}": short(r[key]) for r in runs for key in HEADLINE if key in r}
  headline.update({key: short(value) for key, value in agreement_.items()
                   if key != "agreement_turns"})
  return {"benchmark": "decode", "config": config.name, "device": jax.devices()[0].device_kind,
          "dtype": config.model.dtype, "copy_bandwidth_gb_s": bandwidth / 1e9 or None,
          "runs": runs, **agreement_, "headline": headline}


def main(args) -> int:
  config = bench.load_config(args)
  result = run(config, args.batch, args.micro_turns, args.agreement_turns,
               getattr(args, "background", None), getattr(args, "delegate_every", 25))
  atomic.write_json(args.out, result)
  bench.print_headline(result)
  return 0
