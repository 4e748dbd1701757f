#!/usr/bin/env bash
# Rebuild the shipped checkpoint (odd_one_out_ros/assets/checkpoints/cpu_default.pt) from nothing, on 2 CPU cores:
# data, stage 1, stage 2, the learned box head on cached volumes, box tuning on a toys + parts mix, the learned
# comparator on cached cells, evaluation on held-out seeds; the model config is the `cpu_default` preset (the shipped
# one). docs/training.md "The default recipe".
#   usage: scripts/train_default.sh OUT        (e.g. /root/ooo/recipe; rerun the same command to resume)
#   result: OUT/cpu_default.pt, OUT/metrics.md (the model card's tables), OUT/recipe.log (one line per phase)
# Budget knobs (environment): TOYS PARTS (training scenes), STEPS1 STEPS2 (optimiser steps, two scenes each),
# BOXSTEPS REFINESTEPS (steps of the box head and its refiner, 16 volumes / 8 scenes each), CMPSTEPS (steps of the
# comparator, 8 inspections each), TEST (scenes per held-out set), VIEWS (input,target views while
# training), TUNE (scenes of each kind for box tuning), BIN (the venv's bin folder), LOOK (the generator's look of
# every scene: classic, the look the shipped checkpoint was trained on, or real: `generate --look real`).
set -euo pipefail
cd "$(dirname "$0")/.."
{  # read whole before running, so that editing this file cannot change a run in progress
OUT=${1:?usage: scripts/train_default.sh OUT}
BIN=${BIN:-.venv/bin}
TOYS=${TOYS:-480}
PARTS=${PARTS:-240}
STEPS1=${STEPS1:-1100}
STEPS2=${STEPS2:-300}
BOXSTEPS=${BOXSTEPS:-3000}
REFINESTEPS=${REFINESTEPS:-3000}
CMPSTEPS=${CMPSTEPS:-2000}
TEST=${TEST:-20}
VIEWS=${VIEWS:-4,3}
TUNE=${TUNE:-16}
LOOK=${LOOK:-classic}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONUNBUFFERED=1
mkdir -p "$OUT"
LOG="$OUT/recipe.log"
phase() { echo "$(date '+%F %T') $*" | tee -a "$LOG"; }
done_flag() { [ -f "$OUT/.done_$1" ]; }
mark() { touch "$OUT/.done_$1"; }

phase "start (TOYS=$TOYS PARTS=$PARTS STEPS1=$STEPS1 STEPS2=$STEPS2 BOXSTEPS=$BOXSTEPS CMPSTEPS=$CMPSTEPS TEST=$TEST VIEWS=$VIEWS LOOK=$LOOK)"
# 1. data: training seeds 100/101; held-out seeds 900-902 are never trained or tuned on
gen() {  # name kind scenes seed split
  done_flag "gen_$1" && return 0
  phase "generate $1 ($3 scenes, seed $4, split $5)"
  "$BIN/odd-one-out" generate --kind "$2" --scenes "$3" --seed "$4" --split "$5" --out "$OUT/data/$1" --workers 2 \
    --look "$LOOK" > "$OUT/gen_$1.log" 2>&1
  mark "gen_$1"
}
gen toys toys "$TOYS" 100 train
gen parts parts "$PARTS" 101 train
gen test_toys_seen toys "$TEST" 900 seen-test
gen test_toys_unseen toys "$TEST" 901 unseen-test
gen test_parts parts "$TEST" 902 test
if ! done_flag gen_test_meshes; then  # scenes of meshes no training scene has (scripts/example_meshes.py)
  phase "generate test_meshes ($TEST scenes of scripts/example_meshes.py, seed 950, split test)"
  "$BIN/python" scripts/example_meshes.py "$OUT/meshes" > "$OUT/gen_test_meshes.log" 2>&1
  "$BIN/odd-one-out" generate --shapes "$OUT/meshes" --scenes "$TEST" --seed 950 --split test \
    --out "$OUT/data/test_meshes" --workers 2 --look "$LOOK" >> "$OUT/gen_test_meshes.log" 2>&1
  mark gen_test_meshes
fi

# 2. training: two one-thread ranks (torchrun), every stage resumable from RUN/last_stage<k>.pt
RUN="$OUT/run"
train() {  # stage steps [init [extra flags]]
  local stage=$1 steps=$2 init=${3:-} flags=${4:-}
  done_flag "stage$stage" && return 0
  local extra=()
  if [ -f "$RUN/last_stage$stage.pt" ]; then extra=(--resume); elif [ -n "$init" ]; then extra=(--init "$init"); fi
  phase "stage $stage: $steps steps (progress: $OUT/stage$stage.log)"
  "$BIN/torchrun" --standalone --nproc_per_node 2 -m odd_one_out_ros.cli train --config cpu_default \
    --data "$OUT/data/toys" --data "$OUT/data/parts" --out "$RUN" --stage "$stage" --steps "$steps" --epochs 1000 \
    --views "$VIEWS" --threads 1 --checkpoint-every 50 $flags "${extra[@]}" > "$OUT/stage$stage.log" 2>&1
  mark "stage$stage"
}
train 1 "$STEPS1"
train 2 "$STEPS2" "$RUN/stage1.pt"  # the scene encoder, with the BCE of an auxiliary volume matcher (not shipped)
cache_in_two() {  # subcommand log-prefix args...: its --cache-only caching in two one-thread processes
  local cmd=$1 log=$2; shift 2
  "$BIN/odd-one-out" "$cmd" "$@" --cache-only --shard 0/2 --threads 1 > "$OUT/${log}0.log" 2>&1 &
  local first=$!
  "$BIN/odd-one-out" "$cmd" "$@" --cache-only --shard 1/2 --threads 1 > "$OUT/${log}1.log" 2>&1
  wait "$first"
}
# the learned box head on the final volumes: two one-thread processes cache them, then the head trains alone
boxes() {
  done_flag boxes && return 0
  phase "box head: cache volumes, $BOXSTEPS steps, refiner $REFINESTEPS steps (progress: $OUT/boxes.log)"
  local data=(--checkpoint "$RUN/stage2.pt" --data "$OUT/data/toys" --data "$OUT/data/parts" --cache "$OUT/box_cache")
  cache_in_two train-boxes boxes_cache "${data[@]}"
  OMP_NUM_THREADS=2 "$BIN/odd-one-out" train-boxes "${data[@]}" --out "$RUN/boxes.pt" --steps "$BOXSTEPS" \
    --refine-steps "$REFINESTEPS" --threads 2 > "$OUT/boxes.log" 2>&1
  mark boxes
}
boxes
if ! done_flag tune; then
  phase "tune-boxes (score threshold on $TUNE toys + $TUNE parts training scenes)"
  "$BIN/odd-one-out" tune-boxes --checkpoint "$RUN/boxes.pt" --data "$OUT/data/toys" --data "$OUT/data/parts" \
    --scenes "$TUNE" --views 5 --out "$RUN/tuned.pt" > "$OUT/tune.log" 2>&1
  mark tune
fi
# the learned comparator (stage 2 on a CPU) on the tuned model's boxes: two one-thread processes cache the cells,
# then it trains alone
comparator() {
  done_flag comparator && return 0
  phase "comparator: cache cells, $CMPSTEPS steps -> cpu_default.pt (progress: $OUT/comparator.log)"
  local data=(--checkpoint "$RUN/tuned.pt" --data "$OUT/data/toys" --data "$OUT/data/parts" --cache "$OUT/cell_cache")
  cache_in_two train-comparator cmp_cache "${data[@]}"
  "$BIN/odd-one-out" train-comparator "${data[@]}" --out "$OUT/cpu_default.pt" --steps "$CMPSTEPS" --threads 1 \
    --half > "$OUT/comparator.log" 2>&1
  mark comparator
}
comparator

# 3. evaluation on the held-out seeds: the model's own boxes, the baseline on the same boxes, 5 and 10 views;
# two sets at a time (one thread each)
evaluate() {  # set split views
  local js="$OUT/eval_$1_v$3.json"
  [ -f "$js" ] && return 0
  "$BIN/odd-one-out" evaluate --checkpoint "$OUT/cpu_default.pt" --data "$OUT/data/$1" --split "$2" --views "$3" \
    --threads 1 --baseline --json "$js.tmp" > "$OUT/eval_$1_v$3.log" 2>&1 && mv "$js.tmp" "$js"
}
phase "evaluate (held-out seeds 900-902 and 950, 5 and 10 views)"
evaluate test_toys_seen seen-test 5 & evaluate test_toys_unseen unseen-test 5 & wait
evaluate test_parts test 5 & evaluate test_meshes test 5 & wait
evaluate test_toys_seen seen-test 10 & evaluate test_toys_unseen unseen-test 10 & wait
evaluate test_parts test 10 & evaluate test_meshes test 10 & wait
if [ ! -f "$OUT/eval_toysad8k.json" ]; then
  "$BIN/odd-one-out" evaluate --checkpoint "$OUT/cpu_default.pt" --data odd_one_out_ros/assets/toysad8k_sample \
    --views 5 --threads 2 --baseline --json "$OUT/eval_toysad8k.json" > "$OUT/eval_toysad8k.log" 2>&1
fi
phase "evaluation done"
"$BIN/python" scripts/recipe_report.py "$OUT" > "$OUT/metrics.md"
phase "done: $OUT/cpu_default.pt, $OUT/metrics.md"
exit 0
}
