"""The training-free comparison's quality for each choice of frozen features (issue 20), on ground-truth boxes.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/prior_features.py --data DIR [--data DIR ...] [--views 5]
        [--variant NAME=FEATURES:LEVELS:GRID ...] [--json out.json]

For every scene (its ground-truth boxes, `--views` views spread evenly) and every variant, the comparison of
model/baseline.py scores the boxes on that variant's maps and the reference-protocol AUC (training/evaluate.py)
is reported per data folder. FEATURES is "teacher" (a separate ImageNet MobileNetV2 on the images at 2x, the
comparison before issue 20) or "trunk" (the cpu encoder's ImageNet MobileNetV2 backbone levels of the one pass at
1x; LEVELS as MatcherConfig.prior_levels). Default variants: the 2x teacher at grid 6 and the trunk choices
measured for issue 20. The backbone runs once per scene for all trunk variants.
"""
import argparse
import dataclasses
import json
import sys

import torch

from odd_one_out_ros.data.dataset import scene_dirs
from odd_one_out_ros.data.scene_meta import read_scene_meta
from odd_one_out_ros.model.baseline import baseline_scores, calibrate
from odd_one_out_ros.model.config import preset
from odd_one_out_ros.model.inference import views_to_tensors
from odd_one_out_ros.model.network import OddOneOutNet
from odd_one_out_ros.training.evaluate import SceneResult, evaluate

DEFAULT_VARIANTS = ("teacher2x=teacher:-:6", "trunk_4|8+16_g7=trunk:4|8+16:7", "trunk_4|8+16_g6=trunk:4|8+16:6",
                    "trunk_8+16_g6=trunk:8+16:6", "trunk_4+8+16_g6=trunk:4+8+16:6")


def build(spec: str, base) -> tuple[str, OddOneOutNet]:
    name, rest = spec.split("=", 1)
    features, levels, grid = rest.split(":")
    m = dataclasses.replace(base.matcher, prior=True, prior_features=features, prior_grid=int(grid),
                            prior_levels=levels if features == "trunk" else base.matcher.prior_levels)
    return name, OddOneOutNet(dataclasses.replace(base, matcher=m).validate()).eval()


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
    nets = dict(build(s, base) for s in (args.variant or DEFAULT_VARIANTS))
    trunk = next((n for n in nets.values() if n.prior_trunk), None)
    report = {}
    for root in args.data:
        results = {name: [] for name in nets}
        for d in scene_dirs(root):
            meta = read_scene_meta(d)
            views = meta.posed_views(meta.even_views(args.views))
            gt = [o.box for o in meta.objects]
            images, K, T = views_to_tensors(views, base.image_size, "cpu")
            with torch.no_grad():
                levels = trunk.encoder.backbone_levels(images.flatten(0, 1)) if trunk is not None else None
                for name, net in nets.items():
                    maps = net.prior_maps(images, levels if net.prior_trunk else None)[0]
                    raw = baseline_scores(images[0], K[0], T[0], gt, None, net.prior_cfg, maps)
                    prob = calibrate(raw, net.prior_cfg)
                    results[name].append(SceneResult(d.name, meta.objects[0].category if meta.objects else "", "",
                                                     gt, [int(o.anomalous) for o in meta.objects],
                                                     [o.anomaly_type for o in meta.objects], gt,
                                                     [float(p) for p in prob]))
        report[root] = {name: evaluate(rs)["all"]["reference"]["auc"] for name, rs in results.items()}
        report[root]["scenes"] = len(results[next(iter(nets))])
        print(f"{root} ({report[root]['scenes']} scenes, {args.views} views, ground-truth boxes): reference AUC "
              + ", ".join(f"{n} {report[root][n]:.1f}" for n in nets), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
