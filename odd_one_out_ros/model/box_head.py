"""The learned box estimator's networks (estimator "heatmap", model/estimators.py): a bird's-eye-view centre
heatmap on the scene volume.

    F_v (B, c, Z, Y, X) + opacity + seen  --a linear map per voxel-->  (B, m, Z, Y, X)
      --the Z levels of each column stacked as channels, batch norm, ReLU-->  (B, m * Z, Y, X)
      --2D convolutions (dilated residual blocks)-->  heatmap logits (B, 1, Y, X) + regression (B, 10, Y, X)

One heatmap cell per (x, y) voxel column of the grid. Regression channels (REG), all at the cell of an object's
centre and its 8 neighbours: the centre's offset from the cell centre (2, in voxels), the box bottom above the grid
floor z_min (1, voxels), log of the box size l >= w and h (3, in voxels), sin / cos of 2 yaw (2: the box's yaw
modulo pi, the symmetry of a box with l != w) and of 4 yaw (2: modulo pi / 2, the symmetry of a square footprint,
which the 3D IoU also has). Peaks are local maxima of a 3 x 3 max-pool above HeatmapBoxConfig.score_threshold: no object
count, no NMS. Design facts from CenterPoint (Gaussian focal loss, prior-probability bias, minimum Gaussian radius;
shared/notes/boxes-and-scoring.md); the code is our own. Frames and the grid: docs/frames.md.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..geometry import Box3D
from .config import HeatmapBoxConfig
from .volume import SceneVolume, VoxelGrid

REG = 10  # offset (2), bottom (1), log size (3), 2 yaw (2), 4 yaw (2)
SQUARE_RATIO = 1.1
"""a box whose l / w is below this is read as square: its yaw comes from the 4-yaw channels (modulo pi / 2)"""
HEAT_PRIOR = 0.1  # initial heatmap probability (CenterPoint's bias -2.19)


class _Block(nn.Module):
    """Residual 3 x 3 convolution pair with dilation d: (B, h, Y, X) -> (B, h, Y, X)."""

    def __init__(self, h: int, d: int):
        super().__init__()
        self.c1 = nn.Conv2d(h, h, 3, padding=d, dilation=d, bias=False)
        self.b1 = nn.BatchNorm2d(h)
        self.c2 = nn.Conv2d(h, h, 3, padding=1, bias=False)
        self.b2 = nn.BatchNorm2d(h)

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)), inplace=True)
        return F.relu(x + self.b2(self.c2(y)), inplace=True)


class BoxHead(nn.Module):
    """scene volume -> (heatmap logits (B, 1, Y, X), regression (B, REG, Y, X)); see the module docstring."""

    def __init__(self, volume_channels: int, grid: VoxelGrid, cfg: HeatmapBoxConfig):
        super().__init__()
        Z = grid.shape[2]
        m, h = cfg.head_column, cfg.head_channels
        self.column = nn.Linear(volume_channels + 2, m, bias=False)  # per voxel: a matrix product over channels
        self.column_norm = nn.BatchNorm2d(m * Z)
        self.stem = nn.Sequential(nn.Conv2d(m * Z, h, 3, padding=1, bias=False), nn.BatchNorm2d(h),
                                  nn.ReLU(inplace=True))
        dilations = (1, 2, 4, 1, 2, 4)
        self.blocks = nn.Sequential(*[_Block(h, dilations[i % len(dilations)]) for i in range(cfg.head_blocks)])
        self.heat = nn.Conv2d(h, 1, 1)
        self.reg = nn.Conv2d(h, REG, 1)
        nn.init.constant_(self.heat.bias, math.log(HEAT_PRIOR / (1 - HEAT_PRIOR)))

    @staticmethod
    def inputs(vol: SceneVolume, voxel_size: float) -> torch.Tensor:
        """The head's input from a scene volume: (B, c + 2, Z, Y, X) = F_v, opacity 1 - exp(-sigma s), seen."""
        opacity = 1.0 - torch.exp(-vol.density * voxel_size)
        return torch.cat([vol.fv, opacity.to(vol.fv.dtype), vol.seen.to(vol.fv.dtype)], dim=1)

    def columns(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, c + 2, Z, Y, X) (`inputs`) -> column features (B, m * Z, Y, X): a per-voxel map, so it commutes
        with turns and mirrors of the grid (training turns this smaller tensor)."""
        B, C, Z, Y, X = x.shape
        col = torch.matmul(self.column.weight.to(x.dtype), x.reshape(B, C, Z * Y * X))  # (B, m, Z*Y*X)
        return F.relu(self.column_norm(col.float().reshape(B, -1, Y, X)), inplace=True)

    def from_columns(self, col: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """column features (B, m * Z, Y, X) -> heatmap logits (B, 1, Y, X), regression (B, REG, Y, X)."""
        y = self.blocks(self.stem(col))
        return self.heat(y), self.reg(y)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, c + 2, Z, Y, X) (`inputs`) -> heatmap logits (B, 1, Y, X), regression (B, REG, Y, X)."""
        return self.from_columns(self.columns(x))


