#!/usr/bin/env bash
# On the GPU machine (repository root; carry .whl, .carry/body.safetensors[.xz] and .carry/pre): the GPU tests,
# the per-stage reconstruction table on photos preprocessed elsewhere (MediaPipe is not installed there:
# `benchmarks/reconstruct.py --save-preprocessed .carry/pre PHOTOS`), and a short warm-started training
# smoke run that shows whether the per-pixel Gaussians stay opaque. Logs go to $OUT.
#   gpu_pipeline.sh [timing|tests|all]   all (default): tests, then the timing table; time on an idle GPU only
# COMPILE_FIT=1 adds the table with --compile-fit, NOVEL_VIEWS=1 the table with the generator, SMOKE_MINUTES=M the smoke run.
set -uo pipefail
. "$(dirname "$0")/gpu_common.sh"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}
OUT=${OUT:-/tmp/gpu_out} MODE=${1:-all}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >> "$OUT/log.txt" 2>&1
gpu_setup >> "$OUT/log.txt" 2>&1 || { echo "setup failed"; cat "$OUT/log.txt"; exit 1; }
bench() { timeout 300 python3 benchmarks/reconstruct.py --device cuda --runs 5 --no-outputs ${WEIGHTS:+--weights $WEIGHTS} "$@" .carry/pre/*.safetensors; }
if [ "$MODE" != timing ]; then
  timeout 300 python3 -m pytest -q -rA -m gpu tests/ >> "$OUT/log.txt" 2>&1
  echo "pytest exit $?" >> "$OUT/log.txt"
fi
if [ "$MODE" != tests ]; then
  { bench; echo "benchmark exit $?"
    [ "${NOVEL_VIEWS:-0}" = 0 ] || bench --novel-views on  # the generator stage on (weights/novelview)
    [ "${COMPILE_FIT:-0}" = 0 ] || bench --compile-fit  # the fit's objective compiled (a minute of compiling first)
  } >> "$OUT/bench_reconstruct.md" 2>&1
fi
if [ "${SMOKE_MINUTES:-0}" != 0 ]; then
  timeout $((SMOKE_MINUTES * 60 + 120)) python3 -m humansplat train configs/main.json --out /tmp/runs/smoke \
    --init-from src/humansplat/weights/humansplat-main --time-budget "$SMOKE_MINUTES" > "$OUT/smoke.txt" 2>&1
  cp /tmp/runs/smoke/log.txt "$OUT/smoke_log.txt"
fi
cat "$OUT/log.txt"; [ -f "$OUT/bench_reconstruct.md" ] && cat "$OUT/bench_reconstruct.md"; [ -f "$OUT/smoke_log.txt" ] && tail -n 4 "$OUT/smoke_log.txt"; true
