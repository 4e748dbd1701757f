"""Checks the model's speed targets (issues 13 and 20) on this machine; exit code 1 when one is missed.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/model_latency.py [--threads 2] [--device cpu] [--json out.json]

Targets are ratios measured in one run (absolute times drift by 25 % or more on a shared machine), for the shipped
`cpu` checkpoint (random weights with --random), M=5 views, N=6 objects, 256 x 256:
- ratio = median inspection (one backbone pass per image, the volume, boxes, the training-free prior, the scores;
  no rendering) / a plain torchvision
  ResNet-18 forward over the same five images, timed interleaved in this process: <= 1.5;
- peak memory increase of one inspection over the loaded model <= 300 MB, measured in a fresh process (peak RSS
  mark reset after loading; odd_one_out_ros/benchmark.py inspection_peak_memory), so that it can go down as well as up;
- sparse voxel attention + head no slower than vanilla attention at N=6 and N=12, and N=12 <= 2.2x N=6.
The paper config is measured too (random weights); on a GPU its target is <= 40 ms at M=5.
"""
import argparse
import json
import sys

import torch

from odd_one_out_ros.benchmark import bench_attention, bench_inspection
from odd_one_out_ros.fileio import write_text_atomic
from odd_one_out_ros.inspection.loader import load_inspector
from odd_one_out_ros.model.config import preset
from odd_one_out_ros.model.network import OddOneOutNet
from odd_one_out_ros.resources import DEFAULT_CHECKPOINT

CHECKPOINT = str(DEFAULT_CHECKPOINT)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--random", action="store_true", help="the cpu config with random weights, not the checkpoint")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.random:
        cfg = preset("cpu").changed("encoder", weights="")
        net = OddOneOutNet(cfg)
    else:
        net = load_inspector(CHECKPOINT, args.device).net
    results, ok = {}, True
    results["cpu"] = bench_inspection(net, 5, 6, args.device, repeat=args.repeat)
    results["cpu"]["attention_ms_median"] = att = bench_attention(net.cfg, [6, 12], args.device, repeat=args.repeat)
    cfg = preset("paper").changed("encoder", weights="")
    on_gpu = args.device.startswith("cuda")
    results["paper"] = bench_inspection(OddOneOutNet(cfg), 5, 6, args.device, repeat=args.repeat if on_gpu else 3,
                                        reference=False)
    cpu, sp, va = results["cpu"], att["sparse"], att["vanilla"]
    checks = [(f"ratio inspection / ResNet-18 <= 1.5 ({cpu['latency_ms_median']:.0f} ms / "
               f"{cpu['reference_ms']:.0f} ms)", cpu["ratio"], cpu["ratio"] <= 1.5)]
    if "peak_memory_increase_mb" in cpu:
        checks.append(("peak memory increase of an inspection <= 300 MB", cpu["peak_memory_increase_mb"],
                       cpu["peak_memory_increase_mb"] <= 300))
    for n in (6, 12):
        checks.append((f"sparse <= vanilla attention + head at N={n} ({sp[n]:.0f} ms vs {va[n]:.0f} ms), ratio",
                       sp[n] / va[n], sp[n] <= va[n]))
    checks.append((f"sparse attention N=12 / N=6 <= 2.2 ({sp[12]:.0f} ms / {sp[6]:.0f} ms)", sp[12] / sp[6],
                   sp[12] <= 2.2 * sp[6]))
    if on_gpu:
        p = results["paper"]["latency_ms_median"]
        checks.append(("paper inspection M=5 on GPU <= 40 ms", p, p <= 40))
    for name, value, passed in checks:
        ok &= passed
        print(f"{'PASS' if passed else 'FAIL'}  {name}: {value:.2f}")
    st = cpu["stage_ms_median"]
    print(f"info  {cpu['config']} ({'random weights' if args.random else CHECKPOINT}) on {args.device}, "
          f"{cpu['threads']} threads: " + ", ".join(f"{k} {v:.0f}" for k, v in st.items()) + " ms")
    print(f"info  paper config on {args.device}: {results['paper']['latency_ms_median']:.0f} ms, "
          f"peak {results['paper']['peak_memory_mb']:.0f} MB")
    if args.json:
        write_text_atomic(args.json, json.dumps(results, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
