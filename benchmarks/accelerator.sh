#!/usr/bin/env bash
# The accelerator figures of docs/BENCHMARKS.md in one run on one GPU (issue 14), within about
# 8 minutes on an H200:
#   benchmarks/accelerator.sh OUT_DIR                      # the default list below
#   benchmarks/accelerator.sh OUT_DIR "train small" "decode 7b 1,8" "moshi 1,8" ...
# Entries: "train CONFIG" (bench train: MFU against the bf16 matmul peak measured in the same
# run), "decode CONFIG B1,B2,..." (bench decode at each batch, the bandwidth bound beside each)
# and "moshi B1,B2,..." (Moshi 7B's step on the same GPU, ../shared/bench/moshi_step.py; needs
# torch and the `moshi` package). Each run has its own time limit (BENCH_TIMEOUT seconds,
# default 150); a run that fails or times out is recorded with its exit code and log tail, and
# the others go on. OUT_DIR/results.json gathers every run's JSON; OUT_DIR/log.txt the output.
set -u
if [ $# -lt 1 ]; then
  echo "usage: benchmarks/accelerator.sh OUT_DIR [ENTRY ...]" >&2
  exit 2
fi
out=$1; shift
[ $# -eq 0 ] && set -- "train small" "train 1b" "decode 1b 1,8,32,64" "decode 7b 1,8,32,64" \
                       "moshi 1,8,32"
here=$(cd "$(dirname "$0")/.." && pwd)
moshi_step=${MOSHI_STEP:-$here/../shared/bench/moshi_step.py}
rm -rf "$out/runs" && mkdir -p "$out/runs"  # results of this run only
: > "$out/log.txt"
for entry in "$@"; do
  read -r kind config batches <<< "$entry"
  case $kind in
    train) name="train_$config"
           cmd=(python -m jax_interact.cli bench train --config "configs/$config.py"
                --out "$out/runs/$name.json") ;;
    decode) name="decode_$config"
            cmd=(python -m jax_interact.cli bench decode --config "configs/$config.py"
                 --batch "$batches" --micro-turns "${MICRO_TURNS:-300}"
                 --out "$out/runs/$name.json") ;;
    moshi) name="moshi"; batches=$config
           cmd=(bash -o pipefail -c "python '$moshi_step' ${batches//,/ } | tail -n 1 > '$out/runs/moshi.json'") ;;
    *) echo "unknown entry '$entry': expected train CONFIG, decode CONFIG B,.. or moshi B,.." >&2
       exit 2 ;;
  esac
  echo "== $name: ${cmd[*]}" | tee -a "$out/log.txt"
  start=$(date +%s)
  (cd "$here" && timeout "${BENCH_TIMEOUT:-150}" "${cmd[@]}") >> "$out/log.txt" 2>&1
  rc=$?
  echo "== $name rc=$rc in $(( $(date +%s) - start ))s" | tee -a "$out/log.txt"
  if [ $rc -ne 0 ]; then
    python - "$out/runs/$name.json" "$rc" "$out/log.txt" <<'PY'
import json, sys
tail = open(sys.argv[3]).read().splitlines()[-5:]
json.dump({"error": f"exit {sys.argv[2]}", "log_tail": tail}, open(sys.argv[1], "w"), indent=1)
PY
  fi
done
python - "$out" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
results = {p.stem: json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))}
(out / "results.json.tmp").write_text(json.dumps(results, indent=1))
(out / "results.json.tmp").replace(out / "results.json")
print(f"wrote {out / 'results.json'}: " + ", ".join(
    f"{k} {'FAILED' if 'error' in v else 'ok'}" for k, v in results.items()))
PY
