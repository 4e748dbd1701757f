"""Seconds per generated scene per core (issue 4 target: <= 2 s for 20 views of 256 x 256).

    .venv/bin/python benchmarks/generator_speed.py [--kind toys|parts] [--scenes 4] [--look classic|real] [--json FILE]

Runs in one process (one core); reports build (shapes, anomalies, visibility checks) and
render + write times separately. Exit code 1 when the median exceeds the target.
"""
import argparse
import json
import statistics
import sys
import tempfile
import time

import numpy as np

from odd_one_out_ros.synth.scene import GeneratorConfig, build_scene
from odd_one_out_ros.synth.writer import write_scene


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", default="toys", choices=["toys", "parts"])
    ap.add_argument("--scenes", type=int, default=4)
    ap.add_argument("--look", default="classic", choices=["classic", "real"])
    ap.add_argument("--json")
    args = ap.parse_args()
    cfg = GeneratorConfig(kind=args.kind, look=args.look)
    build, total = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.scenes):
            t0 = time.perf_counter()
            scene = build_scene(cfg, np.random.default_rng([123, i]))
            t1 = time.perf_counter()
            write_scene(scene, f"{tmp}/s{i}", {"seed": 123, "index": i})
            t2 = time.perf_counter()
            build.append(t1 - t0)
            total.append(t2 - t0)
            print(f"scene {i}: {len(scene.objects)} objects, build {t1 - t0:.2f} s, render+write {t2 - t1:.2f} s")
    med = statistics.median(total)
    ok = med <= 2.0
    print(f"{'PASS' if ok else 'FAIL'}  {args.kind} ({args.look} look): median {med:.2f} s per {cfg.views}-view "
          f"{cfg.size}px scene (build {statistics.median(build):.2f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"kind": args.kind, "look": args.look, "per_scene_s": total, "build_s": build,
                       "median_s": med}, f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
