"""Checks the model's speed targets (issue 3) on this machine; exit code 1 when one is missed.

    .venv/bin/python benchmarks/model_latency.py [--threads 2] [--device cpu] [--json out.json]

Targets: `cpu` config, M=5 views, N=6 objects, 256x256: median inspection <= 1000 ms on 2 cores
(encoder to scores, no rendering); sparse-attention matcher at N=12 <= 2.5x its cost at N=6.
The paper config is measured and reported too (its GPU target, <= 40 ms at M=5, needs a GPU).
"""
import argparse
import json
import sys

import torch

from odd_one_out_ros.model.bench import bench_attention, bench_inspection
from odd_one_out_ros.model.config import preset
from odd_one_out_ros.model.network import OddOneOutNet


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results, ok = {}, True
    for name in ("cpu", "paper"):
        cfg = preset(name)
        cfg.encoder.weights = ""
        results[name] = bench_inspection(OddOneOutNet(cfg), 5, 6, args.device, repeat=5 if name == "cpu" else 3)
        results[name]["attention_ms_median"] = bench_attention(cfg, [6, 12], args.device)
    cpu = results["cpu"]
    checks = [("cpu inspection M=5 N=6 <= 1000 ms", cpu["latency_ms_median"], cpu["latency_ms_median"] <= 1000),
              ("cpu sparse attention N=12 / N=6 <= 2.5",
               cpu["attention_ms_median"]["sparse"][12] / cpu["attention_ms_median"]["sparse"][6],
               cpu["attention_ms_median"]["sparse"][12] <= 2.5 * cpu["attention_ms_median"]["sparse"][6])]
    if args.device.startswith("cuda"):
        p = results["paper"]["latency_ms_median"]
        checks.append(("paper inspection M=5 on GPU <= 40 ms", p, p <= 40))
    for name, value, passed in checks:
        ok &= passed
        print(f"{'PASS' if passed else 'FAIL'}  {name}: {value:.2f}")
    print(f"info  paper config on {args.device}: {results['paper']['latency_ms_median']:.0f} ms, "
          f"peak {results['paper']['peak_memory_mb']:.0f} MB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
