"""What the learned box estimator adds to an inspection (issue 21 target: <= 30 ms), against the paper's density
estimator on the same volume in the same run.

    OMP_NUM_THREADS=2 python benchmarks/box_head_cost.py [--checkpoint CK] [--threads 2] [--repeat 20]

The volume is the real ToysAD-8K sample's (5 views) through the checkpoint's frozen network. Timed: the density
threshold + DBSCAN estimator; the heatmap head with its decoding; the refiner's passes over the most boxes an
inspection keeps (BoxConfig.max_objects, the worst case). Exit 1 when head + refiner exceed the density
estimator by more than 30 ms.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import numpy as np
import torch

from odd_one_out_ros.data.scene_meta import read_scene_meta
from odd_one_out_ros.geometry import Box3D
from odd_one_out_ros.model.box_estimator import estimate_boxes
from odd_one_out_ros.model.box_head import BoxHead, decode
from odd_one_out_ros.model.checkpoint import load_checkpoint
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
    if net.box_head is None:
        print(f"{a.checkpoint} has no learned box head (boxes.estimator {net.cfg.boxes.estimator!r})")
        return 2
    meta = read_scene_meta(ASSETS / "toysad8k_sample")
    images, K, T = views_to_tensors(meta.posed_views(meta.even_views(5)), net.cfg.image_size, "cpu")
    _, vol = net.inspection_volume(images, K, T)
    dens = vol.density[0, 0].float().numpy()
    density_cfg = dataclasses.replace(net.cfg.boxes, estimator="density")
    x = BoxHead.inputs(vol, net.grid.voxel_size)
    n = net.cfg.boxes.max_objects
    rng = np.random.default_rng(0)
    boxes = [Box3D([*rng.uniform(-0.3, 0.3, 2), 0.05], [0.12, 0.08, 0.1], rng.uniform(-1, 1)) for _ in range(n)]
    t_density = median_ms(lambda: estimate_boxes(dens, net.grid, density_cfg), a.repeat)
    t_head = median_ms(lambda: decode(*net.box_head(x), net.grid, net.cfg.boxes), a.repeat)
    t_refine = median_ms(lambda: net.refine_boxes(x, boxes, np.ones(n)), a.repeat) if net.box_refiner else 0.0
    added = t_head + t_refine - t_density
    print(f"{a.threads} threads: density + DBSCAN {t_density:.1f} ms; heatmap head + decoding {t_head:.1f} ms; "
          f"refiner ({net.cfg.boxes.refine_passes} passes, {n} boxes) {t_refine:.1f} ms; added {added:+.1f} ms "
          f"(budget {BUDGET_MS:.0f}): {'PASS' if added <= BUDGET_MS else 'FAIL'}")
    return 0 if added <= BUDGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
