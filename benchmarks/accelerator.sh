#!/usr/bin/env bash
# Runs a list of benchmarks on an accelerator machine and gathers their JSON into one file.
#   benchmarks/accelerator.sh OUT_DIR "decode small 1" "decode 7b 8" "train small" ...
# Each entry is "decode CONFIG BATCH" or "train CONFIG". Every run gets its own time limit
# (BENCH_TIMEOUT seconds, default 240); a failed run is recorded with its exit code and log tail.
set -u
out=$1; shift
mkdir -p "$out" /tmp/bench
: > "$out/log.txt"
for entry in "$@"; do
  set -- $entry
  kind=$1 config=$2 batch=${3:-}
  name="${kind}_${config}${batch:+_b$batch}"
  args=(bench "$kind" --config "configs/$config.py" --out "/tmp/bench/$name.json")
  [ "$kind" = decode ] && args+=(--batch "$batch" --micro-turns "${MICRO_TURNS:-300}")
  echo "== $name: jax-interact ${args[*]}" | tee -a "$out/log.txt"
  start=$(date +%s)
  timeout "${BENCH_TIMEOUT:-240}" python -m jax_interact.cli "${args[@]}" >> "$out/log.txt" 2>&1
  rc=$?
  echo "== $name rc=$rc in $(( $(date +%s) - start ))s" | tee -a "$out/log.txt"
  [ $rc -ne 0 ] && echo "{\"error\": \"exit $rc\"}" > "/tmp/bench/$name.json"
done
python - "$out" <<'PY'
import json, pathlib, sys
results = {p.stem: json.loads(p.read_text()) for p in sorted(pathlib.Path("/tmp/bench").glob("*.json"))}
pathlib.Path(sys.argv[1], "results.json").write_text(json.dumps(results, indent=1))
PY
