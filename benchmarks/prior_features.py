"""The training-free comparison's quality for each choice of frozen features (issue 20), on ground-truth boxes.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/prior_features.py --data DIR [--data DIR ...] [--views 5]
        [--variant NAME=FEATURES:LEVELS:GRID ...] [--json out.json]

For every scene (its ground-truth boxes, `--views` views spread evenly) and every variant, the comparison of
model/baseline.py scores the boxes on that variant's maps and the reference-protocol AUC (training/evaluate.py)
is reported per data folder. FEATURES is "teacher" (a separate ImageNet MobileNetV2 on the images at 2x, the
comparison before issue 20) or "trunk" (the cpu encoder's ImageNet MobileNetV2 backbone levels of the one pass at
1x; LEVELS as ComparisonConfig.levels, ignored for the teacher). Default variants: the 2x teacher at grid 6 and the
trunk choices measured for issue 20. Each variant is the comparison of model/comparison.py (the scorer's
`comparison`, built from its ComparisonConfig) on the scene encoding of one cpu network: the backbone runs once per
scene for all trunk variants.
"""
import argparse
import json
import sys

import torch

from odd_one_out_ros.data.dataset import scene_dirs
from odd_one_out_ros.data.scene_meta import read_scene_meta
from odd_one_out_ros.model.baseline import calibrate
from odd_one_out_ros.model.comparison import Comparison
from odd_one_out_ros.model.config import preset
from odd_one_out_ros.model.inference import views_to_tensors
from odd_one_out_ros.model.network import OddOneOutNet
from odd_one_out_ros.training.evaluate import SceneResult, evaluate

DEFAULT_VARIANTS = ("teacher2x=teacher:-:6", "trunk_4|8+16_g7=trunk:4|8+16:7", "trunk_4|8+16_g6=trunk:4|8+16:6",
                    "trunk_8+16_g6=trunk:8+16:6", "trunk_4+8+16_g6=trunk:4+8+16:6")


def build(spec: str, base) -> tuple[str, Comparison]:
    """NAME=FEATURES:LEVELS:GRID -> (NAME, the comparison of that ComparisonConfig, validated within `base`)."""
    name, rest = spec.split("=", 1)
    features, levels, grid = rest.split(":")
    fields = {"features": features, "grid": int(grid)}
    if features == "trunk":
        fields["levels"] = levels
    cfg = base.changed("scorer", kind="comparison").changed("scorer.comparison", **fields).validate()
    return name, Comparison(cfg.scorer.comparison)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", action="append", required=True)
    ap.add_argument("--views", type=int, default=5)
    ap.add_argument("--variant", action="append", help="NAME=FEATURES:LEVELS:GRID (default: %s)" % ", ".join(
        DEFAULT_VARIANTS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    base = preset("cpu")  # the ImageNet backbone (deep-sort weights), frozen, as the shipped model's
    torch.manual_seed(0)
    comparisons = dict(build(s, base) for s in (args.variant or DEFAULT_VARIANTS))
    net = OddOneOutNet(base).eval()  # its scene encoder gives the trunk's levels (the one backbone pass)
    report = {}
    for root in args.data:
        results = {name: [] for name in comparisons}
        for d in scene_dirs(root):
            meta = read_scene_meta(d)
            views = meta.posed_views(meta.even_views(args.views))
            gt = [o.box for o in meta.objects]
            images, K, T = views_to_tensors(views, base.image_size, "cpu")
            with torch.no_grad():
                enc = net.scene(images, K, T)
                for name, comparison in comparisons.items():
                    (raw,) = comparison.raw_scores(enc, [gt])
                    prob = calibrate(raw, comparison.baseline_cfg)
                    results[name].append(SceneResult(d.name, meta.objects[0].category if meta.objects else "", "",
                                                     gt, [int(o.anomalous) for o in meta.objects],
                                                     [o.anomaly_type for o in meta.objects], gt,
                                                     [float(p) for p in prob]))
        report[root] = {name: evaluate(rs)["all"]["reference"]["auc"] for name, rs in results.items()}
        report[root]["scenes"] = len(results[next(iter(comparisons))])
        print(f"{root} ({report[root]['scenes']} scenes, {args.views} views, ground-truth boxes): reference AUC "
              + ", ".join(f"{n} {report[root][n]:.1f}" for n in comparisons), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
