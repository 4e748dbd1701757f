#!/usr/bin/env bash
# Fine-tune the shipped checkpoint on scenes made from a folder of your own meshes (.obj/.stl/.ply/.off), on
# 2 CPU cores, and measure the gain on held-out scenes of those meshes (docs/training.md "Your own parts").
#   usage: scripts/finetune_shapes.sh SHAPES_DIR OUT      (rerun the same command to resume)
#   result: OUT/finetuned.pt; OUT/gain.md: the shipped and the fine-tuned model on the same held-out scenes
# Budget knobs (environment): SCENES (training scenes), TEST (held-out scenes), STEPS1 STEPS2 (optimiser steps of
# the reconstruction and end-to-end stages, two scenes each), BOXSTEPS REFINESTEPS (steps of the learned box head
# and its refiner, 16 volumes / 8 scenes each), INIT (checkpoint to start from), BIN, LOOK (the generator's look:
# classic or real, as scripts/train_default.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
{  # read whole before running, so that editing this file cannot change a run in progress
SHAPES=${1:?usage: scripts/finetune_shapes.sh SHAPES_DIR OUT}
OUT=${2:?usage: scripts/finetune_shapes.sh SHAPES_DIR OUT}
BIN=${BIN:-.venv/bin}
INIT=${INIT:-odd_one_out_ros/assets/checkpoints/cpu_default.pt}
SCENES=${SCENES:-60}
TEST=${TEST:-16}
STEPS1=${STEPS1:-200}
STEPS2=${STEPS2:-120}
BOXSTEPS=${BOXSTEPS:-600}
REFINESTEPS=${REFINESTEPS:-300}
VIEWS=${VIEWS:-4,3}
LOOK=${LOOK:-classic}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONUNBUFFERED=1
mkdir -p "$OUT"
LOG="$OUT/finetune.log"
phase() { echo "$(date '+%F %T') $*" | tee -a "$LOG"; }
phase "start ($SHAPES; SCENES=$SCENES TEST=$TEST STEPS1=$STEPS1 STEPS2=$STEPS2 LOOK=$LOOK, from $INIT)"
[ -f "$OUT/.done_gen" ] || {
  phase "generate $SCENES training scenes (seed 300) and $TEST held-out scenes (seed 950)"
  "$BIN/odd-one-out" generate --shapes "$SHAPES" --scenes "$SCENES" --seed 300 --split train --out "$OUT/data/train" \
    --workers 2 --look "$LOOK" > "$OUT/gen.log" 2>&1
  "$BIN/odd-one-out" generate --shapes "$SHAPES" --scenes "$TEST" --seed 950 --split test --out "$OUT/data/test" \
    --workers 2 --look "$LOOK" >> "$OUT/gen.log" 2>&1
  touch "$OUT/.done_gen"; }
RUN="$OUT/run"
CONFIG=$("$BIN/python" -c 'import sys; from odd_one_out_ros.model.checkpoint import read_checkpoint as r
print(r(sys.argv[1])["config"].name)' "$INIT")  # train continues the --init checkpoint's own config
train() {  # stage steps init
  [ -f "$OUT/.done_stage$1" ] && return 0
  local extra=(--init "$3")
  [ -f "$RUN/last_stage$1.pt" ] && extra=(--resume)
  phase "stage $1: $2 steps (progress: $OUT/stage$1.log)"
  "$BIN/torchrun" --standalone --nproc_per_node 2 -m odd_one_out_ros.cli train --config "$CONFIG" --data "$OUT/data/train" \
    --out "$RUN" --stage "$1" --steps "$2" --epochs 1000 --views "$VIEWS" --threads 1 --checkpoint-every 50 \
    "${extra[@]}" > "$OUT/stage$1.log" 2>&1
  touch "$OUT/.done_stage$1"
}
train 1 "$STEPS1" "$INIT"
train 2 "$STEPS2" "$RUN/stage1.pt"
[ -f "$OUT/.done_boxes" ] || {  # the learned box head, fine-tuned on volumes of the new scenes
  phase "box head: $BOXSTEPS steps on cached volumes (progress: $OUT/boxes.log)"
  "$BIN/odd-one-out" train-boxes --checkpoint "$RUN/stage2.pt" --data "$OUT/data/train" --cache "$OUT/box_cache" \
    --out "$RUN/boxes.pt" --steps "$BOXSTEPS" --refine-steps "$REFINESTEPS" --lr 5e-4 --threads 2 \
    > "$OUT/boxes.log" 2>&1
  touch "$OUT/.done_boxes"; }
[ -f "$OUT/finetuned.pt" ] || {
  phase "tune-boxes -> finetuned.pt"
  "$BIN/odd-one-out" tune-boxes --checkpoint "$RUN/boxes.pt" --data "$OUT/data/train" --scenes 12 --views 5 \
    --out "$OUT/finetuned.pt" --half > "$OUT/tune.log" 2>&1; }
phase "evaluate the shipped and the fine-tuned model on the held-out scenes"
ev() {  # checkpoint name
  [ -f "$OUT/eval_$2.json" ] || "$BIN/odd-one-out" evaluate --checkpoint "$1" --data "$OUT/data/test" --views 5 \
    --threads 1 --baseline --json "$OUT/eval_$2.json" > "$OUT/eval_$2.log" 2>&1
}
ev "$INIT" shipped & ev "$OUT/finetuned.pt" finetuned & wait
"$BIN/python" - "$OUT" > "$OUT/gain.md" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print("| model | box recall @0.5 | paper AUC / acc | reference AUC | baseline paper AUC (same boxes) |")
print("| --- | --- | --- | --- | --- |")
for name in ("shipped", "finetuned"):
    rep = json.loads((out / f"eval_{name}.json").read_text())
    m, b = rep["metrics"]["all"], rep["baseline"]["all"]
    f = lambda x: "n/a" if x is None else f"{x:.1f}"
    print(f"| {name} | {f(m['box_recall_iou50'])} | {f(m['paper']['auc'])} / {f(m['paper']['accuracy'])} | "
          f"{f(m['reference']['auc'])} | {f(b['paper']['auc'])} |")
EOF
cat "$OUT/gain.md"
phase "done: $OUT/finetuned.pt, $OUT/gain.md"
exit 0
}
