"""Visual hull of a scene's objects from its posed object masks: a 3D occupancy target for the voxel grid.

A point is inside the hull when every view that sees it (in front of the camera, inside the image)
shows it inside the union of the object masks, and at least `min_views` views see it. The hull is a
superset of the objects (concavities are filled), tight for the views of a scene all around the
objects. Training uses it as an extra, direct target for the voxel opacity (docs/training.md); it
carries the same information as the 2D mask loss, only without rendering.
"""
from __future__ import annotations

import numpy as np

from ..geometry import PinholeCamera


def hull_occupancy(points: np.ndarray, cameras: list[PinholeCamera], masks: list[np.ndarray],
                   min_views: int = 2) -> np.ndarray:
    """points (P, 3) world; cameras[v] with masks[v] (h_v, w_v) bool of any resolution (scaled from the
    camera's width x height) -> (P,) bool, True inside the visual hull."""
    if len(cameras) != len(masks):
        raise ValueError(f"{len(cameras)} cameras but {len(masks)} masks")
    pts = np.asarray(points, dtype=np.float64)
    alive = np.arange(len(pts))  # points no view has carved away yet: each view tests only these
    seen = np.zeros(len(pts), np.int32)
    for cam, mask in zip(cameras, masks):
        pc = pts[alive] @ cam.T_cw.R.T + cam.T_cw.t
        z = pc[:, 2]
        front = z > 1e-6
        uv = np.full((len(pc), 2), -1.0)
        uv[front] = (pc[front, :2] / z[front, None]) @ cam.K[:2, :2].T + cam.K[:2, 2]
        h, w = mask.shape
        u = np.floor((uv[:, 0] + 0.5) * w / cam.width).astype(np.int64)
        v = np.floor((uv[:, 1] + 0.5) * h / cam.height).astype(np.int64)
        vis = front & (u >= 0) & (u < w) & (v >= 0) & (v < h)
        seen[alive] += vis
        hit = np.zeros(len(pc), bool)
        hit[vis] = mask[v[vis], u[vis]]
        alive = alive[hit | ~vis]
    inside = np.zeros(len(pts), bool)
    inside[alive] = True
    return inside & (seen >= min_views)


def voxel_hull(centers: np.ndarray, voxel_size: float, cameras: list[PinholeCamera], masks: list[np.ndarray],
               subsamples: int = 2) -> np.ndarray:
    """Fraction of each voxel inside the hull: centers (..., 3) world -> (...) float32 in [0, 1], from
    subsamples^3 points spread evenly inside each voxel."""
    offs = (np.arange(subsamples) + 0.5) / subsamples - 0.5
    grid = np.stack(np.meshgrid(offs, offs, offs, indexing="ij"), -1).reshape(-1, 3) * voxel_size  # (S, 3)
    flat = np.asarray(centers, dtype=np.float64).reshape(-1, 1, 3) + grid[None]
    occ = hull_occupancy(flat.reshape(-1, 3), cameras, masks).reshape(flat.shape[:2])
    return occ.mean(axis=1).astype(np.float32).reshape(np.asarray(centers).shape[:-1])
