"""Run metrics: `metrics.jsonl`, TensorBoard event files, the progress bar, throughput and MFU.

MFU = model FLOP/s (counting.train_flops_per_token * tokens/s) / peak FLOP/s of the devices. The
peak is the dense bf16 matmul rate from the vendor table below, found by `device_kind`; on CPU
and on devices missing from the table it is unknown and MFU is reported as null.
`jax-interact bench train` measures the peak instead of looking it up.
"""

from __future__ import annotations

import contextlib
import json
import math
import pathlib
import time
from typing import Any

import jax
import tqdm
from tensorboardX import SummaryWriter

from jax_interact import atomic

# device_kind substring (lower case) -> dense bf16 FLOP/s of one device, most specific first.
PEAK_BF16_FLOPS = (
    ("tpu v6", 918e12),
    ("tpu v5p", 459e12),
    ("tpu v5 lite", 197e12),
    ("tpu v5e", 197e12),
    ("tpu v4", 275e12),
    ("tpu v3", 123e12),
    ("h200", 989e12),
    ("h100", 989e12),
    ("a100", 312e12),
    ("l4", 121e12),
)


def peak_flops_per_device(device: jax.Device) -> float | None:
  kind = device.device_kind.lower()
  return next((flops for name, flops in PEAK_BF16_FLOPS if name in kind), None)


def mfu(flops_per_s: float, peak_flops: float | None) -> float | None:
  return flops_per_s / peak_flops if peak_flops else None


def jsonable(value: Any) -> Any:
  """Floats stay floats; non-finite ones become null (JSON has no NaN)."""
  value = float(value) if hasattr(value, "dtype") else value
  return None if isinstance(value, float) and not math.isfinite(value) else value


class MetricsLog:
  """Writes rows to W/metrics.jsonl and W/tensorboard and drives the progress bar.

  Only process 0 writes; on a resume, rows past the restored step are dropped first so the
  file reads as one run.
  """

  def __init__(self, workdir: pathlib.Path, *, first_step: int, total_steps: int):
    self.enabled = jax.process_index() == 0
    self.path = workdir / "metrics.jsonl"
    if not self.enabled:
      return
    self._truncate_after(first_step)
    self.file = self.path.open("a")
    self.tensorboard = SummaryWriter(str(workdir / "tensorboard"))
    self.bar = tqdm.tqdm(total=total_steps, initial=first_step, unit="step", dynamic_ncols=True)

  def _truncate_after(self, step: int) -> None:
    """Keeps the rows up to `step` (and drops a line torn by a killed write)."""
    if not self.path.exists():
      return

    def keep(line: str) -> bool:
      try:
        return json.loads(line)["step"] <= step
      except (json.JSONDecodeError, KeyError, TypeError):
        return False

    rows = [line for line in self.path.read_text().splitlines() if keep(line)]
    atomic.write_text(self.path, "".join(row + "\n" for row in rows))

  def advance(self, steps: int = 1) -> None:
    if self.enabled:
      self.bar.update(steps)

  def write(self, row: dict[str, Any]) -> None:
    if not self.enabled:
      return
    row = {key: jsonable(value) for key, value in row.items()}
    self.file.write(json.dumps(row) + "\n")
    self.file.flush()
    for key, value in row.items():
      if key != "step" and isinstance(value, (int, float)):
        self.tensorboard.add_scalar(key, value, row["step"])
    if "loss" in row:  # a training row (rows of evaluation only carry eval_* keys)
      self.bar.set_postfix(loss=f"{row['loss']:.4f}", tok_s=f"{row['tokens_per_s']:.0f}",
                           refresh=False)

  def note(self, line: str) -> None:
    """Prints a line above the progress bar."""
    if self.enabled:
      self.bar.write(line)

  def close(self) -> None:
    if self.enabled:
      self.bar.close()
      self.file.close()
      self.tensorboard.close()


class StepTimer:
  """Mean step time between log points. The first step of a run (it compiles) is timed alone,
  and time spent inside `paused()` (evaluation, checkpointing) is left out."""

  def __init__(self):
    self.start = time.perf_counter()
    self.steps = 0
    self.first_step_s: float | None = None

  def step_done(self, step_output) -> None:
    if self.first_step_s is None:
      jax.block_until_ready(step_output)
      now = time.perf_counter()
      self.first_step_s, self.start = now - self.start, now
    else:
      self.steps += 1

  @contextlib.contextmanager
  def paused(self):
    begin = time.perf_counter()
    yield
    self.start += time.perf_counter() - begin

  def lap(self) -> float:
    """Seconds per step since the previous lap (the first step's time if none since)."""
    now = time.perf_counter()
    seconds = (now - self.start) / self.steps if self.steps else self.first_step_s
    self.start, self.steps = now, 0
    return seconds
