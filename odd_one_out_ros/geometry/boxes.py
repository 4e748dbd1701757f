"""3D boxes in the world frame: axis-aligned or yaw-oriented (rotation about world +z).

Conventions (center, full size along the box axes, yaw): docs/frames.md.
IoU of yaw boxes is exact: the z overlap times the area of the intersection of the two
rotated footprint rectangles (polygon clipping by shapely, float64).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from .transforms import yaw_to_matrix

__all__ = ["Box3D", "boxes_from_tensor", "boxes_to_tensor", "greedy_match", "iou_3d", "iou_matrix",
           "match_truth"]

# corner sign pattern: bottom face (z-) counter-clockwise from (-x, -y), then top face (z+)
_CORNER_SIGNS = np.array([[-1, -1, -1], [1, -1, -1], [1, 1, -1], [-1, 1, -1],
                          [-1, -1, 1], [1, -1, 1], [1, 1, 1], [-1, 1, 1]], dtype=np.float64)


@dataclass(frozen=True)
class Box3D:
    """center (3,), size (3,) full extents along the box axes (all >= 0), yaw (rad about +z)."""

    center: np.ndarray
    size: np.ndarray
    yaw: float = 0.0

    def __post_init__(self):
        c = np.asarray(self.center, dtype=np.float64).reshape(-1)
        s = np.asarray(self.size, dtype=np.float64).reshape(-1)
        if c.shape != (3,) or s.shape != (3,):
            raise ValueError(f"box center and size must have 3 values, got {c} and {s}")
        if not (np.all(np.isfinite(c)) and np.all(np.isfinite(s)) and np.isfinite(self.yaw)):
            raise ValueError(f"box has non-finite values: center={c}, size={s}, yaw={self.yaw}")
        if np.any(s < 0):
            raise ValueError(f"box size must be >= 0, got {s}")
        object.__setattr__(self, "center", c)
        object.__setattr__(self, "size", s)
        object.__setattr__(self, "yaw", float(self.yaw))

    @staticmethod
    def from_min_max(lo, hi) -> "Box3D":
        """Axis-aligned box from its minimum and maximum corners."""
        lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
        if np.any(hi < lo):
            raise ValueError(f"box max corner {hi} is below min corner {lo}")
        return Box3D((lo + hi) / 2, hi - lo, 0.0)

    @staticmethod
    def from_points(points) -> "Box3D":
        """Axis-aligned bounding box of points (N, 3), N >= 1."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        if len(p) == 0:
            raise ValueError("cannot bound an empty point set")
        return Box3D.from_min_max(p.min(0), p.max(0))

    @property
    def volume(self) -> float:
        return float(np.prod(self.size))

    @property
    def rotation(self) -> np.ndarray:
        """(3, 3) box-to-world rotation."""
        return yaw_to_matrix(self.yaw)

    EDGES = ((0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7))
    """the 12 edges as index pairs into corners()"""

    def corners(self) -> np.ndarray:
        """(8, 3) corners: bottom face counter-clockwise (seen from +z) then the top face."""
        return (_CORNER_SIGNS * (self.size / 2)) @ self.rotation.T + self.center

    def footprint(self) -> np.ndarray:
        """(4, 2) xy corners of the box seen from above, counter-clockwise."""
        return self.corners()[:4, :2]

    def contains(self, points) -> np.ndarray:
        """(N,) bool for points (N, 3) inside or on the box."""
        local = (np.asarray(points, dtype=np.float64).reshape(-1, 3) - self.center) @ self.rotation
        return np.all(np.abs(local) <= self.size / 2 + 1e-12, axis=1)

    def aabb(self) -> "Box3D":
        """The axis-aligned box that encloses this one."""
        return Box3D.from_points(self.corners())

    def to_dict(self) -> dict:
        return {"center": self.center.tolist(), "size": self.size.tolist(), "yaw": self.yaw}

    @staticmethod
    def from_dict(d: dict) -> "Box3D":
        return Box3D(d["center"], d["size"], d.get("yaw", 0.0))


