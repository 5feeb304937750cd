#!/usr/bin/env bash
# The novel-view stage on the GPU machine (repository root; carry .whl and .carry). One phase per call
# (each fits one <= 9-minute call), or `all`; everything that matters is copied to $OUT:
#   train M        train the generator (configs/novelview.json) M minutes of step time, in the background
#                  with 1-minute checkpoints; $OUT/novelview/ (fp16 export, 22 MiB: model.safetensors comes back as
#                  model.safetensors.part-aa, -ab; rejoin with cat) + gen_log.txt
#   finetune M     the reconstructor with generated extra views (configs/novelview_finetune.json), warm-started
#                  from src/humansplat/weights/humansplat-main, generator $GEN; $OUT/finetune/ + ft_log.txt
#   eval           with/without table on /tmp/bench (20 subjects, made here) for the fine-tuned ($RECON) and the
#                  shipped reconstructor, plus warm timing and peak GPU memory; $OUT/novelview_eval*.json
#   all M1 M2      train M1, finetune M2, eval, in one call
# Environment: DEVICE (cuda; cpu for a dry run), TINY=1 (tiny configs, a tiny autoencoder trained first; the
# dry run: DEVICE=cpu TINY=1 BENCH=/work/data/bench LIMIT=1 bash benchmarks/gpu_novelview.sh all 0.2 0.2),
# GEN (generator weights; default: this call's run, else src/humansplat/weights/novelview), RECON (fine-tuned
# reconstructor; default: this machine's finetune run), BENCH, LIMIT, STEPS. A fresh machine keeps nothing:
# copy $OUT/novelview to src/humansplat/weights/novelview (the default GEN) and $OUT/finetune into the tree
# (RECON=...) before the next phase.
set -uo pipefail
DEVICE=${DEVICE:-cuda} TINY=${TINY:-0} OUT=${OUT:-/tmp/gpu_out} R=${RUNS:-/tmp/runs_novelview}
BENCH=${BENCH:-/tmp/bench} LIMIT=${LIMIT:-20} STEPS=${STEPS:-}
export TORCH_CUDA_ARCH_LIST=9.0 PYTHONUNBUFFERED=1 HUMANSPLAT_BODY_CACHE=${HUMANSPLAT_BODY_CACHE:-$PWD/.carry/body.safetensors}
[ -f "$HUMANSPLAT_BODY_CACHE" ] || unset HUMANSPLAT_BODY_CACHE
PY=${PY:-python3}
if [ "$DEVICE" = cuda ]; then
  [ -d /tmp/site/gsplat ] || $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}  # the engine samples on the CPU side too
  timeout 200 $PY -c "import gsplat.cuda._backend as b; assert b._C is not None" || exit 1  # build gsplat once, first
else
  export PYTHONPATH=$PWD/src
fi
mkdir -p "$OUT" "$R"
HS="$PY -m humansplat"
GEN_CONFIG=configs/novelview.json FT_CONFIG=configs/novelview_finetune.json AE_ARGS=""
if [ "$TINY" = 1 ]; then
  GEN_CONFIG=configs/tiny_novelview.json FT_CONFIG=configs/tiny_novelview_finetune.json
  [ -f $R/ae/export/model.safetensors ] || $HS train configs/tiny_autoencoder.json --out $R/ae --max-steps 2 --device "$DEVICE" > $R/ae.out 2>&1 || { cat $R/ae.out; exit 1; }
  AE_ARGS="--autoencoder $R/ae/export"
fi
bench() {  # the benchmark set, in the background (ready for eval)
  [ -f "$BENCH/SHA256SUMS" ] || [ -f $R/bench.pid ] || { (setsid $HS data benchmark -o "$BENCH" -n 20 --device "$DEVICE" > $R/bench.out 2>&1 & echo $! > $R/bench.pid); }
}
train_bg() {  # NAME MINUTES CONFIG OUTDIR ARGS...: a run in the background, waited for (a lost call loses <= 1 minute)
  local name=$1 minutes=$2 config=$3 keep=$4; shift 4
  local resume=""; compgen -G "$R/$name/checkpoints/step-*" > /dev/null && resume=--resume
  (setsid $HS train "$config" --out $R/$name --time-budget "$minutes" --device "$DEVICE" $AE_ARGS $resume "$@" > $R/$name.out 2>&1 & echo $! > $R/$name.pid)
  local end=$((SECONDS + ${minutes%.*} * 60 + 240))
  while kill -0 "$(cat $R/$name.pid)" 2> /dev/null && [ $SECONDS -lt $end ]; do
    sleep 15; [ -f $R/$name/log.txt ] && tail -n 1 $R/$name/log.txt | cut -c1-300
  done
  tail -n 3 $R/$name.out | cut -c1-600
  [ -d $R/$name/export ] && mkdir -p "$OUT/$keep" && cp $R/$name/export/* "$OUT/$keep/"; cp $R/$name/log.txt "$OUT/${name}_log.txt" 2> /dev/null; cp $R/$name.out "$OUT/${name}_stdout.txt"
  split_big "$OUT/$keep"
}
split_big() {  # files over 15 MiB come back in parts: rejoin with `cat model.safetensors.part-* > model.safetensors`
  for f in "$1"/*; do
    [ -f "$f" ] && [ "$(stat -c %s "$f")" -gt $((15 * 1024 * 1024)) ] && split -b 15M "$f" "$f.part-" && rm "$f"
  done
}
gen_dir() { [ -n "${GEN:-}" ] && echo "$GEN" || { [ -f $R/gen/export/model.safetensors ] && echo $R/gen/export || echo src/humansplat/weights/novelview; }; }
phase_train() { bench; train_bg gen "$1" $GEN_CONFIG novelview; }
phase_finetune() { bench; train_bg ft "$1" $FT_CONFIG finetune --generator "$(gen_dir)"; }
phase_eval() {
  bench
  while [ ! -f "$BENCH/SHA256SUMS" ]; do sleep 5; grep -q Traceback $R/bench.out 2> /dev/null && { cat $R/bench.out; exit 1; }; done
  local recon=${RECON:-$R/ft/export}
  [ -f "$recon/model.safetensors" ] || { echo "no fine-tuned reconstructor in $recon: pass RECON=DIR (e.g. the finetune phase's weights, copied into the tree)" >&2; exit 1; }
  local steps=${STEPS:+--steps $STEPS}
  $PY benchmarks/novelview.py --generator "$(gen_dir)" --weights "$recon" --data "$BENCH" --limit "$LIMIT" --device "$DEVICE" $steps \
    --time 5 --out "$OUT/novelview_eval.json"
  [ "$TINY" = 1 ] || $PY benchmarks/novelview.py --generator "$(gen_dir)" --weights src/humansplat/weights/humansplat-main --data "$BENCH" \
    --limit "$LIMIT" --device "$DEVICE" $steps --out "$OUT/novelview_eval_shipped.json"
  for s in 4 8; do $PY benchmarks/novelview.py --generator "$(gen_dir)" --weights "$recon" --data "$BENCH" --device "$DEVICE" --steps $s \
    --time 5 --only-time --out "$OUT/timing_steps$s.json" | tail -n 2; done
}
case "$1" in
train) phase_train "$2" ;;
finetune) phase_finetune "$2" ;;
eval) phase_eval ;;
all) phase_train "$2"; phase_finetune "$3"; phase_eval ;;
*) echo "usage: $0 train M | finetune M | eval | all M1 M2" >&2; exit 2 ;;
esac
