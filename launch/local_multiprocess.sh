#!/usr/bin/env bash
# Runs N jax-interact processes on this machine, joined through jax.distributed on 127.0.0.1,
# each with its own CPU devices: a multi-host run in miniature (tests, debugging).
#
#   launch/local_multiprocess.sh N train --config configs/tiny.py --workdir W [--config.k=v ...]
#
# Environment: DEVICES_PER_PROCESS (default 4), PORT (default: a free one),
# JAX_INTERACT (the command to run, default `jax-interact`).
# If one process fails the others are stopped; the exit status is the first failure's.
set -euo pipefail

if [[ $# -lt 2 || ! $1 =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 N jax-interact-arguments..." >&2
  exit 2
fi
n=$1
shift
devices=${DEVICES_PER_PROCESS:-4}
port=${PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
read -r -a command <<< "${JAX_INTERACT:-jax-interact}"
xla_flags="$(sed 's/--xla_force_host_platform_device_count=[0-9]*//g' <<< "${XLA_FLAGS:-}")"

pids=()
for ((i = 0; i < n; i++)); do
  JAX_PLATFORMS=cpu \
  XLA_FLAGS="$xla_flags --xla_force_host_platform_device_count=$devices" \
  JAX_COORDINATOR_ADDRESS="127.0.0.1:$port" JAX_NUM_PROCESSES="$n" JAX_PROCESS_ID="$i" \
    "${command[@]}" "$@" &
  pids+=($!)
done

status=0
for ((left = n; left > 0; left--)); do
  if ! wait -n; then
    status=$?
    kill "${pids[@]}" 2>/dev/null || true
    wait || true
    break
  fi
done
exit "$status"
