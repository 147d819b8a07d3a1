#!/usr/bin/env bash
# Trains on the GPUs of one or more hosts: one process per host drives all of its GPUs.
#
# Single host:   launch/gpu.sh --config configs/small.py --workdir W [--config.k=v ...]
# Several hosts: run the same command on every host with
#   COORDINATOR=host0:1234 NUM_PROCESSES=<hosts> PROCESS_ID=<this host's index>
# (under SLURM, leave them unset and pass --multihost: JAX reads the SLURM environment).
# The workdir must be on storage every host can reach.
set -euo pipefail
cd "$(dirname "$0")/.."

# Large-batch GPU defaults: keep XLA's memory preallocation, enable latency-hiding scheduling.
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}
export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_latency_hiding_scheduler=true"
if [[ -n ${COORDINATOR:-} ]]; then
  export JAX_COORDINATOR_ADDRESS=$COORDINATOR
  export JAX_NUM_PROCESSES=${NUM_PROCESSES:?set NUM_PROCESSES with COORDINATOR}
  export JAX_PROCESS_ID=${PROCESS_ID:?set PROCESS_ID with COORDINATOR}
fi
exec jax-interact train "$@"