def boxes_to_tensor(boxes: list[Box3D], device=None, dtype=None):
    """list[Box3D] -> (N, 7) torch tensor of rows [cx, cy, cz, sx, sy, sz, yaw] ((0, 7) for no boxes), float32
    unless `dtype`, on `device`: the boxes as the model and the dataset batch them. Inverse: boxes_from_tensor."""
    import torch  # here, not at the top: the rest of geometry does not need torch

    rows = np.array([[*b.center, *b.size, b.yaw] for b in boxes], dtype=np.float64).reshape(-1, 7)
    return torch.tensor(rows, dtype=dtype or torch.float32, device=device)


def boxes_from_tensor(rows) -> list[Box3D]:
    """(N, 7) rows [cx, cy, cz, sx, sy, sz, yaw] (a torch tensor on any device, or an array) -> list[Box3D]."""
    if hasattr(rows, "detach"):
        rows = rows.detach().cpu().numpy()
    rows = np.asarray(rows).reshape(-1, 7)
    return [Box3D(r[:3], r[3:6], float(r[6])) for r in rows]


def _footprint_polygon(box: Box3D) -> shapely.Polygon:
    return shapely.Polygon(box.footprint())


def iou_3d(a: Box3D, b: Box3D) -> float:
    """Exact 3D intersection-over-union of two yaw boxes (0 for disjoint or degenerate boxes)."""
    z_lo = max(a.center[2] - a.size[2] / 2, b.center[2] - b.size[2] / 2)
    z_hi = min(a.center[2] + a.size[2] / 2, b.center[2] + b.size[2] / 2)
    dz = z_hi - z_lo
    if dz <= 0:
        return 0.0
    if a.yaw == b.yaw == 0.0:  # axis-aligned: no polygon clipping needed
        lo = np.maximum(a.center[:2] - a.size[:2] / 2, b.center[:2] - b.size[:2] / 2)
        hi = np.minimum(a.center[:2] + a.size[:2] / 2, b.center[:2] + b.size[:2] / 2)
        area = float(np.prod(np.clip(hi - lo, 0, None)))
    else:
        area = _footprint_polygon(a).intersection(_footprint_polygon(b)).area
    inter = area * dz
    union = a.volume + b.volume - inter
    return float(inter / union) if union > 0 else 0.0


def iou_matrix(boxes_a: list[Box3D], boxes_b: list[Box3D]) -> np.ndarray:
    """(len(a), len(b)) matrix of 3D IoUs."""
    out = np.zeros((len(boxes_a), len(boxes_b)))
    for i, a in enumerate(boxes_a):
        for j, b in enumerate(boxes_b):
            out[i, j] = iou_3d(a, b)
    return out


def match_truth(truth: list[Box3D], detected: list[Box3D], min_iou: float = 0.5) -> list[int]:
    """For each truth box the index of its detection, or -1: one-to-one, greedy by 3D IoU (highest first),
    IoU > min_iou. The one box matching behind every box recall of the package (evaluation, box tuning,
    training logs, benchmarks, the demo)."""
    iou = iou_matrix(truth, detected) if truth and detected else np.zeros((len(truth), len(detected)))
    return greedy_match(iou, min_iou, strict=True)


def greedy_match(iou: np.ndarray, min_iou: float, strict: bool = False) -> list[int]:
    """One-to-one matching of rows to columns of an IoU matrix (R, C), highest IoU first, keeping pairs with
    IoU >= min_iou (> min_iou when strict). Returns for each row its column, or -1."""
    iou = np.asarray(iou, dtype=np.float64)  # (R, C); C may be 0
    match = [-1] * iou.shape[0]
    used: set[int] = set()
    ok = iou > min_iou if strict else iou >= min_iou
    for flat in np.argsort(-iou, axis=None, kind="stable"):
        r, c = divmod(int(flat), iou.shape[1])
        if not ok[r, c]:
            break
        if match[r] == -1 and c not in used:
            match[r] = c
            used.add(c)
    return match
