#!/usr/bin/env bash
# Trains on a Cloud TPU pod slice: installs the project on every worker and starts one process
# per worker; JAX finds the other workers itself (`--multihost`).
#
#   TPU=my-pod ZONE=us-central2-b launch/tpu_pod.sh --config configs/base.py \
#       --workdir gs://bucket/runs/base [--config.k=v ...]
#
# The workdir must be reachable from every worker (a gs:// bucket). REPO (default: this
# checkout's origin URL) and REF (default: the current commit) choose what the workers run.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${TPU:?set TPU to the TPU VM name}" "${ZONE:?set ZONE}"
repo=${REPO:-$(git remote get-url origin)}
ref=${REF:-$(git rev-parse HEAD)}
args=$(printf '%q ' "$@")

gcloud compute tpus tpu-vm ssh "$TPU" --zone "$ZONE" --worker=all --command "
  set -e
  if [ ! -d jax_interact ]; then git clone $repo jax_interact; fi
  cd jax_interact && git fetch -q origin && git checkout -q $ref
  python3 -m venv .venv && .venv/bin/pip install -q -U pip
  .venv/bin/pip install -q -e . 'jax[tpu]'
  .venv/bin/jax-interact train --multihost $args
"
