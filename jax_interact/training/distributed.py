"""Multi-host start-up: `jax.distributed.initialize` from flags, environment or the cluster.

Three ways, checked in order:
  1. flags `--coordinator HOST:PORT --num_processes N --process_id I` (declared in cli.py);
  2. environment JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID (what
     launch/local_multiprocess.sh and launch/gpu.sh set);
  3. `--multihost`: let JAX detect the cluster (Cloud TPU pods, SLURM, Open MPI).
Without any of them the run is single-process and nothing is initialised.
"""

from __future__ import annotations

import argparse
import os

import jax

from jax_interact.errors import InputError

_ENV = {"coordinator": "JAX_COORDINATOR_ADDRESS", "num_processes": "JAX_NUM_PROCESSES",
        "process_id": "JAX_PROCESS_ID"}


def _setting(args: argparse.Namespace, name: str):
  value = getattr(args, name, None)
  return value if value is not None else os.environ.get(_ENV[name])


def initialize(args: argparse.Namespace) -> None:
  """Joins the multi-host run described by flags or environment; no-op for a single process."""
  coordinator = _setting(args, "coordinator")
  if coordinator:
    _check_address(coordinator)
    settings = {}
    for name in ("num_processes", "process_id"):
      value = _setting(args, name)
      try:
        settings[name] = int(value)
      except (TypeError, ValueError):
        raise InputError(f"--{name} / {_ENV[name]}", f"got {value!r}, expected an integer "
                         "(required with --coordinator)") from None
    if not 0 <= settings["process_id"] < settings["num_processes"]:
      raise InputError(f"--process_id / {_ENV['process_id']}", f"got {settings['process_id']}, "
                       f"expected 0 <= process_id < num_processes={settings['num_processes']}")
    # Cross-process collectives for CPU devices (multi-process tests); other backends ignore it.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator, **settings)
  elif getattr(args, "multihost", False):
    jax.distributed.initialize()


def _check_address(address: str) -> None:
  host, _, port = address.rpartition(":")
  if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
    raise InputError(f"--coordinator / {_ENV['coordinator']}", f"got {address!r}, expected "
                     "HOST:PORT with a port in [1, 65535]")
