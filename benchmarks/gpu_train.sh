#!/usr/bin/env bash
# Train the reconstructor on the GPU machine across several device calls (repository root; carry .whl and
# .carry/body.safetensors). Each call runs one phase and leaves what matters in $OUT:
#   setup        install the wheels, build gsplat, the data-engine benchmark (+ profile, op counts)
#   launch M     start `humansplat train configs/main.json` on every GPU (torchrun, in the background,
#                warm-started from $INIT), for M minutes of step time; build the benchmark set meanwhile
#   wait S       S seconds of progress reports, then copy the newest fp16 export to $OUT (a machine taken
#                back mid-run loses at most one call)
#   final S      wait (at most S s) for the run to end, then score it on the benchmark set
#   once M       all in one call on one GPU: train $CONFIG (default configs/main.json, extra $TRAIN_ARGS) M minutes
#                from $INIT, then score the run and $INIT (NOEVAL=1: train only)
set -uo pipefail
export TORCH_CUDA_ARCH_LIST=9.0 PYTHONUNBUFFERED=1 HUMANSPLAT_BODY_CACHE=$PWD/.carry/body.safetensors
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
[ -d /tmp/site/gsplat ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src
OUT=${OUT:-/tmp/gpu_out} R=/tmp/runs INIT=${INIT:-src/humansplat/weights/humansplat-main}
mkdir -p "$OUT" $R
NGPU=$(nvidia-smi -L | wc -l)
HS="python3 -m humansplat"
report() {
  nvidia-smi --query-gpu=index,utilization.gpu,memory.used --format=csv,noheader
  [ -f $R/main/log.txt ] && tail -n 1 $R/main/log.txt | cut -c1-600
}
keep() {  # the newest fp16 export, the log and the newest checkpoint's state.json
  [ -d $R/main/export ] && mkdir -p "$OUT/export" && cp $R/main/export/* "$OUT/export/" && cp $R/main/log.txt "$OUT/"
  local ckpt; ckpt=$(ls -d $R/main/checkpoints/step-* 2> /dev/null | tail -n 1); [ -n "$ckpt" ] && cp "$ckpt/state.json" "$OUT/"
}
case "$1" in
setup)
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
  timeout 200 python3 -c "import torch, gsplat.cuda._backend as b; print('gsplat backend', b._C is not None)"
  timeout 240 python3 benchmarks/data.py --devices cuda --batch 48 96 --profile 48 ${DATA_ARGS:-} | tee "$OUT/bench_data.md"
  ;;
launch)
  export OMP_NUM_THREADS=$(( $(nproc) / NGPU / 2 ))
  (setsid torchrun --standalone --nproc_per_node "$NGPU" -m humansplat train configs/main.json --out $R/main \
     --init-from "$INIT" --time-budget "$2" > $R/main.out 2>&1 &)
  (setsid $HS data benchmark -o /tmp/bench -n "${NBENCH:-20}" --device cuda > $R/bench.out 2>&1 &)
  sleep 90; report; tail -n 3 $R/main.out | cut -c1-400
  ;;
wait)
  end=$((SECONDS + $2))
  while [ $SECONDS -lt $end ]; do sleep 60; report; done
  keep
  ;;
final)
  end=$((SECONDS + $2))
  while ! grep -q "^weights:" $R/main.out && [ $SECONDS -lt $end ]; do sleep 10; done
  tail -n 2 $R/main.out; keep
  while ! grep -q "benchmark set written" $R/bench.out; do sleep 5; grep -q Traceback $R/bench.out && { cat $R/bench.out; exit 1; }; done
  $HS eval --weights $R/main/export --data /tmp/bench --out "$OUT/eval.json"
  $HS eval --weights $R/main/export --data /tmp/bench --anchors template_free --out "$OUT/eval_template_free.json"
  ;;
once)
  timeout 200 python3 -c "import gsplat.cuda._backend as b; assert b._C is not None" || exit 1  # build gsplat once, first
  [ "${NOEVAL:-0}" = 0 ] && (setsid $HS data benchmark -o /tmp/bench -n "${NBENCH:-20}" --device cuda > $R/bench.out 2>&1 &)
  timeout $(( ${2%.*} * 60 + 180 )) $HS train "${CONFIG:-configs/main.json}" --out $R/main --init-from "$INIT" --time-budget "$2" \
    ${TRAIN_ARGS:-} > $R/main.out 2>&1
  tail -n 2 $R/main.out | cut -c1-600; keep
  [ "${NOEVAL:-0}" = 0 ] || exit 0
  while ! grep -q "benchmark set written" $R/bench.out; do sleep 5; grep -q Traceback $R/bench.out && { cat $R/bench.out; exit 1; }; done
  $HS eval --weights $R/main/export --data /tmp/bench --out "$OUT/eval.json"
  $HS eval --weights "$INIT" --data /tmp/bench --out "$OUT/eval_init.json"
  $HS eval --weights $R/main/export --data /tmp/bench --anchors template_free --out "$OUT/eval_template_free.json"
  ;;
esac
