"""Box estimator B: occupied voxels -> DBSCAN clusters -> yaw-oriented 3D boxes in the world frame.

No knowledge of the object count. Rules (BoxConfig):
1. a voxel is occupied when its opacity 1 - exp(-sigma * voxel_size) > occupancy_threshold;
2. DBSCAN (scikit-learn) on the occupied voxel centres with eps = eps_voxels * voxel_size and
   min_samples; DBSCAN's noise points are dropped;
3. clusters with fewer than min_voxels voxels, or whose largest extent is below min_extent_voxels
   voxels, are dropped;
4. each remaining cluster gets the minimum-area rectangle of its voxels seen from above
   (cv2.minAreaRect, each voxel counted as its 4 footprint corners) and its z range: yaw box;
5. at most max_objects boxes are kept, the clusters with the most voxels.
Returned boxes are sorted by centre (x, then y) so the order does not depend on DBSCAN labels.
"""
from __future__ import annotations

import cv2
import numpy as np
from sklearn.cluster import DBSCAN

from ..geometry import Box3D
from .config import BoxConfig
from .volume import VoxelGrid


def occupancy(density: np.ndarray, voxel_size: float) -> np.ndarray:
    """Voxel opacity 1 - exp(-sigma * voxel_size), same shape as density (1/m)."""
    return 1.0 - np.exp(-np.asarray(density, dtype=np.float64) * voxel_size)


def estimate_boxes(density: np.ndarray, grid: VoxelGrid, cfg: BoxConfig) -> list[Box3D]:
    """density (Z, Y, X) in 1/m -> list of Box3D (possibly empty)."""
    occ = occupancy(density, grid.voxel_size) > cfg.occupancy_threshold
    idx = np.argwhere(occ)  # (P, 3) as (z, y, x)
    if len(idx) == 0:
        return []
    s = grid.voxel_size
    centers = grid.lo + (idx[:, ::-1] + 0.5) * s  # (P, 3) world x, y, z
    labels = DBSCAN(eps=cfg.eps_voxels * s, min_samples=cfg.min_samples).fit_predict(centers)
    clusters = []
    for label in set(labels.tolist()) - {-1}:
        pts = centers[labels == label]
        if len(pts) < cfg.min_voxels:
            continue
        box = _yaw_box(pts, s)
        if box.size.max() < cfg.min_extent_voxels * s:
            continue
        clusters.append((len(pts), box))
    clusters.sort(key=lambda c: -c[0])
    boxes = [b for _, b in clusters[:cfg.max_objects]]
    return sorted(boxes, key=lambda b: (round(b.center[0], 6), round(b.center[1], 6)))


def _yaw_box(pts: np.ndarray, s: float) -> Box3D:
    """Minimum-area yaw box around voxels centred at pts (P, 3) of edge s."""
    corners = (pts[:, None, :2] + np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * (s / 2)).reshape(-1, 2)
    (cx, cy), (w, h), _ = cv2.minAreaRect(corners.astype(np.float32))
    quad = cv2.boxPoints(((cx, cy), (w, h), _)).astype(np.float64)
    edge = quad[1] - quad[0]
    yaw = float(np.arctan2(edge[1], edge[0]))
    sx, sy = float(np.linalg.norm(quad[1] - quad[0])), float(np.linalg.norm(quad[2] - quad[1]))
    # canonical yaw in (-pi/2, pi/2]: a box equals itself turned by pi
    if yaw <= -np.pi / 2:
        yaw += np.pi
    elif yaw > np.pi / 2:
        yaw -= np.pi
    z0, z1 = pts[:, 2].min() - s / 2, pts[:, 2].max() + s / 2
    return Box3D([cx, cy, (z0 + z1) / 2], [sx, sy, z1 - z0], yaw)
