#!/usr/bin/env bash
# Several training runs side by side on one GPU (one step of the reconstructor leaves an H200 ~80% idle), then
# every run scored on the benchmark, across three device calls (repository root; carry .whl and .carry):
#   launch M W   install, build gsplat, unpack the body cache (.carry/body.safetensors[.xz]), start the benchmark set
#                and every run of $RUNS for M minutes of step time (setsid: they outlive the call), report W s
#   wait S       score the baseline ($BASE) with every protocol of $PROTOCOLS while the runs train; report S s
#   final S      wait <= S s for the runs to end, score each run with every protocol, bring the exports back
# GPU memory: a 512-px run (configs/pixels_512*.json, batch 16) needs more than 34 GiB. Two of them beside a 256-px run
# outgrow an H100's 80 GB (all three died of OOM at their first steps); one beside two 256-px runs held 126 of an H200's 139.
# NBENCH=0: no benchmark set and no scoring (train and bring the exports back).
# RUNS: "name=config[:extra train args]" entries separated by ";". The default is this recipe's first use (the v4
# reconstructor, its control, the generator's warm start from .carry/gen_v1: config.json + model.safetensors of
# `git show 0812595:src/humansplat/weights/novelview/model.safetensors`, carried with .whl and .carry/body.safetensors.xz
# (xz -k .carry/body.safetensors: the uncompressed cache with them overflows the 64 MiB tree)).
# $OUT gets at most 8 files: runs' model.safetensors as NAME.safetensors (files > 15 MiB in parts: cat NAME.*.part-*),
# and one results.tar.gz (evals, logs, configs, model cards' numbers). FETCH: the names whose weights come back
# (space-separated; default all): a call brings back at most 64 MiB, and a scored-only run (an ablation) needs none.
set -uo pipefail
export TORCH_CUDA_ARCH_LIST=9.0 PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
OUT=${OUT:-/tmp/gpu_out} R=${R:-/tmp/side} BENCH=${BENCH:-/tmp/bench} BASE=${BASE:-src/humansplat/weights/humansplat-main}
RUNS=${RUNS:-"robust=configs/robust.json;control=configs/streaks.json;gen=configs/novelview.json:--init-from .carry/gen_v1 --lr 2e-4"}
PROTOCOLS=${PROTOCOLS:-"gt fitted fitted_true_depth"}  # eval --body values (+full: --refine full), or template_free
FETCH=${FETCH:-all} PY=${PY:-python3} DEVICE=${DEVICE:-cuda} NBENCH=${NBENCH:-20}  # DEVICE=cpu: a dry run of the recipe
HS="$PY -m humansplat"
mkdir -p "$OUT" "$R/evals"

