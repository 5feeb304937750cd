#!/usr/bin/env bash
# On the GPU machine (repository root, `.whl` carried): the gsplat-vs-torch test and the render
# benchmark; logs go to $OUT.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:src TORCH_CUDA_ARCH_LIST=9.0
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
python3 -c "import torch; print(torch.__version__, torch.version.cuda)" >> "$OUT/gpu.txt" 2>&1
# build gsplat's CUDA extension once (cached for the processes below)
timeout 200 python3 -c "import torch, gsplat.cuda._backend as b; print('gsplat backend', b._C is not None)" > "$OUT/build.txt" 2>&1
timeout 120 python3 -m pytest -q -rA tests/test_render_gpu.py > "$OUT/test_gpu.txt" 2>&1
echo "pytest exit $?" >> "$OUT/test_gpu.txt"
timeout 150 python3 benchmarks/render.py --device cuda > "$OUT/bench_gpu.txt" 2>&1
echo "benchmark exit $?" >> "$OUT/bench_gpu.txt"
# the CPU backend on two otherwise idle cores of this machine
timeout 200 taskset -c 0,1 python3 benchmarks/render.py --device cpu --threads 2 > "$OUT/bench_cpu.txt" 2>&1
echo "benchmark exit $?" >> "$OUT/bench_cpu.txt"
lscpu | grep -i "model name" >> "$OUT/bench_cpu.txt"
tail -n 5 "$OUT/build.txt"; grep -E "relative errors|passed|failed|Error" "$OUT/test_gpu.txt"; cat "$OUT/bench_gpu.txt" "$OUT/bench_cpu.txt"
