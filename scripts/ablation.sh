#!/usr/bin/env bash
# Ablation A / B / C / full with one training budget (README "Ablation"; docs/training.md).
# Stage 1 is shared where the variants do not differ in it: A and B start stage 2 from one stage 1
# without feature distillation (run as B), C and full from one with it (run as full). Each pair runs as two
# 1-thread processes side by side (2 cores). Every run is resumable: rerun the script to continue.
#   data:  odd-one-out generate --kind toys  --scenes 700 --out data/toys  --seed 0 --workers 2
#          odd-one-out generate --kind parts --scenes 100 --out data/parts --seed 1 --workers 2
# Each variant's learned box head (the cpu preset's box estimator) is trained on its own stage-2 volumes before
# it is evaluated (train-boxes, BOXSTEPS steps).
#   usage: scripts/ablation.sh [RUN_DIR]    (STEPS1, STEPS2, BOXSTEPS, VIEWS, EVAL_LIMIT override the budget)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
R=${1:-runs/ablation}
STEPS1=${STEPS1:-500}
STEPS2=${STEPS2:-200}
BOXSTEPS=${BOXSTEPS:-1500}
VIEWS=${VIEWS:-4,3}
EVAL_LIMIT=${EVAL_LIMIT:-60}
DATA=(--data data/toys --data data/parts)
mkdir -p "$R"
common=(--config cpu "${DATA[@]}" --views "$VIEWS" --threads 1 --epochs 1000 --checkpoint-every 100 --no-progress)

train() {  # variant out stage steps [init]
  local v=$1 out=$2 stage=$3 steps=$4 init=${5:-}
  if [ -f "$out/stage$stage.pt" ] && [ "$(grep -c "^[0-9]*,[0-9]*,$stage," "$out/log.csv")" -ge "$steps" ]; then
    return 0
  fi
  local extra=()
  if [ -f "$out/last_stage$stage.pt" ]; then extra=(--resume); elif [ -n "$init" ]; then extra=(--init "$init"); fi
  "$BIN/odd-one-out" train --variant "$v" --stage "$stage" --out "$out" --steps "$steps" "${common[@]}" "${extra[@]}" \
    > "$out.stage$stage.log" 2>&1
}

wait_for() { while [ ! -f "$1" ]; do sleep 20; done; }

# two lanes of one core each; the distilling runs are about twice as slow (feature rendering), so lane 1 also
# takes C's stage 2 once the distilled stage 1 exists
(train B "$R/s1_plain" 1 "$STEPS1"
 train A "$R/A" 2 "$STEPS2" "$R/s1_plain/stage1.pt"
 train B "$R/B" 2 "$STEPS2" "$R/s1_plain/stage1.pt"
 wait_for "$R/s1_distill/stage1.pt"
 train C "$R/C" 2 "$STEPS2" "$R/s1_distill/stage1.pt") &
(train full "$R/s1_distill" 1 "$STEPS1"
 train full "$R/full" 2 "$STEPS2" "$R/s1_distill/stage1.pt") &
wait

evaluate() {  # variant
  local v=$1
  [ -f "$R/$v/boxes.pt" ] || { "$BIN/odd-one-out" train-boxes --checkpoint "$R/$v/stage2.pt" "${DATA[@]}" \
    --cache "$R/$v/box_cache" --out "$R/$v/boxes_untuned.pt" --steps "$BOXSTEPS" --threads 1 > "$R/$v/boxes.log" 2>&1
    "$BIN/odd-one-out" tune-boxes --checkpoint "$R/$v/boxes_untuned.pt" "${DATA[@]}" --scenes 12 --views 5 \
    --out "$R/$v/boxes.pt" > "$R/$v/tune.log" 2>&1; }
  for sp in seen-test unseen-test; do
    [ -f "$R/$v/eval_toys_$sp.json" ] || "$BIN/odd-one-out" evaluate --checkpoint "$R/$v/boxes.pt" --data data/toys \
      --split "$sp" --views 5 --limit "$EVAL_LIMIT" --threads 1 --json "$R/$v/eval_toys_$sp.json" > /dev/null 2>&1
  done
  [ -f "$R/$v/eval_parts_test.json" ] || "$BIN/odd-one-out" evaluate --checkpoint "$R/$v/boxes.pt" --data data/parts \
    --split test --views 5 --limit "$EVAL_LIMIT" --threads 1 --json "$R/$v/eval_parts_test.json" > /dev/null 2>&1
}
evaluate A & evaluate B & wait
evaluate C & evaluate full & wait
"$BIN/python" scripts/ablation_table.py "$R" | tee "$R/table.md"
