"""How copies of one shape relate on generated trays (issue 37): for every pair of copies in a scene, the map from one
box frame to the other that the copies' recorded poses give (data.scene_meta.box_to_box), and whether it is one of
the quarter turns about z that the comparison tries (scene_meta.quarter_turn, 10 degrees) or something else (the
copies rest on different faces). Geometry only: the scenes are built, not rendered.

    python benchmarks/copy_poses.py [--scenes 100] [--seed 7100] [--kind toys --kind parts] [--json OUT]

Prints per kind: pairs of normal copies, the share related by a quarter turn, the share of scenes whose normal
copies are all related so, and the same for (anomalous, normal) pairs.
"""
from __future__ import annotations

import argparse
import itertools
import sys

import numpy as np


def measure(kind: str, scenes: int, seed: int) -> dict:
    from odd_one_out_ros.data.scene_meta import _object_from_json, box_to_box, quarter_turn
    from odd_one_out_ros.synth.scene import GeneratorConfig, build_scene
    from odd_one_out_ros.synth.writer import metadata

    pairs = {"normal": [0, 0], "anomalous": [0, 0]}  # [quarter turn, other]
    whole = 0
    for i in range(scenes):
        scene = build_scene(GeneratorConfig(kind=kind), np.random.default_rng(seed + i))
        objs = [_object_from_json(o, f"scene {seed + i}") for o in metadata(scene, {})["objects"]]
        all_turns = True
        for a, b in itertools.combinations(objs, 2):
            k = quarter_turn(box_to_box(a, b))
            which = "normal" if not (a.anomalous or b.anomalous) else "anomalous" if a.anomalous != b.anomalous else ""
            if which:
                pairs[which][k is None] += 1
            all_turns &= which != "normal" or k is not None
        whole += all_turns
    out = {"kind": kind, "scenes": scenes, "seed": seed, "scenes_all_normal_pairs_quarter_turn": whole / scenes}
    for which, (turn, other) in pairs.items():
        out[f"{which}_pairs"] = turn + other
        out[f"{which}_pairs_quarter_turn"] = turn / max(turn + other, 1)
    return out


def main(argv=None) -> int:
    from odd_one_out_ros.commands import write_json

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", type=int, default=100)
    ap.add_argument("--seed", type=int, default=7100, help="first scene seed (default: seeds no recipe trains on)")
    ap.add_argument("--kind", action="append", choices=("toys", "parts"))
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)
    rows = [measure(k, args.scenes, args.seed) for k in args.kind or ["toys", "parts"]]
    for r in rows:
        print(f"{r['kind']}: {r['scenes']} scenes (seeds {r['seed']}..): normal pairs {r['normal_pairs']}, "
              f"{100 * r['normal_pairs_quarter_turn']:.1f} % a quarter turn about z apart; "
              f"{100 * r['scenes_all_normal_pairs_quarter_turn']:.0f} % of scenes with all normal copies so; "
              f"(anomalous, normal) pairs {r['anomalous_pairs']}, {100 * r['anomalous_pairs_quarter_turn']:.1f} %")
    if args.json:
        write_json(args.json, rows, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
