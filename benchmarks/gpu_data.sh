#!/usr/bin/env bash
# On the GPU machine (repository root; carry .whl and .carry): the data engine's GPU test, throughput
# with a stage profile, aten ops and sync points per stage, the contact sheet at full quality and a determinism check of the benchmark set.
# CPU=1 also times the CPU.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null || exit 1
export PYTHONPATH=/tmp/site:$PWD/.carry/site:src TORCH_CUDA_ARCH_LIST=9.0 HUMANSPLAT_BODY_CACHE=$PWD/.carry/body.safetensors
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$OUT/log.txt" 2>&1
timeout 200 python3 -c "import torch, gsplat.cuda._backend as b; print('gsplat backend', b._C is not None)" >> "$OUT/log.txt" 2>&1
timeout 150 python3 benchmarks/data.py --devices cuda --batch 48 96 --profile 48 > "$OUT/bench_gpu.md" 2>&1
echo "bench exit $?" >> "$OUT/log.txt"
timeout 120 python3 benchmarks/data.py --devices cuda --count-ops 16 > "$OUT/ops_gpu.md" 2>&1
timeout 90 python3 -m humansplat.cli data preview -o "$OUT/synthetic_contact_sheet.png" -n 64 --res 512 --panel 128 --seed 0 >> "$OUT/log.txt" 2>&1
timeout 60 python3 -m pytest -q -x -m gpu tests/test_data.py >> "$OUT/log.txt" 2>&1
echo "pytest exit $?" >> "$OUT/log.txt"
for d in b1 b2; do timeout 60 python3 -m humansplat.cli data benchmark -o /tmp/$d -n 1 >> "$OUT/log.txt" 2>&1; done
cmp /tmp/b1/SHA256SUMS /tmp/b2/SHA256SUMS && echo "benchmark set: identical bytes on two runs" >> "$OUT/log.txt"
if [ "${CPU:-0}" = 1 ]; then
  timeout 100 python3 benchmarks/data.py --devices cpu --cpu-batch 1 > "$OUT/bench_cpu.md" 2>&1
  lscpu | grep -i "model name" >> "$OUT/bench_cpu.md"
fi
cat "$OUT/log.txt" "$OUT/bench_gpu.md" "$OUT/ops_gpu.md"
