"""`odd-one-out tune-boxes`: set a checkpoint's box estimator's settings by box recall on a split (whatever the
estimator offers to tune: the learned head's score threshold, or the density estimator's occupancy threshold and
soft height; model/estimators.py BoxEstimator.tuning_grid)."""
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
    from ..training.evaluate import tune_boxes

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
    best, table = tune_boxes(net, metas, args.views)
    chosen = " ".join(f"{k}={v}" for k, v in best.items())
    for label, row in table.items():
        print(f"{label}: box recall@0.5 {row['recall']:.1f} %, {row['unmatched_per_scene']:.2f} unmatched boxes "
              f"per scene{'  <- chosen' if label == chosen else ''}")
    net.cfg = net.cfg.changed(net.boxes.section, **best)
    meta = {"box_threshold_tuned_on": f"{' + '.join(args.data)} {args.split} ({len(dirs)} scenes)",
            "box_recall_by_setting": table}
    extra = extra_items(blob)
    save_checkpoint(args.out, net, meta={**blob.get("meta", {}), **meta}, half=args.half, **extra)
    print(f"wrote {args.out} ({net.boxes.section} {chosen})")
    return 0
