"""Checks the training-speed targets (issue 11) on this machine; exit code 1 when one is missed.

    .venv/bin/python benchmarks/train_step.py [--repeat 5] [--data DIR] [--backbone frozen|trained] [--json F]

One thread, one scene per step, the shipped recipe's settings (cpu config, `--views 4,3`, occupancy loss,
offline teacher; TrainConfig's rays and backbone defaults), random weights: `bench_train`, the same
measurement as `odd-one-out bench --train`. Each round times a ResNet-18 forward + backward over five
256 x 256 images (the reference), one stage 1 step and one stage 2 step, so the ratios compare figures of
the same minute. Targets: stage 1 <= 0.5 x the reference, stage 2 <= 0.6 x, on CPU seconds of this
process (on a shared machine the wall clock also counts the time other processes held the core; both are
printed).
"""
import argparse
import json
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")  # numpy's BLAS (the visual hull) too, before numpy loads

import torch  # noqa: E402

from odd_one_out_ros.benchmark import bench_train  # noqa: E402
from odd_one_out_ros.fileio import write_text_atomic  # noqa: E402

TARGETS = {"stage1": 0.5, "stage2": 0.6}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="rounds (default 5)")
    ap.add_argument("--data", help="dataset root or scene folder (default: the shipped sample scene)")
    ap.add_argument("--backbone", choices=["frozen", "trained"], help="default: TrainConfig's (frozen)")
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    overrides = {"freeze_backbone": args.backbone == "frozen"} if args.backbone else {}
    r = bench_train("cpu", args.data, (4, 3), args.repeat, "cpu", overrides)
    t = r["train"]
    print(f"info  cpu config, grid {'x'.join(map(str, r['grid']))}, views 4,3, rays {t['rays']} / feature rays "
          f"{t['feature_rays']}, backbone {'frozen' if t['freeze_backbone'] else 'trained'}, 1 thread")
    print(f"info  reference (ResNet-18 fwd + bwd, 5 x 256 x 256): {r['reference_ms']:.0f} ms CPU, "
          f"{r['wall']['reference_ms']:.0f} ms wall")
    ok = True
    for stage, target in TARGETS.items():
        ratio = r["ratio_to_reference"][stage]
        passed = ratio <= target
        ok &= passed
        print(f"{'PASS' if passed else 'FAIL'}  {stage} step / reference <= {target}: {ratio:.2f} "
              f"({r['train_step_ms'][stage]:.0f} ms CPU; wall {r['wall']['train_step_ms'][stage]:.0f} ms = "
              f"{r['wall']['ratio_to_reference'][stage]:.2f})")
        print("info    breakdown (ms CPU): " + ", ".join(f"{k} {v:.0f}" for k, v in r["breakdown_ms"][stage].items()))
        print("info    forward parts (ms, profiled): " +
              ", ".join(f"{k} {v:.0f}" for k, v in r["forward_parts_ms"][stage].items()))
    print(f"info  teacher forward on a cache miss (once per image): {r['teacher_cold']['ms_per_image']:.0f} ms")
    if args.json:
        write_text_atomic(args.json, json.dumps(r, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
