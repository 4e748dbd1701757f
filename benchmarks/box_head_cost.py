"""What the learned box estimator adds to an inspection (issue 21 target: <= 30 ms), against the paper's density
estimator on the same volume in the same run.

    OMP_NUM_THREADS=2 python benchmarks/box_head_cost.py [--checkpoint CK] [--threads 2] [--repeat 20]

The volume is the real ToysAD-8K sample's (5 views) through the checkpoint's frozen network (its scene encoder).
Timed through the box estimators of model/estimators.py on that one volume: the density estimator (DensityBoxes
built for the checkpoint's config: its `boxes.density` settings, density threshold + DBSCAN); the heatmap
estimator's head (`HeatmapBoxes.evidence`: the head's inputs and the head) with its decoding (model/box_head.py
decode at the checkpoint's score threshold); the refiner's passes (`HeatmapBoxes.refine`) over the most boxes an
inspection keeps (BoxConfig.max_objects, the worst case). Also printed: the heatmap estimator whole as an
inspection runs it (`net.boxes(volume)`, refining the boxes it finds). Exit 1 when head + refiner exceed the
density estimator by more than 30 ms.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from odd_one_out_ros.data.scene_meta import read_scene_meta
from odd_one_out_ros.geometry import Box3D
from odd_one_out_ros.model.box_head import decode
from odd_one_out_ros.model.checkpoint import load_checkpoint
from odd_one_out_ros.model.estimators import DensityBoxes, HeatmapBoxes
from odd_one_out_ros.model.inference import views_to_tensors
from odd_one_out_ros.resources import ASSETS, DEFAULT_CHECKPOINT

BUDGET_MS = 30.0


def median_ms(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


@torch.no_grad()
def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=20)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    net, _ = load_checkpoint(a.checkpoint)
    heatmap = net.boxes
    if not isinstance(heatmap, HeatmapBoxes):
        print(f"{a.checkpoint} has no learned box head (boxes.estimator {net.cfg.boxes.estimator!r})")
        return 2
    meta = read_scene_meta(ASSETS / "toysad8k_sample")
    images, K, T = views_to_tensors(meta.posed_views(meta.even_views(5)), net.cfg.image_size, "cpu")
    vol = net.scene(images, K, T).volume
    density = DensityBoxes(net.cfg.changed("boxes", estimator="density"), net.grid)  # the same config's settings
    bcfg = net.cfg.boxes
    n = bcfg.max_objects
    rng = np.random.default_rng(0)
    boxes = [Box3D([*rng.uniform(-0.3, 0.3, 2), 0.05], [0.12, 0.08, 0.1], rng.uniform(-1, 1)) for _ in range(n)]
    x = heatmap.evidence(vol)[0][0]

    def head_and_decode():
        (_, heat, reg), = heatmap.evidence(vol)
        return decode(heat, reg, net.grid, bcfg.heatmap.score_threshold, n)

    passes = bcfg.heatmap.refine_passes
    t_density = median_ms(lambda: density(vol), a.repeat)
    t_head = median_ms(head_and_decode, a.repeat)
    t_refine = median_ms(lambda: heatmap.refine(x, boxes, np.ones(n), passes), a.repeat) \
        if heatmap.refiner is not None else 0.0
    t_whole = median_ms(lambda: heatmap(vol), a.repeat)
    found = len(heatmap(vol)[0].boxes)
    added = t_head + t_refine - t_density
    print(f"{a.threads} threads: density + DBSCAN {t_density:.1f} ms; heatmap head + decoding {t_head:.1f} ms; "
          f"refiner ({passes if heatmap.refiner is not None else 0} passes, {n} boxes) {t_refine:.1f} ms; added "
          f"{added:+.1f} ms (budget {BUDGET_MS:.0f}): {'PASS' if added <= BUDGET_MS else 'FAIL'}; the heatmap "
          f"estimator as an inspection runs it ({found} boxes found) {t_whole:.1f} ms")
    return 0 if added <= BUDGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
