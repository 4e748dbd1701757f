"""`odd-one-out tune-boxes`: set a checkpoint's box threshold to the best box recall on a split: the learned head's
score threshold (boxes.estimator "heatmap"), or the density estimator's occupancy threshold and soft height."""
from __future__ import annotations

import argparse

from . import CommandError, positive_int


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True, action="append",
                   help="dataset root or folder of scenes; repeat for a mix (e.g. toys and parts)")
    p.add_argument("--split", default="train", help="scenes to tune on (default train; not a test split)")
    p.add_argument("--scenes", type=positive_int, default=16, help="how many scenes of each --data (default 16)")
    p.add_argument("--views", type=positive_int, default=5)
    p.add_argument("--out", required=True, help="checkpoint to write (the input is not changed)")
    p.add_argument("--half", action="store_true", help="store float16 weights (shipping size)")


def run(args) -> int:
    from ..data.dataset import scene_dirs
    from ..data.scene_meta import read_scene_meta
    from ..model.checkpoint import CheckpointError, extra_items, load_checkpoint, save_checkpoint
    from ..training.evaluate import tune_box_threshold, tune_score_threshold

    try:
        net, blob = load_checkpoint(args.checkpoint)
        dirs = []
        for root in args.data:  # a threshold tuned on no scenes (or without one of the --data) is no threshold
            found = scene_dirs(root, args.split)[:args.scenes]
            if not found:
                raise ValueError(f"{root}: no {args.split!r} scenes to tune on")
            dirs += found
        metas = [read_scene_meta(d) for d in dirs]  # SceneFormatError is a ValueError
    except (CheckpointError, ValueError) as e:
        raise CommandError(str(e)) from None
    tuned_on = f"{' + '.join(args.data)} {args.split} ({len(dirs)} scenes)"
    if net.cfg.boxes.estimator == "heatmap":
        best, table = tune_score_threshold(net, metas, args.views)
        for c, row in table.items():
            print(f"score > {c:.2f}: box recall@0.5 {row['recall']:.1f} %, {row['unmatched_per_scene']:.2f} "
                  f"unmatched boxes per scene{'  <- chosen' if c == best else ''}")
        net.cfg = net.cfg.changed("boxes", score_threshold=best)
        chosen = f"score threshold {best}"
        meta = {"box_threshold_tuned_on": tuned_on,
                "box_recall_by_score_threshold": {str(c): v for c, v in table.items()}}
    else:
        best, soft, table = tune_box_threshold(net, metas, args.views)
        for (c, sh), row in table.items():
            print(f"occupancy > {c:.2f}{', soft height' if sh else ''}: box recall@0.5 {row['recall']:.1f} %, "
                  f"{row['extra_boxes']} extra boxes{'  <- chosen' if (c, sh) == (best, soft) else ''}")
        net.cfg = net.cfg.changed("boxes", occupancy_threshold=best, soft_height=soft)
        chosen = f"occupancy threshold {best}, soft height {'on' if soft else 'off'}"
        meta = {"box_threshold_tuned_on": tuned_on,
                "box_recall_by_threshold": {f"{c}{' soft' if sh else ''}": v for (c, sh), v in table.items()}}
    extra = extra_items(blob)
    save_checkpoint(args.out, net, meta={**blob.get("meta", {}), **meta}, half=args.half, **extra)
    print(f"wrote {args.out} ({chosen})")
    return 0
