"""Box recall at IoU 0.5 that the cpu box estimator reaches on the visual hull (issue 11 target: >= 97 %).

    .venv/bin/python benchmarks/box_upper_bound.py [--scenes 12] [--seed 7100] [--workers 2] [--json FILE]
        [--data DIR]   # reuse scenes instead of generating fresh ones (toys/ and parts/ below DIR)
        [--depth]      # also carve with the written depth maps (space carving)

Generates fresh test scenes with the generator's defaults (toys: half seen-test, half unseen-test categories;
parts), carves the visual hull of each scene's object masks from all its views on the cpu grid exactly as the
occupancy target of training does (masks grown by one pixel, so the hull holds the objects), gives the filled
fraction of every voxel to the box estimator as its opacity and matches the boxes to the ground truth
(one-to-one, IoU > 0.5; no object count is used). This is what a density that learnt its target perfectly
would give: the bound on box recall of a trained cpu model. Prints the recall per kind, the failures by category and
the object sizes in pixels (median of the largest side of each object's mask over its views). JSON:
{"toys": percent, "parts": percent, "details": {...}}. Exit code 1 when a kind is below the target.
"""
import argparse
import collections
import json
import os
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from odd_one_out_ros.data.dataset import DatasetConfig, SceneDataset, scene_dirs
from odd_one_out_ros.data.hull import voxel_hull
from odd_one_out_ros.data.scene_meta import object_pixel_sizes
from odd_one_out_ros.geometry import match_truth
from odd_one_out_ros.model.box_estimator import boxes_from_opacity
from odd_one_out_ros.model.config import preset
from odd_one_out_ros.model.volume import VoxelGrid
from odd_one_out_ros.synth.generate import generate
from odd_one_out_ros.synth.scene import GeneratorConfig

TARGET = 97.0


def measure(dirs: list[Path], depth: bool = False) -> dict:
    cfg = preset("cpu")
    grid = VoxelGrid.from_config(cfg.grid)
    ds = SceneDataset(dirs, DatasetConfig(augment=False, occupancy_grid=(grid.shape, grid.voxel_size, grid.origin)))
    hits, n, failed, px = 0, 0, collections.Counter(), []
    for i in range(len(ds)):
        meta = ds.meta(i)
        if depth:
            depths = [cv2.imread(str(meta.root / "depth_png" / f"{v:04d}.png"), cv2.IMREAD_UNCHANGED) * 1e-3
                      for v in range(len(meta.cameras))]  # uint16 mm (our generator's depth_scale)
            opacity = voxel_hull(grid.centers().numpy(), grid.voxel_size, meta.cameras, ds.hull_masks(i),
                                 depths=depths)
        else:
            opacity = ds.occupancy(i, 0.0, np.zeros(2), False)  # (Z, Y, X) hull fraction, the scene's own frame
        pred = boxes_from_opacity(opacity, grid, cfg.boxes.density, cfg.boxes.max_objects)
        gt = [o.box for o in meta.objects]
        match = match_truth(gt, pred)
        hits += sum(j >= 0 for j in match)
        n += len(gt)
        failed.update(o.category for o, j in zip(meta.objects, match) if j < 0)
        if not depth:  # the masks are the same in both passes
            px += object_pixel_sizes(meta)
    out = {"recall": 100.0 * hits / max(n, 1), "objects": n, "scenes": len(ds), "missed_by_category": dict(failed)}
    if px:
        out.update(object_px_median=float(np.median(px)), object_px_min=float(np.min(px)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=12, help="scenes per kind")
    ap.add_argument("--seed", type=int, default=7100)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--data", help="folder with toys/ and parts/ datasets to reuse")
    ap.add_argument("--depth", action="store_true", help="also report the hull carved with the depth maps")
    ap.add_argument("--json")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.data or tmp)
        if not args.data:
            half = max(1, args.scenes // 2)
            generate(GeneratorConfig(kind="toys"), half, root / "toys" / "seen", args.seed, "seen-test", args.workers)
            generate(GeneratorConfig(kind="toys"), args.scenes - half, root / "toys" / "unseen", args.seed + 1,
                     "unseen-test", args.workers)
            generate(GeneratorConfig(kind="parts"), args.scenes, root / "parts", args.seed + 2, "test", args.workers)
        details = {}
        for kind in ("toys", "parts"):
            base = root / kind
            dirs = [d for sub in ([base / "seen", base / "unseen"] if (base / "seen").is_dir() else [base])
                    for d in scene_dirs(sub)]
            details[kind] = d = measure(dirs)
            print(f"{kind}: box recall on the visual hull {d['recall']:.1f} % of {d['objects']} objects "
                  f"({d['scenes']} scenes; target >= {TARGET:.0f}); object size median {d['object_px_median']:.1f} px, "
                  f"min {d['object_px_min']:.1f} px; missed: {d['missed_by_category'] or 'none'}")
            if args.depth:
                d["depth_carved"] = c = measure(dirs, depth=True)
                print(f"{kind}: box recall on the depth-carved hull {c['recall']:.1f} %; "
                      f"missed: {c['missed_by_category'] or 'none'}")
    out = {"toys": details["toys"]["recall"], "parts": details["parts"]["recall"], "details": details}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0 if min(out["toys"], out["parts"]) >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