class BoxRefiner(nn.Module):
    """A second look at each box (HeatmapBoxConfig.refine): the head's input sampled in the box's own frame, enlarged by
    REFINE_GROW (object volumes (N, c + 2, r, r, r), r = refine_size) and the box's log size -> a residual per box
    (N, 7): centre offset along the box's x, y (in box lengths) and z (in box heights), log size ratios and the
    yaw offset (rad). The last layer starts at zero: an untrained refiner leaves boxes as they are."""

    def __init__(self, volume_channels: int, cfg: HeatmapBoxConfig):
        super().__init__()
        r = cfg.refine_size
        self.conv = nn.Sequential(
            nn.Conv3d(volume_channels + 2, 24, 3, padding=1, bias=False), nn.BatchNorm3d(24), nn.ReLU(inplace=True),
            nn.Conv3d(24, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm3d(32), nn.ReLU(inplace=True))
        n = 32 * ((r + 1) // 2) ** 3
        self.mlp = nn.Sequential(nn.Linear(n + 3, 128), nn.ReLU(inplace=True), nn.Linear(128, 7))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, rois: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """rois (N, c + 2, r, r, r) (`refine_regions`), boxes (N, 7) -> residuals (N, 7) (`apply_residuals`)."""
        f = self.conv(rois).flatten(1)
        return self.mlp(torch.cat([f, torch.log(boxes[:, 3:6].clamp(min=1e-3))], dim=1))


REFINE_GROW = 1.6
"""the refiner sees each box's surroundings: the box scaled by this (and one voxel more on every side)"""


def refine_regions(x: torch.Tensor, boxes: torch.Tensor, grid: VoxelGrid, r: int) -> torch.Tensor:
    """One scene's head input x (1, c + 2, Z, Y, X) sampled in each box (N, 7) enlarged by REFINE_GROW:
    (N, c + 2, r, r, r)."""
    from .matcher import roi_pool  # the object volumes' sampler (matcher.py imports nothing of this module)

    grown = torch.cat([boxes[:, :3], boxes[:, 3:6] * REFINE_GROW, boxes[:, 6:]], dim=1)
    return roi_pool(x, grown, grid, r, grid.voxel_size)


def _wrap(a):
    return torch.atan2(torch.sin(a), torch.cos(a))


def apply_residuals(boxes: torch.Tensor, res: torch.Tensor) -> torch.Tensor:
    """boxes (N, 7) [cx, cy, cz, l, w, h, yaw] and residuals (N, 7) -> refined boxes (N, 7)."""
    c, s = torch.cos(boxes[:, 6]), torch.sin(boxes[:, 6])
    dx, dy = res[:, 0] * boxes[:, 3], res[:, 1] * boxes[:, 4]
    centre = torch.stack([boxes[:, 0] + c * dx - s * dy, boxes[:, 1] + s * dx + c * dy,
                          boxes[:, 2] + res[:, 2] * boxes[:, 5]], dim=1)
    size = boxes[:, 3:6] * torch.exp(res[:, 3:6].clamp(-2.0, 2.0))
    return torch.cat([centre, size, (boxes[:, 6] + res[:, 6])[:, None]], dim=1)


def residual_targets(boxes: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """The residuals (N, 7) that `apply_residuals` turns boxes (N, 7) into truth (N, 7), with truth written in the
    one of its four equal forms (yaw + k pi / 2, l and w swapped for odd k) whose yaw is nearest the box's."""
    best = None
    for k in range(4):
        yaw = truth[:, 6] + k * math.pi / 2
        size = truth[:, [4, 3, 5]] if k % 2 else truth[:, 3:6]
        d = _wrap(yaw - boxes[:, 6])
        cand = torch.cat([truth[:, :3], size, (boxes[:, 6] + d)[:, None]], dim=1)
        best = cand if best is None else torch.where((d.abs() < _wrap(best[:, 6] - boxes[:, 6]).abs())[:, None],
                                                     cand, best)
    c, s = torch.cos(boxes[:, 6]), torch.sin(boxes[:, 6])
    dx, dy = best[:, 0] - boxes[:, 0], best[:, 1] - boxes[:, 1]
    return torch.stack([(c * dx + s * dy) / boxes[:, 3], (-s * dx + c * dy) / boxes[:, 4],
                        (best[:, 2] - boxes[:, 2]) / boxes[:, 5], *torch.log(best[:, 3:6] / boxes[:, 3:6]).T,
                        best[:, 6] - boxes[:, 6]], dim=1)


def decode(heat: torch.Tensor, reg: torch.Tensor, grid: VoxelGrid, score_threshold: float, max_objects: int
           ) -> list[tuple[list[Box3D], np.ndarray]]:
    """Heatmap logits (B, 1, Y, X) and regression (B, REG, Y, X) -> per scene (boxes, scores (N,) float64): the
    3 x 3 local maxima above score_threshold, at most max_objects (the highest), sorted by centre (x, y)."""
    prob = torch.sigmoid(heat.float())
    peaks = (prob == F.max_pool2d(prob, 3, stride=1, padding=1)) & (prob > score_threshold)
    out = []
    for b in range(prob.shape[0]):
        ys, xs = torch.nonzero(peaks[b, 0], as_tuple=True)
        scores = prob[b, 0, ys, xs]
        order = torch.argsort(scores, descending=True)[:max_objects]
        ys, xs, scores = ys[order], xs[order], scores[order]
        r = reg[b, :, ys, xs].float().T.cpu().numpy().astype(np.float64)  # (N, REG)
        boxes = [box_from_regression(r[i], int(xs[i]), int(ys[i]), grid) for i in range(len(r))]
        keep = sorted(range(len(boxes)), key=lambda i: (round(boxes[i].center[0], 6), round(boxes[i].center[1], 6)))
        out.append(([boxes[i] for i in keep], scores.cpu().numpy().astype(np.float64)[keep]))
    return out


def box_from_regression(r: np.ndarray, ix: int, iy: int, grid: VoxelGrid) -> Box3D:
    """One cell's regression r (REG,) at column (ix, iy) -> its Box3D (world frame)."""
    s, lo = grid.voxel_size, grid.lo
    length, w, h = np.exp(np.clip(r[3:6], -3.0, 6.0)) * s
    if length < w:
        length, w = w, length
    cx, cy = lo[0] + (ix + 0.5 + r[0]) * s, lo[1] + (iy + 0.5 + r[1]) * s
    bottom = lo[2] + r[2] * s
    if length / max(w, 1e-9) < SQUARE_RATIO:
        yaw = math.atan2(r[8], r[9]) / 4
    else:
        yaw = math.atan2(r[6], r[7]) / 2
    return Box3D([cx, cy, bottom + h / 2], [length, w, h], yaw)


def canonical(box: Box3D) -> tuple[float, float, float, float]:
    """(l, w, h, yaw) with l >= w and yaw in (-pi/2, pi/2]: the same box (a box equals itself turned by pi)."""
    length, w, h = (float(v) for v in box.size)
    yaw = box.yaw
    if w > length:
        length, w, yaw = w, length, yaw + math.pi / 2
    yaw = math.atan2(math.sin(2 * yaw), math.cos(2 * yaw)) / 2
    return length, w, h, yaw


def gaussian_radius(length: float, width: float, min_overlap: float = 0.1) -> float:
    """The radius (cells) by which a box of length x width cells can move and keep IoU >= min_overlap with itself
    (CornerNet's three cases; the smallest)."""
    a1, b1 = 1.0, length + width
    c1 = width * length * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1 ** 2 - 4 * a1 * c1)) / 2
    a2, b2 = 4.0, 2 * (length + width)
    c2 = (1 - min_overlap) * width * length
    r2 = (b2 + math.sqrt(b2 ** 2 - 4 * a2 * c2)) / 2
    a3, b3 = 4 * min_overlap, -2 * min_overlap * (length + width)
    c3 = (min_overlap - 1) * width * length
    r3 = (b3 + math.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def targets(boxes: list[Box3D], grid: VoxelGrid, min_radius: float = 2.0) -> dict[str, np.ndarray]:
    """Training targets of one scene's true boxes on the grid's columns:
    heat (Y, X) float32 in [0, 1] (a Gaussian per object, 1 at its centre cell), reg (REG, Y, X) float32 and
    weight (Y, X) float32 (> 0 at each object's centre cell and its 8 neighbours, the Gaussian's value there; a cell
    near two objects belongs to the nearer), yaw2_weight (Y, X) float32 (0 for square footprints, whose 2-yaw is
    not defined; 1 for elongated ones)."""
    X, Y, _ = grid.shape
    s, lo = grid.voxel_size, grid.lo
    heat = np.zeros((Y, X), np.float32)
    reg = np.zeros((REG, Y, X), np.float32)
    weight = np.zeros((Y, X), np.float32)
    yaw2 = np.zeros((Y, X), np.float32)
    ys, xs = np.mgrid[0:Y, 0:X]
    for box in boxes:
        u, v = (box.center[0] - lo[0]) / s, (box.center[1] - lo[1]) / s  # continuous column coordinates
        ix, iy = int(math.floor(u)), int(math.floor(v))
        if not (0 <= ix < X and 0 <= iy < Y):
            continue
        length, w, h, yaw = canonical(box)
        sigma = max(gaussian_radius(length / s, w / s), min_radius) / 3
        g = np.exp(-((xs - ix) ** 2 + (ys - iy) ** 2) / (2 * sigma ** 2)).astype(np.float32)
        heat = np.maximum(heat, g)
        elong = float(np.clip((length / max(w, 1e-9) - 1.05) / 0.15, 0.0, 1.0))
        bottom = (box.center[2] - box.size[2] / 2 - lo[2]) / s
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                cx, cy = ix + dx, iy + dy
                if not (0 <= cx < X and 0 <= cy < Y) or g[cy, cx] <= weight[cy, cx]:
                    continue
                weight[cy, cx] = g[cy, cx]
                yaw2[cy, cx] = elong
                reg[:, cy, cx] = (u - (cx + 0.5), v - (cy + 0.5), bottom, math.log(length / s), math.log(w / s),
                                  math.log(max(h, 1e-4) / s), math.sin(2 * yaw), math.cos(2 * yaw),
                                  math.sin(4 * yaw), math.cos(4 * yaw))
    return {"heat": heat, "reg": reg, "weight": weight, "yaw2_weight": yaw2}


def focal_loss(logits: torch.Tensor, heat: torch.Tensor) -> torch.Tensor:
    """Gaussian focal loss (alpha 2, beta 4) of heatmap logits (B, 1, Y, X) against targets heat (B, 1, Y, X), per
    object (normalised by the number of cells where heat == 1)."""
    p = torch.sigmoid(logits.float()).clamp(1e-4, 1 - 1e-4)
    pos = heat >= 1.0 - 1e-6
    pos_loss = -(torch.log(p) * (1 - p) ** 2)[pos].sum()
    neg_loss = -(torch.log(1 - p) * p ** 2 * (1 - heat) ** 4)[~pos].sum()
    return (pos_loss + neg_loss) / pos.sum().clamp(min=1)


def regression_loss(reg: torch.Tensor, t: dict[str, torch.Tensor]) -> torch.Tensor:
    """L1 of the regression (B, REG, Y, X) at the target cells, summed over the channels, weighted by t["weight"]
    (B, Y, X) and normalised by its sum (a weighted mean over the cells); the 2-yaw channels also weighted by
    t["yaw2_weight"]."""
    diff = (reg.float() - t["reg"]).abs()  # (B, REG, Y, X)
    w = t["weight"][:, None]
    per = torch.ones(REG, device=reg.device)[None, :, None, None].expand_as(diff).clone()
    per[:, 6:8] = t["yaw2_weight"][:, None].expand(-1, 2, -1, -1)
    return (diff * w * per).sum() / t["weight"].sum().clamp(min=1.0)


def head_loss(heat_logits: torch.Tensor, reg: torch.Tensor, t: dict[str, torch.Tensor],
              reg_weight: float = 0.5) -> dict[str, torch.Tensor]:
    """The box head's loss terms: heat, reg and total = heat + reg_weight x reg (targets batched from `targets`)."""
    terms = {"heat": focal_loss(heat_logits, t["heat"][:, None]), "reg": regression_loss(reg, t)}
    terms["total"] = terms["heat"] + reg_weight * terms["reg"]
    return terms
