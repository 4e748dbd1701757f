#!/usr/bin/env bash
# GPU check (issue 13): the tests marked `cuda`, then one inspection bench of the paper config and of the cpu
# config on the GPU; one line per figure. Under 5 minutes on a GPU machine. Exits 2 with a clear message when
# no CUDA device is usable, 1 when a test or the paper target (<= 40 ms at M = 5) fails.
#
#     bash benchmarks/gpu_check.sh [DEVICE]        # DEVICE default cuda (e.g. cuda:1)
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
DEVICE=${1:-cuda}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

if ! "$PY" - "$DEVICE" <<'EOF'
import sys
import torch
dev = sys.argv[1]
if not torch.cuda.is_available():
    sys.exit(f"gpu_check: no CUDA device (torch {torch.__version__}, CUDA build {torch.version.cuda}): "
             "nothing to check on this machine")
i = torch.device(dev).index or 0
if i >= torch.cuda.device_count():
    sys.exit(f"gpu_check: {dev} not present ({torch.cuda.device_count()} CUDA device(s))")
print(f"device    {torch.cuda.get_device_name(i)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
EOF
then
    exit 2
fi

status=0
# 1. the tests marked cuda
if timeout 150 "$PY" -m pytest -m cuda -q tests > "$OUT/pytest.log" 2>&1; then
    echo "tests     cuda-marked: $(tail -n 1 "$OUT/pytest.log")"
else
    echo "tests     cuda-marked FAILED: $(tail -n 1 "$OUT/pytest.log")"
    grep -E "^(FAILED|ERROR)" "$OUT/pytest.log" | head -5
    status=1
fi

# 2. the benches: paper config (random weights) and the shipped cpu checkpoint, M = 5, N = 6
for what in paper cpu; do
    if [ "$what" = paper ]; then args=(--config paper); else args=(--checkpoint odd_one_out_ros/assets/checkpoints/cpu_default.pt); fi
    if ! timeout 120 "$PY" -m odd_one_out_ros.cli bench "${args[@]}" --device "$DEVICE" --views 5 --objects 6 --repeat 10 \
            --attention 6,12 --json "$OUT/$what.json" > "$OUT/$what.log" 2>&1; then
        echo "bench     $what config FAILED: $(tail -n 2 "$OUT/$what.log" | tr '\n' ' ')"
        status=1
        continue
    fi
    "$PY" - "$OUT/$what.json" "$what" <<'EOF' || status=1
import json, sys
r, what = json.load(open(sys.argv[1])), sys.argv[2]
s = r["stage_ms_median"]
print(f"{what:<9} inspection M=5 N=6 on {r['device']}: {r['latency_ms_median']:.1f} ms median "
      f"(volume {s['volume']:.1f}, boxes {s['boxes']:.1f}, prior {s['prior']:.1f}, classify {s['classify']:.1f})")
print(f"{what:<9} reference ResNet-18 forward: {r['reference_ms']:.1f} ms, ratio {r['ratio']:.2f}")
print(f"{what:<9} peak GPU memory: {r['peak_memory_mb']:.0f} MB")
for kind, row in r.get("attention_ms_median", {}).items():
    print(f"{what:<9} {kind} attention + head: " + ", ".join(f"N={n}: {ms:.1f} ms" for n, ms in row.items()))
if what == "paper":
    ok = r["latency_ms_median"] <= 40
    print(f"{'PASS' if ok else 'FAIL'}      paper inspection M=5 <= 40 ms: {r['latency_ms_median']:.1f} ms")
    sys.exit(0 if ok else 1)
EOF
done
exit $status
