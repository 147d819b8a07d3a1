#!/usr/bin/env bash
# The GPU recipe of issue 10 (configs/recipe_gpu.py) in one run on one accelerator:
#   benchmarks/recipe_gpu.sh OUT [--config.KEY=VALUE ...]
# 1. generates EPISODES (6300) episodes of all nine families on every host core while the GPU
#    times the train step (`bench train`; if cuDNN attention fails there, XLA attention is timed
#    and used instead), then featurizes them for the config's micro-turn (`data featurize`);
# 2. sets train.steps to what fits in TRAIN_LIMIT_S (480) less TRAIN_OVERHEAD_S (90: compiling,
#    the in-training streaming evals, checkpoints), at most MAX_STEPS (8000), and
#    train.time_limit_s to TRAIN_LIMIT_S, so training stops in time whatever the estimate;
# 3. runs benchmarks/recipe.py: train, then score EVAL_EPISODES (126) held-out validation
#    episodes (EVAL_BATCH, 63, at once) with the best checkpoint; OUT/recipe.json says which
#    targets were met.
# STAGES (data,train,eval) picks the steps to run; a later run in the same OUT finds the data and
# features cached, and `STAGES=eval` scores the checkpoint OUT/train holds. DEADLINE_S, when set,
# is the second of this script's run by which training must stop (TRAIN_LIMIT_S shrinks to fit),
# so that one device call of 10 minutes can hold the data and the training, the next the eval.
# Overrides after OUT go to both `bench train` and `train`. On a machine without the project's
# dependencies, put the project on PYTHONPATH and carry the missing wheels (benchmarks/README.md).
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: benchmarks/recipe_gpu.sh OUT [--config.KEY=VALUE ...]" >&2
  exit 2
fi
out=$1; shift
overrides=("$@")
python=${PYTHON:-python3}
config=configs/recipe_gpu.py
tasks=turn_taking,pause_handling,interruption,rep_count,visual_cue,start_stop,time_speak
tasks=$tasks,live_translation,delegate
cd "$(dirname "$0")/.."
mkdir -p "$out"

# One `data generate` with 16 workers wrote 6300 episodes in 531 s on an H200 machine (its one
# process writes every episode); 12 parts of 150 written at once, 2 workers each, took 27-31 s.
# So PARTS parts (8) are written at once and joined by `data merge`.
generate() {
  local parts=${PARTS:-8} pids=() i
  rm -rf "$out/parts"
  for ((i = 0; i < parts; i++)); do
    "$python" -m jax_interact.cli data generate --out "$out/parts/$i" --shard "$i/$parts" \
        --workers 2 --episodes "${EPISODES:-6300}" --tasks "$tasks" --seed 1 &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i"; done
  "$python" -m jax_interact.cli data merge --out "$out/data" "$out/parts"/*
  rm -rf "$out/parts"
}
stages=,${STAGES:-data,train,eval},
has_stage() { [[ $stages == *,$1,* ]]; }
generating=
if has_stage data && [ ! -f "$out/data/manifest.json" ]; then
  generate > "$out/generate.log" 2>&1 &
  generating=$!
fi
time_step() {
  "$python" -m jax_interact.cli bench train --config "$config" --steps 30 \
      --out "$out/step.json" "${overrides[@]}" "$@"
}
if [ -f "$out/xla_attention" ]; then
  overrides+=("--config.model.attention=xla")
elif has_stage train && ! time_step; then
  echo "== bench train failed (above); timing it again with XLA attention" >&2
  overrides+=("--config.model.attention=xla")
  touch "$out/xla_attention"
  time_step
fi
if [ -n "$generating" ]; then
  wait "$generating" || { tail -n 20 "$out/generate.log" >&2; exit 1; }
  tail -n 1 "$out/generate.log"
fi
if has_stage data; then
  "$python" -m jax_interact.cli data featurize "$out/data" --config "$config" "${overrides[@]}"
fi
recipe=("$python" benchmarks/recipe.py --config "$config" --out "$out" --tasks "$tasks"
        --episodes "${EPISODES:-6300}" --eval-episodes "${EVAL_EPISODES:-126}"
        --eval-batch "${EVAL_BATCH:-63}")
if ! has_stage train; then
  if has_stage eval; then "${recipe[@]}" --stages eval; fi
  exit 0
fi

limit=${TRAIN_LIMIT_S:-480}
if [ -n "${DEADLINE_S:-}" ] && ((DEADLINE_S - SECONDS < limit)); then
  limit=$((DEADLINE_S - SECONDS))
  if ((limit < 60)); then
    echo "== DEADLINE_S=$DEADLINE_S leaves ${limit}s to train; not training" >&2
    exit 1
  fi
fi
steps=$("$python" - "$out/step.json" "$limit" "${TRAIN_OVERHEAD_S:-90}" "${MAX_STEPS:-8000}" <<'PY'
import json, sys
step_s = json.load(open(sys.argv[1]))["headline"]["step_time_s"]
limit, overhead, cap = float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
# The step timed beside the generation took 1.6x the step in training (docs/BENCHMARKS.md), which
# leaves room for the data pipeline.
steps = int((limit - overhead) / step_s) // 100 * 100
print(max(100, min(cap, steps)))
PY
)
echo "== step $(grep -o '"step_time_s": [0-9.e-]*' "$out/step.json"): train.steps=$steps within" \
     "train.time_limit_s=$limit"
if has_stage eval; then recipe+=(--stages train,eval); else recipe+=(--stages train); fi
"${recipe[@]}" "--config.train.steps=$steps" "--config.train.time_limit_s=$limit" \
    "${overrides[@]}"
