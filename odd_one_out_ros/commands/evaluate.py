"""`odd-one-out evaluate`: AUC / accuracy under the paper's and the reference code's protocols, optionally beside
a training-free baseline (`--baseline`) and on the ground-truth boxes (`--gt-boxes`)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import CommandError, write_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True, help="dataset root (with splits.json), folder of scenes, or one scene")
    p.add_argument("--split", default="", help="e.g. unseen-test (default: every scene)")
    p.add_argument("--views", type=int, default=None,
                   help="input views per scene, spread evenly (default 5; 10 with --protocol reference)")
    p.add_argument("--protocol", choices=("ours", "reference"), default="ours",
                   help="ours (default): the model's own boxes, no ground truth at test time; reference: the "
                        "reference code's test protocol, so the paper's Table 1 compares directly: 10 views, the "
                        "model's boxes for the true object count (its that-many highest box peaks, or largest "
                        "clusters), each true object scored by its best-IoU box (the 'reference' rows)")
    p.add_argument("--limit", type=int, default=0, help="evaluate at most this many scenes")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--baseline", action="store_true",
                   help="also score the same boxes with the training-free baseline (frozen features compared "
                        "across the instances of each scene; docs/training.md)")
    p.add_argument("--baseline-teacher", default="model", choices=["model", "mobilenet_v2", "dinov2_vits14"],
                   help="frozen features of the baseline: model (default) = the comparison the model's scorer "
                        "runs, on its own features (for a model that runs none: mobilenet_v2); mobilenet_v2 = a "
                        "separate ImageNet MobileNetV2 on the images at 2x (offline); dinov2_vits14 (needs "
                        "--baseline-teacher-weights)")
    p.add_argument("--baseline-teacher-weights", default="", help="weights file for --baseline-teacher dinov2_vits14")
    p.add_argument("--gt-boxes", action="store_true",
                   help="score the ground-truth boxes instead of the model's (model and baseline): measures the "
                        "scores alone (box recall is then 100)")
    p.add_argument("--json", required=True, help="write metrics and per-scene predictions here")


def run(args) -> int:
    import os

    import numpy as np
    from tqdm import tqdm

    from ..data.dataset import scene_dirs
    from ..data.scene_meta import SceneFormatError, read_scene_meta
    from ..inspection.loader import load_inspector
    from ..model.checkpoint import CheckpointError
    from ..model.inference import views_to_tensors
    from ..training.evaluate import SceneResult, evaluate, format_table

    if args.views is None:
        args.views = 10 if args.protocol == "reference" else 5
    if args.protocol == "reference" and args.gt_boxes:
        raise CommandError("--protocol reference scores the model's own boxes for the true count: not with --gt-boxes")
    try:
        inspector = load_inspector(args.checkpoint, args.device, threads=args.threads or os.cpu_count() or 1).inspector
        dirs = scene_dirs(args.data, args.split or None)
        scorer = None
        if args.baseline:
            from ..model.baseline import MODEL_PRIOR, BaselineConfig, BaselineScorer
            from ..model.teacher import build_teacher

            net = inspector.net
            features = args.baseline_teacher
            if features == "model" and net.scorer.comparison is not None:
                scorer = BaselineScorer(net.scorer.comparison.baseline_cfg, MODEL_PRIOR)
            else:
                features = "mobilenet_v2" if features == "model" else features
                teacher = build_teacher(features, args.baseline_teacher_weights).to(args.device)
                cfg = BaselineConfig() if features == "mobilenet_v2" else BaselineConfig(scales=(1.0,))
                scorer = BaselineScorer(cfg, teacher)
        shared = scorer is not None and scorer.computed_by(inspector.net)
    except (CheckpointError, ValueError) as e:
        raise CommandError(str(e)) from None
    dirs = dirs[:args.limit] if args.limit else dirs
    splits = {}
    sp_file = Path(args.data) / "splits.json"
    if sp_file.is_file():
        splits = {n: k for k, v in json.loads(sp_file.read_text()).items() for n in v}
    results, base_results, rows, skipped = [], [], [], []
    for d in tqdm(dirs, unit="scene", desc="evaluate"):
        try:
            meta = read_scene_meta(d)
            views = meta.posed_views(meta.even_views(args.views))
        except SceneFormatError as e:
            print(f"odd-one-out evaluate: skipping {d}: {e}", file=sys.stderr)
            skipped.append({"scene": d.name, "reason": str(e)})
            continue
        gt = [o.box for o in meta.objects]
        res = inspector.inspect(views, gt if args.gt_boxes else None,
                                count=len(gt) if args.protocol == "reference" else None)
        boxes, scores, latency = [o.box for o in res.objects], [o.score for o in res.objects], res.latency_s
        common = (d.name, meta.objects[0].category if meta.objects else "", splits.get(d.name, ""), gt,
                  [int(o.anomalous) for o in meta.objects], [o.anomaly_type for o in meta.objects], list(boxes))
        r = SceneResult(*common, scores, inspector.threshold)
        results.append(r)
        pred = [{"score": o.score, "box_score": o.box_score, **o.box.to_dict()} for o in res.objects]
        row = {"scene": d.name, "split": r.split, "category": r.category, "latency_s": latency}
        if scorer is not None:
            if shared:  # the model's prior compared the same boxes' features already
                raw, prob, b_latency = scorer(None, None, None, list(boxes), raw=res.prior_raw)
            else:
                images, K, T = views_to_tensors(views, inspector.net.cfg.image_size, inspector.device)
                raw, prob, b_latency = scorer(images[0], K[0], T[0], list(boxes))
            base_results.append(SceneResult(*common, [float(p) for p in prob], scorer.cfg.threshold))
            for p, s, q in zip(pred, raw, prob):
                p["baseline_score"] = float(q)
                p["baseline_raw"] = float(s)
            row["baseline_latency_s"] = b_latency
        row.update({"gt": [{"name": o.name, "label": int(o.anomalous), "type": o.anomaly_type, **o.box.to_dict()}
                           for o in meta.objects], "pred": pred, "matches": r.matches})
        rows.append(row)
    metrics = evaluate(results)
    boxes_used = "ground truth" if args.gt_boxes else "predicted, true count" if args.protocol == "reference" \
        else "predicted"
    report = {"checkpoint": str(args.checkpoint), "data": str(args.data), "split": args.split, "views": args.views,
              "protocol": args.protocol, "metrics": metrics, "boxes": boxes_used}
    if scorer is not None:
        report["baseline"] = evaluate(base_results)
        # from_model_prior: the raw scores are the model's prior's (the same comparison, run once per scene); the
        # baseline's latency is then only its calibration
        cmp = inspector.net.cfg.scorer.comparison
        teacher = (f"the model's prior ({cmp.features}" + (f", strides {cmp.levels})" if cmp.features == "trunk"
                                                           else ")")
                   if scorer.extractor == MODEL_PRIOR else features)
        report["baseline_config"] = {"teacher": teacher, **scorer.config_dict(), "from_model_prior": shared}
    report["scenes"], report["skipped"] = rows, skipped
    write_json(args.json, report, indent=1)
    if not rows:  # nothing measured is not a result: say so (the JSON names every skipped scene and why)
        raise CommandError(f"no scene of {args.data} could be evaluated ({len(skipped)} skipped"
                           + (f"; first: {skipped[0]['scene']}: {skipped[0]['reason']})" if skipped else ")"))
    print(format_table(metrics, report.get("baseline"), boxes_used))
    if rows and scorer is not None:
        print(f"latency per scene: model {np.median([r['latency_s'] for r in rows]):.2f} s, baseline "
              f"{np.median([r['baseline_latency_s'] for r in rows]):.2f} s (medians)"
              + ("; the baseline's raw scores are the model's prior's" if shared else ""))
    return 0
