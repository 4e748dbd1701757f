"""`odd-one-out evaluate`: AUC / accuracy under the paper's and the reference code's protocols."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True, help="dataset root (with splits.json), folder of scenes, or one scene")
    p.add_argument("--split", default="", help="e.g. unseen-test (default: every scene)")
    p.add_argument("--views", type=int, default=5, help="input views per scene, spread evenly (default 5)")
    p.add_argument("--limit", type=int, default=0, help="evaluate at most this many scenes")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", required=True, help="write metrics and per-scene predictions here")


def run(args) -> int:
    import os

    import torch
    from tqdm import tqdm

    from ..data.dataset import scene_dirs
    from ..data.scene_meta import SceneFormatError, read_scene_meta
    from ..model.checkpoint import CheckpointError
    from ..model.inference import Inspector
    from ..training.evaluate import SceneResult, evaluate

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    try:
        inspector = Inspector.from_checkpoint(args.checkpoint, args.device)
        dirs = scene_dirs(args.data, args.split or None)
    except (CheckpointError, ValueError) as e:
        print(f"odd-one-out evaluate: {e}", file=sys.stderr)
        return 2
    dirs = dirs[:args.limit] if args.limit else dirs
    splits = {}
    sp_file = Path(args.data) / "splits.json"
    if sp_file.is_file():
        splits = {n: k for k, v in json.loads(sp_file.read_text()).items() for n in v}
    results, rows = [], []
    for d in tqdm(dirs, unit="scene", desc="evaluate"):
        try:
            meta = read_scene_meta(d)
            res = inspector.inspect(meta.posed_views(meta.even_views(args.views)))
        except SceneFormatError as e:
            print(f"odd-one-out evaluate: skipping {d}: {e}", file=sys.stderr)
            continue
        r = SceneResult(d.name, meta.objects[0].category if meta.objects else "", splits.get(d.name, ""),
                        [o.box for o in meta.objects], [int(o.anomalous) for o in meta.objects],
                        [o.anomaly_type for o in meta.objects], [o.box for o in res.objects],
                        [o.score for o in res.objects], inspector.threshold)
        results.append(r)
        rows.append({"scene": d.name, "split": r.split, "category": r.category, "latency_s": res.latency_s,
                     "gt": [{"name": o.name, "label": int(o.anomalous), "type": o.anomaly_type, **o.box.to_dict()}
                            for o in meta.objects],
                     "pred": [{"score": o.score, **o.box.to_dict()} for o in res.objects], "matches": r.matches})
    metrics = evaluate(results)
    report = {"checkpoint": str(args.checkpoint), "data": str(args.data), "split": args.split, "views": args.views,
              "metrics": metrics, "scenes": rows}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=1))
    a = metrics["all"]

    def f(x):
        return "n/a" if x is None else f"{x:.2f}"
    print(f"{a['scenes']} scenes, {a['objects']} objects ({a['anomalies']} anomalous): "
          f"paper AUC {f(a['paper']['auc'])} acc {f(a['paper']['accuracy'])} | "
          f"reference AUC {f(a['reference']['auc'])} acc {f(a['reference']['accuracy'])} | "
          f"box recall@0.5 {f(a['box_recall_iou50'])}")
    for k, v in metrics["by_split"].items():
        print(f"  {k:<12} paper AUC {f(v['paper']['auc'])} acc {f(v['paper']['accuracy'])}, "
              f"recall {f(v['box_recall_iou50'])} ({v['scenes']} scenes)")
    return 0
