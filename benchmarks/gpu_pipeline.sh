#!/usr/bin/env bash
# On the GPU machine (repository root; carry .whl, .carry/body.safetensors and .carry/pre): the GPU tests,
# the per-stage reconstruction table on photos preprocessed elsewhere (MediaPipe is not installed there:
# `benchmarks/reconstruct.py --save-preprocessed .carry/pre PHOTOS`), and a short warm-started training
# smoke run that shows whether the per-pixel Gaussians stay opaque. Logs go to $OUT. COMPILE_FIT=1 adds
# the table with --compile-fit.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:src TORCH_CUDA_ARCH_LIST=9.0 PYTHONUNBUFFERED=1 HUMANSPLAT_BODY_CACHE=$PWD/.carry/body.safetensors
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/log.txt" 2>&1
timeout 200 python3 -c "import torch, gsplat.cuda._backend as b; print('gsplat backend', b._C is not None)" >> "$OUT/log.txt" 2>&1
timeout 150 python3 -m pytest -q -rA -m gpu tests/ >> "$OUT/log.txt" 2>&1
echo "pytest exit $?" >> "$OUT/log.txt"
timeout 200 python3 benchmarks/reconstruct.py --device cuda --runs 5 --no-outputs ${WEIGHTS:+--weights $WEIGHTS} .carry/pre/*.safetensors > "$OUT/bench_reconstruct.md" 2>&1
echo "benchmark exit $?" >> "$OUT/bench_reconstruct.md"
if [ "${NOVEL_VIEWS:-0}" != 0 ]; then  # the same with the novel-view generator stage on (weights/novelview)
  timeout 200 python3 benchmarks/reconstruct.py --device cuda --runs 5 --no-outputs --novel-views on ${WEIGHTS:+--weights $WEIGHTS} .carry/pre/*.safetensors >> "$OUT/bench_reconstruct.md" 2>&1
fi
if [ "${COMPILE_FIT:-0}" != 0 ]; then  # the same with the fit's objective compiled (a minute of compiling first)
  timeout 300 python3 benchmarks/reconstruct.py --device cuda --runs 5 --no-outputs --compile-fit ${WEIGHTS:+--weights $WEIGHTS} .carry/pre/*.safetensors >> "$OUT/bench_reconstruct.md" 2>&1
fi
if [ "${SMOKE_MINUTES:-0}" != 0 ]; then
  timeout $((SMOKE_MINUTES * 60 + 120)) python3 -m humansplat train configs/main.json --out /tmp/runs/smoke \
    --init-from src/humansplat/weights/humansplat-main --time-budget "$SMOKE_MINUTES" > "$OUT/smoke.txt" 2>&1
  cp /tmp/runs/smoke/log.txt "$OUT/smoke_log.txt"
fi
cat "$OUT/log.txt" "$OUT/bench_reconstruct.md"; [ -f "$OUT/smoke_log.txt" ] && tail -n 4 "$OUT/smoke_log.txt"; true
