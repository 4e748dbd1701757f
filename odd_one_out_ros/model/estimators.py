"""Stage 2 of the model, the box estimator: the scene volume -> each scene's boxes (world frame) and their scores.

Interface (`BoxEstimator`): `evidence(volume)` -> per scene what the boxes are decoded from (independent of the
settings tune-boxes tunes), `decode(evidence, cfg, count)` -> `SceneBoxes`, and `forward(volume, count)` = both
with the model's own settings. `tuning_grid()` lists the settings `odd-one-out tune-boxes` tries, in the config
section `section`. Estimators (ESTIMATORS, named by BoxConfig.estimator):
- "density": the paper's estimator B, density threshold + DBSCAN (model/box_estimator.py; BoxConfig.density); it
  has no confidence: every score is 1.0;
- "heatmap": the learned bird's-eye-view centre heatmap and its optional box refiner (model/box_head.py;
  BoxConfig.heatmap); a box's score is its heatmap probability.
count: the number of objects when a protocol gives it (the reference code's test protocol): the `count` highest
peaks whatever their score, or the `count` largest clusters (fewer where DBSCAN finds fewer).
Adding an estimator: a subclass here, its entry in ESTIMATORS, its name in config.BOX_ESTIMATORS and its settings
section in BoxConfig (docs/model.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
from torch.autograd.profiler import record_function

from ..geometry import Box3D, boxes_from_tensor, boxes_to_tensor
from .box_estimator import estimate_boxes
from .box_head import BoxHead, BoxRefiner, apply_residuals, decode, refine_regions
from .config import BoxConfig, ModelConfig
from .volume import SceneVolume, VoxelGrid


@dataclass
class SceneBoxes:
    """One scene's boxes (world frame), sorted by centre (x, then y), and their scores (N,) float64 in [0, 1]."""

    boxes: list[Box3D]
    scores: np.ndarray


def sorted_by_centre(boxes: list[Box3D], scores: np.ndarray) -> SceneBoxes:
    """Boxes and their scores ordered by centre (x, then y), the order every estimator returns."""
    order = sorted(range(len(boxes)), key=lambda i: (round(boxes[i].center[0], 6), round(boxes[i].center[1], 6)))
    return SceneBoxes([boxes[i] for i in order], np.asarray(scores, np.float64)[order])


class BoxEstimator(nn.Module):
    """volume -> boxes per scene (module docstring)."""

    section = "boxes"
    """the config section of the settings `tuning_grid` changes"""
    tuning_tolerance = 1.0
    """tune-boxes takes the fewest unmatched boxes among the settings within this many points of the best recall"""

    def __init__(self, cfg: ModelConfig, grid: VoxelGrid):
        super().__init__()
        self.cfg, self.grid = cfg.boxes, grid

    def evidence(self, vol: SceneVolume) -> list:
        raise NotImplementedError

    def decode(self, evidence, cfg: BoxConfig, count: int | None = None) -> SceneBoxes:
        raise NotImplementedError

    def tuning_grid(self) -> list[dict]:
        """The settings tune-boxes tries: field values of `section`."""
        raise NotImplementedError

    @torch.no_grad()
    def forward(self, vol: SceneVolume, count: int | None = None) -> list[SceneBoxes]:
        with record_function("boxes"):
            return [self.decode(e, self.cfg, count) for e in self.evidence(vol)]


class DensityBoxes(BoxEstimator):
    section = "boxes.density"
    tuning_tolerance = 2.0

    def evidence(self, vol: SceneVolume) -> list[np.ndarray]:
        """Per scene the density (Z, Y, X) in 1/m."""
        return list(vol.density[:, 0].float().cpu().numpy())

    def decode(self, evidence: np.ndarray, cfg: BoxConfig, count: int | None = None) -> SceneBoxes:
        found = estimate_boxes(evidence, self.grid, cfg.density, cfg.max_objects if count is None else int(count))
        return SceneBoxes(found, np.ones(len(found)))

    def tuning_grid(self) -> list[dict]:
        return [{"occupancy_threshold": c, "soft_height": soft} for c in (0.02, 0.03, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5)
                for soft in (False, True)]


class HeatmapBoxes(BoxEstimator):
    section = "boxes.heatmap"

    def __init__(self, cfg: ModelConfig, grid: VoxelGrid):
        super().__init__(cfg, grid)
        h = cfg.boxes.heatmap
        self.head = BoxHead(cfg.volume_channels, grid, h)
        self.refiner = BoxRefiner(cfg.volume_channels, h) if h.refine else None

    def evidence(self, vol: SceneVolume) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per scene (x (1, c + 2, Z, Y, X) = BoxHead.inputs, heatmap logits (1, 1, Y, X), regression
        (1, REG, Y, X))."""
        x = BoxHead.inputs(vol, self.grid.voxel_size)
        heat, reg = self.head(x)
        return [(x[b:b + 1], heat[b:b + 1], reg[b:b + 1]) for b in range(x.shape[0])]

    def decode(self, evidence, cfg: BoxConfig, count: int | None = None) -> SceneBoxes:
        """The peaks above cfg.heatmap.score_threshold (all peaks with count), at most max_objects (count), refined
        by the box refiner (refine_passes times) when there is one."""
        x, heat, reg = evidence
        threshold, n = (cfg.heatmap.score_threshold, cfg.max_objects) if count is None else (0.0, int(count))
        boxes, scores = decode(heat, reg, self.grid, threshold, n)[0]
        return self.refine(x, boxes, scores, cfg.heatmap.refine_passes)

    @torch.no_grad()
    def refine(self, x: torch.Tensor, boxes: list[Box3D], scores: np.ndarray, passes: int) -> SceneBoxes:
        """One scene's boxes corrected by the box refiner `passes` times (as they are without one); x (1, c + 2, Z, Y,
        X) = BoxHead.inputs."""
        if self.refiner is None or not boxes:
            return SceneBoxes(boxes, scores)
        t = boxes_to_tensor(boxes, x.device, x.dtype)
        r = self.cfg.heatmap.refine_size
        for _ in range(passes):
            t = apply_residuals(t, self.refiner(refine_regions(x, t, self.grid, r), t))
        return sorted_by_centre(boxes_from_tensor(t), scores)

    def tuning_grid(self) -> list[dict]:
        return [{"score_threshold": c} for c in (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6)]


ESTIMATORS = {"density": DensityBoxes, "heatmap": HeatmapBoxes}


def build_box_estimator(cfg: ModelConfig, grid: VoxelGrid) -> BoxEstimator:
    """The estimator cfg.boxes.estimator names."""
    return ESTIMATORS[cfg.boxes.estimator](cfg, grid)

