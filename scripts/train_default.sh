#!/usr/bin/env bash
# Rebuild the shipped checkpoint (odd_one_out_ros/assets/checkpoints/cpu_default.pt) from nothing, on 2 CPU cores:
# data, stage 1, box tuning, stage 2, box tuning, evaluation on held-out seeds. docs/training.md "The default recipe".
#   usage: scripts/train_default.sh OUT        (e.g. /root/ooo/recipe; rerun the same command to resume)
#   result: OUT/cpu_default.pt, OUT/metrics.md (the model card's tables), OUT/recipe.log (one line per phase)
# Budget knobs (environment): TOYS PARTS (training scenes), STEPS1 STEPS2 (optimiser steps, two scenes each),
# TEST (scenes per held-out set), VIEWS (input,target views while training), BIN (the venv's bin folder).
set -euo pipefail
cd "$(dirname "$0")/.."
{  # read whole before running, so that editing this file cannot change a run in progress
OUT=${1:?usage: scripts/train_default.sh OUT}
BIN=${BIN:-.venv/bin}
TOYS=${TOYS:-240}
PARTS=${PARTS:-60}
STEPS1=${STEPS1:-1100}
STEPS2=${STEPS2:-300}
TEST=${TEST:-20}
VIEWS=${VIEWS:-4,3}
TUNE=${TUNE:-16}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONUNBUFFERED=1
mkdir -p "$OUT"
LOG="$OUT/recipe.log"
phase() { echo "$(date '+%F %T') $*" | tee -a "$LOG"; }
done_flag() { [ -f "$OUT/.done_$1" ]; }
mark() { touch "$OUT/.done_$1"; }

phase "start (TOYS=$TOYS PARTS=$PARTS STEPS1=$STEPS1 STEPS2=$STEPS2 TEST=$TEST VIEWS=$VIEWS)"
# 1. data: training seeds 100/101; held-out seeds 900-902 are never trained or tuned on
gen() {  # name kind scenes seed split
  done_flag "gen_$1" && return 0
  phase "generate $1 ($3 scenes, seed $4, split $5)"
  "$BIN/odd-one-out" generate --kind "$2" --scenes "$3" --seed "$4" --split "$5" --out "$OUT/data/$1" --workers 2 \
    > "$OUT/gen_$1.log" 2>&1
  mark "gen_$1"
}
gen toys toys "$TOYS" 100 train
gen parts parts "$PARTS" 101 train
gen test_toys_seen toys "$TEST" 900 seen-test
gen test_toys_unseen toys "$TEST" 901 unseen-test
gen test_parts parts "$TEST" 902 test

# 2. training: two one-thread ranks (torchrun), every stage resumable from RUN/last_stage<k>.pt
RUN="$OUT/run"
train() {  # stage steps [init [extra flags]]
  local stage=$1 steps=$2 init=${3:-} flags=${4:-}
  done_flag "stage$stage" && return 0
  local extra=()
  if [ -f "$RUN/last_stage$stage.pt" ]; then extra=(--resume); elif [ -n "$init" ]; then extra=(--init "$init"); fi
  phase "stage $stage: $steps steps (progress: $OUT/stage$stage.log)"
  "$BIN/torchrun" --standalone --nproc_per_node 2 -m odd_one_out_ros.cli train --config cpu \
    --data "$OUT/data/toys" --data "$OUT/data/parts" --out "$RUN" --stage "$stage" --steps "$steps" --epochs 1000 \
    --views "$VIEWS" --threads 1 --checkpoint-every 50 $flags "${extra[@]}" > "$OUT/stage$stage.log" 2>&1
  mark "stage$stage"
}
tune() {  # in out
  done_flag "tune_$(basename "$2")" && return 0
  phase "tune-boxes $(basename "$1") -> $(basename "$2")"
  "$BIN/odd-one-out" tune-boxes --checkpoint "$1" --data "$OUT/data/toys" --scenes "$TUNE" --views 5 --out "$2" \
    ${3:-} > "$2.log" 2>&1
  mark "tune_$(basename "$2")"
}
train 1 "$STEPS1"
tune "$RUN/stage1.pt" "$RUN/stage1_tuned.pt"
train 2 "$STEPS2" "$RUN/stage1_tuned.pt" "--prior on"
tune "$RUN/stage2.pt" "$OUT/cpu_default.pt" --half

# 3. evaluation on the held-out seeds: the model's own boxes, the baseline on the same boxes, 5 and 10 views;
# two sets at a time (one thread each)
evaluate() {  # set split views
  local js="$OUT/eval_$1_v$3.json"
  [ -f "$js" ] && return 0
  "$BIN/odd-one-out" evaluate --checkpoint "$OUT/cpu_default.pt" --data "$OUT/data/$1" --split "$2" --views "$3" \
    --threads 1 --baseline --json "$js.tmp" > "$OUT/eval_$1_v$3.log" 2>&1 && mv "$js.tmp" "$js"
}
phase "evaluate (held-out seeds 900-902, 5 and 10 views)"
evaluate test_toys_seen seen-test 5 & evaluate test_toys_unseen unseen-test 5 & wait
evaluate test_parts test 5 & evaluate test_toys_seen seen-test 10 & wait
evaluate test_toys_unseen unseen-test 10 & evaluate test_parts test 10 & wait
if [ ! -f "$OUT/eval_toysad8k.json" ]; then
  "$BIN/odd-one-out" evaluate --checkpoint "$OUT/cpu_default.pt" --data odd_one_out_ros/assets/toysad8k_sample \
    --views 5 --threads 2 --baseline --json "$OUT/eval_toysad8k.json" > "$OUT/eval_toysad8k.log" 2>&1
fi
phase "evaluation done"
"$BIN/python" scripts/recipe_report.py "$OUT" > "$OUT/metrics.md"
phase "done: $OUT/cpu_default.pt, $OUT/metrics.md"
exit 0
}
