"""How often the demo's scenes are classified right: the demo's simulated rig (5 fixed cameras, the sim_rig
node's scenes) over a range of seeds, inspected by a checkpoint (default: the shipped one).

    python benchmarks/demo_sweep.py [--seeds 20] [--first 17] [--kind toys] [--checkpoint CKPT] [--json OUT]

The same scenes and views the demo's ROS graph carries (inspection/sim.py renders them; the static poses of
calibration/rig.yaml are the rig's own), inspected in-process so that a sweep takes minutes. Per seed: objects
boxed (IoU > 0.5), anomalies caught (matched as the demo matches, IoU > 0.1, and flagged), false rejects (a
normal object or an empty box flagged), and whether the scene is right (every anomaly caught, no false reject).
Prints one line per seed and a summary; exit 0 (a measurement, not a pass / fail check).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def sweep(checkpoint: str | Path, seeds: list[int], kind: str = "toys", cameras: int = 5, threads: int = 2) -> dict:
    import torch

    from odd_one_out_ros.geometry import match_truth
    from odd_one_out_ros.inspection.loader import load_inspector
    from odd_one_out_ros.inspection.report import match_to_truth
    from odd_one_out_ros.inspection.sim import SimConfig, SimRig
    from odd_one_out_ros.views import PosedView

    torch.set_num_threads(threads)
    inspector = load_inspector(checkpoint, "cpu").inspector  # as the detector node loads it
    rows = []
    for seed in seeds:
        sim = SimRig(SimConfig(kind=kind, seed=seed, cameras=cameras))
        views = [PosedView(*sim.view(i), float(i), f"cam{i}") for i in range(sim.n_views)]
        res = inspector.inspect(views)
        truth = sim.scene.objects
        gt = [o.box for o in truth]
        det = [o.box for o in res.objects]
        boxed = sum(j >= 0 for j in match_truth(gt, det))
        match, extra = match_to_truth(gt, det)
        caught = sum(1 for o, m in zip(truth, match) if o.anomalous and m is not None and res.objects[m].anomalous)
        false_rejects = sum(1 for o, m in zip(truth, match) if not o.anomalous and m is not None
                            and res.objects[m].anomalous) + sum(res.objects[d].anomalous for d in extra)
        n_anom = sum(o.anomalous for o in truth)
        rows.append({"seed": seed, "category": sim.scene.info.get("category", ""), "objects": len(truth),
                     "boxed_iou50": boxed, "detections": len(det),
                     "anomalies": n_anom, "caught": caught, "false_rejects": false_rejects,
                     "right": caught == n_anom and false_rejects == 0, "latency_s": res.latency_s})
    n = max(1, len(rows))
    summary = {"scenes": len(rows), "right": sum(r["right"] for r in rows),
               "box_recall_iou50": 100 * sum(r["boxed_iou50"] for r in rows) / max(1, sum(r["objects"] for r in rows)),
               "anomalies_caught": sum(r["caught"] for r in rows), "anomalies": sum(r["anomalies"] for r in rows),
               "false_rejects": sum(r["false_rejects"] for r in rows),
               "normal_objects": sum(r["objects"] - r["anomalies"] for r in rows),
               "latency_s_median": float(sorted(r["latency_s"] for r in rows)[(n - 1) // 2]) if rows else None}
    return {"checkpoint": str(checkpoint), "kind": kind, "cameras": cameras, "summary": summary, "seeds": rows}


def main(argv=None) -> int:
    from odd_one_out_ros.resources import DEFAULT_CHECKPOINT

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=20, help="how many seeds (default 20)")
    p.add_argument("--first", type=int, default=17, help="first seed (default 17, the demo's)")
    p.add_argument("--kind", choices=("toys", "parts"), default="toys")
    p.add_argument("--cameras", type=int, default=5)
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="write the per-seed rows and the summary here")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    out = sweep(a.checkpoint, list(range(a.first, a.first + a.seeds)), a.kind, a.cameras, a.threads)
    for r in out["seeds"]:
        print(f"seed {r['seed']:>4} {r['category']:<12} objects {r['objects']:>2} boxed {r['boxed_iou50']:>2} "
              f"(detections {r['detections']:>2})  anomalies {r['anomalies']} caught {r['caught']}  false rejects "
              f"{r['false_rejects']}  {'RIGHT' if r['right'] else 'wrong'}")
    s = out["summary"]
    print(f"{s['right']}/{s['scenes']} scenes right; box recall@0.5 {s['box_recall_iou50']:.1f} %; anomalies caught "
          f"{s['anomalies_caught']}/{s['anomalies']}; false rejects {s['false_rejects']} "
          f"(of {s['normal_objects']} normal objects); {time.perf_counter() - t0:.0f} s")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
