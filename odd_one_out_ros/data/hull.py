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
                   min_views: int = 2, depths: list[np.ndarray] | None = None, depth_tol: float = 0.01) -> np.ndarray:
    """points (P, 3) world; cameras[v] with masks[v] (h_v, w_v) bool of any resolution (scaled from the
    camera's width x height) -> (P,) bool, True inside the visual hull.

    With depths[v] (h_v, w_v) (camera z of the visible surface in metres, 0 = nothing), a point more than
    depth_tol in front of the nearest surface its pixel and the 8 around it show is carved too (space carving;
    the neighbourhood keeps silhouette pixels, whose depth may be the floor behind, from carving the object): the
    roof the mask hull leaves above wide objects and the inside of concave ones are removed; what no view sees
    stays."""
    if len(cameras) != len(masks):
        raise ValueError(f"{len(cameras)} cameras but {len(masks)} masks")
    pts = np.asarray(points, dtype=np.float64)
    alive = np.arange(len(pts))  # points no view has carved away yet: each view tests only these
    seen = np.zeros(len(pts), np.int32)
    for k, (cam, mask) in enumerate(zip(cameras, masks)):
        uv, z = cam.project(pts[alive])  # with the lens distortion of the view
        front = z > 1e-6
        uv[~front] = -1.0
        h, w = mask.shape
        u = np.floor((uv[:, 0] + 0.5) * w / cam.width).astype(np.int64)
        v = np.floor((uv[:, 1] + 0.5) * h / cam.height).astype(np.int64)
        vis = front & (u >= 0) & (u < w) & (v >= 0) & (v < h)
        seen[alive] += vis
        hit = np.zeros(len(uv), bool)
        hit[vis] = mask[v[vis], u[vis]]
        if depths is not None:
            d = np.zeros(len(uv))
            d[vis] = _nearest_surface(depths[k])[v[vis], u[vis]]  # depths[k] has the shape of masks[k]
            hit &= ~((d > 0) & (z < d - depth_tol))
        alive = alive[hit | ~vis]
    inside = np.zeros(len(pts), bool)
    inside[alive] = True
    return inside & (seen >= min_views)


def _nearest_surface(depth: np.ndarray) -> np.ndarray:
    """Per pixel the smallest positive depth in its 3 x 3 neighbourhood (0 where there is none)."""
    import cv2

    d = np.where(depth > 0, depth, np.inf).astype(np.float32)
    d = cv2.erode(d, np.ones((3, 3), np.uint8))
    return np.where(np.isfinite(d), d, 0.0)


def voxel_hull(centers: np.ndarray, voxel_size: float, cameras: list[PinholeCamera], masks: list[np.ndarray],
               subsamples: int = 2, depths: list[np.ndarray] | None = None) -> np.ndarray:
    """Fraction of each voxel inside the hull: centers (..., 3) world -> (...) float32 in [0, 1], from
    subsamples^3 points spread evenly inside each voxel."""
    offs = (np.arange(subsamples) + 0.5) / subsamples - 0.5
    grid = np.stack(np.meshgrid(offs, offs, offs, indexing="ij"), -1).reshape(-1, 3) * voxel_size  # (S, 3)
    flat = np.asarray(centers, dtype=np.float64).reshape(-1, 1, 3) + grid[None]
    occ = hull_occupancy(flat.reshape(-1, 3), cameras, masks, depths=depths).reshape(flat.shape[:2])
    return occ.mean(axis=1).astype(np.float32).reshape(np.asarray(centers).shape[:-1])