. "$(dirname "$0")/gpu_common.sh"
setup() { gpu_setup || exit 1; }
task_of() { $PY -c "from humansplat.train.config import TrainConfig; print(TrainConfig.load('$1').task)"; }
runs() { tr ';' '\n' <<< "$RUNS"; }
report() {
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2> /dev/null
  local line name
  while read -r line; do name=${line%%=*}; [ -f $R/$name/log.txt ] && echo "$name: $(tail -n 1 $R/$name/log.txt | cut -c1-240)"; done < <(runs)
}
watch() {  # report every 30 s for $1 s; stop early once no training run is left (an OOM at the start ends them all)
  local end=$((SECONDS + $1))
  while [ $SECONDS -lt $end ]; do
    sleep 30; report
    pgrep -f "humansplat train" > /dev/null || { echo "no training run is left"; grep -l "OutOfMemoryError" $R/*.out 2> /dev/null | sed 's/$/: out of GPU memory/'; return; }
  done
}
bench_ready() {
  while [ ! -f "$BENCH/SHA256SUMS" ]; do sleep 5; grep -q Traceback $R/bench.out 2> /dev/null && { cat $R/bench.out; return 1; }; done
}
score() {  # NAME WEIGHTS: every protocol at once, in the background
  local p args
  for p in $PROTOCOLS; do
    case $p in
    template_free) args="--anchors template_free" ;;
    *) args="--body ${p%%+*} $([[ $p == *+full ]] && echo --refine full)" ;;
    esac
    (setsid $HS eval --weights "$2" --data "$BENCH" --device "$DEVICE" $args ${LIMIT:+--limit $LIMIT} --out $R/evals/$1_$p.json \
      > $R/evals/$1_$p.out 2>&1 &)
  done
}
pack() {
  local line name
  while read -r line; do
    name=${line%%=*}
    cp $R/$name/log.txt $R/evals/${name}_log.txt 2> /dev/null; cp $R/$name.out $R/evals/${name}_stdout.txt 2> /dev/null
  done < <(runs)
  tar -czf "$OUT/results.tar.gz" -C $R evals
}
case "$1" in
launch)
  setup
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2> /dev/null
  [ "$NBENCH" = 0 ] || [ -f "$BENCH/SHA256SUMS" ] || (setsid $HS data benchmark -o "$BENCH" -n "$NBENCH" --device "$DEVICE" > $R/bench.out 2>&1 &)
  while read -r line; do
    name=${line%%=*} spec=${line#*=}; config=${spec%%:*} extra=""; [[ $spec == *:* ]] && extra=${spec#*:}
    (setsid $HS train "$config" --out $R/$name --time-budget "$2" --device "$DEVICE" $extra > $R/$name.out 2>&1 &)
  done < <(runs)
  watch "$3"; tail -n 2 $R/*.out | cut -c1-300
  ;;
wait)
  setup; bench_ready && score base "$BASE"
  watch "$2"; tail -n 3 $R/evals/*.out | cut -c1-200; pack
  ;;
final)
  setup
  end=$((SECONDS + $2))
  while [ $SECONDS -lt $end ] && pgrep -f "humansplat train" > /dev/null; do sleep 10; done
  report; [ "$NBENCH" = 0 ] || bench_ready
  while read -r line; do
    name=${line%%=*}; spec=${line#*=}
    [ -f $R/$name/export/model.safetensors ] || { echo "$name: no export"; continue; }
    task=$(task_of "${spec%%:*}")
    if [ "$task" = generator ]; then
      (setsid $PY benchmarks/novelview.py --generator $R/$name/export --weights "$BASE" --data "$BENCH" --device "$DEVICE" --out $R/evals/${name}_novelview.json \
        > $R/evals/${name}_novelview.out 2>&1 &)
    elif [ "$task" = reconstructor ] && [ "$NBENCH" != 0 ]; then
      score "$name" $R/$name/export
      if [[ $spec == *--generator\ * ]]; then  # fine-tuned on a generator's views: also scored with them as inputs
        gen=${spec#*--generator }; gen=${gen%% *}
        (setsid $PY benchmarks/novelview.py --generator "$gen" --weights $R/$name/export --data "$BENCH" --device "$DEVICE" \
          --out $R/evals/${name}_novelview.json > $R/evals/${name}_novelview.out 2>&1 &)
      fi
    fi
    [[ $FETCH == all || " $FETCH " == *" $name "* ]] && cp $R/$name/export/model.safetensors "$OUT/$name.safetensors"
    cp $R/$name/export/MODEL_CARD.md $R/evals/${name}_MODEL_CARD.md 2> /dev/null
    cp $R/$name/export/config.json $R/evals/${name}_config.json
  done < <(runs)
  for f in "$OUT"/*.safetensors; do [ "$(stat -c %s "$f")" -gt $((15 * 1024 * 1024)) ] && split -b 15M "$f" "$f.part-" && rm "$f"; done
  while pgrep -f "humansplat eval|novelview.py" > /dev/null && [ $SECONDS -lt $((end + 300)) ]; do sleep 5; done
  tail -n 4 $R/evals/*.out | cut -c1-200; pack
  ;;
*) echo "usage: $0 launch M W | wait S | final S" >&2; exit 2 ;;
esac
