"""Tests run on CPU with 8 fake devices, so sharded code paths are exercised.

One persistent JAX compilation cache serves the whole run: both xdist workers, every
`jax-interact` subprocess and the notebook's kernel compile each program once (the suite is
compile-bound on CPU). The controller makes it before the workers start; they inherit it.
"""

import os
import shutil
import tempfile

# The suite is compile-bound on CPU: LLVM optimization level 0 compiles about 40% faster
# (tests/test_trainer.py's mesh test 71 s -> 42 s alone) and the tiny programs run as fast.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8"
                           " --xla_backend_optimization_level=0").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

_CACHE_OWNER = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _CACHE_OWNER:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jax_interact_test_cache.")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")


def pytest_unconfigure(config):
  if _CACHE_OWNER and not hasattr(config, "workerinput"):
    shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
