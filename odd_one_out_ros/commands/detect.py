"""`odd-one-out detect`: run the model on one scene folder (ours or official) and draw the result."""
from __future__ import annotations

import argparse

from . import CommandError, write_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", help="model checkpoint (default: the shipped cpu_default.pt, as demo)")
    p.add_argument("--scene", required=True, help="scene folder in the official layout")
    p.add_argument("--views", default="0,4,8,12,16", help="input view indices (default 0,4,8,12,16)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", help="write the detections here")
    p.add_argument("--image", help="write an overlay (the input views with the predicted boxes) here")


def run(args) -> int:
    import cv2

    from ..data.scene_meta import SceneFormatError, read_scene_meta
    from ..geometry import iou_3d, match_truth
    from ..inspection.guard import NonFiniteOutput
    from ..inspection.loader import load_inspector
    from ..inspection.overlay import overlay_image

    try:
        views = [int(v) for v in args.views.split(",") if v.strip()]
        if not views:
            raise ValueError(f"--views names no view: {args.views!r}")
        meta = read_scene_meta(args.scene)
        posed = meta.posed_views(views)
        model = load_inspector(args.checkpoint, args.device)
    except (SceneFormatError, ValueError) as e:  # CheckpointError is a ValueError
        raise CommandError(str(e)) from None
    try:
        res = model.guarded(posed)
    except NonFiniteOutput as e:  # a failed model is not an empty tray
        raise CommandError(str(e), code=1) from None
    gt = [o.box for o in meta.objects]
    truth_of = {i: j for j, i in enumerate(match_truth(gt, [o.box for o in res.objects])) if i >= 0}
    rows = []
    for i, o in enumerate(res.objects):
        truth = meta.objects[truth_of[i]] if i in truth_of else None
        rows.append({"id": i, **o.box.to_dict(), "score": o.score, "box_score": o.box_score,
                     "label": "anomalous" if o.anomalous else "normal",
                     "truth_object": truth.name if truth else None,
                     "truth": (f"anomalous ({truth.anomaly_type})" if truth.anomalous else "normal") if truth else None,
                     "iou": iou_3d(o.box, truth.box) if truth else None})
    print(f"{len(res.objects)} objects found in {res.latency_s * 1000:.0f} ms from {len(posed)} views "
          f"({len(gt)} in the ground truth)")
    print(f"{'id':>3} {'label':<10} {'score':>6} {'box':>5}  {'centre (m)':<24} {'truth':<22} {'IoU':>5}")
    for r in rows:
        print(f"{r['id']:>3} {r['label']:<10} {r['score']:6.3f} {r['box_score']:5.2f}  "
              f"{' '.join(f'{c:+.3f}' for c in r['center']):<24} "
              f"{r['truth'] or '-':<22} {r['iou'] if r['iou'] is None else round(r['iou'], 2)!s:>5}")
    if args.json:
        write_json(args.json, {"scene": str(args.scene), "views": views, "latency_s": res.latency_s,
                               "objects": rows}, indent=1)
    if args.image:  # the detector's overlay: the same drawing, labels "<id> <score> box <box score>"
        sheet = overlay_image(posed, [o.box for o in res.objects], [o.score for o in res.objects],
                              [o.anomalous for o in res.objects], max_views=len(posed),
                              box_scores=[o.box_score for o in res.objects])
        if not cv2.imwrite(args.image, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
            raise CommandError(f"cannot write {args.image}", code=1)
    return 0
