"""Stage 3 of the model, the object scorer: the scene encoding and each scene's boxes -> one anomaly logit per box.

Interface (`ObjectScorer`): `prepare(encoding, boxes)` -> `ScorerInputs` (what the scorer reads: the comparison's
scores or cells; no gradients), then `forward(inputs)` -> `Scores` (logits per scene and, where the scorer runs the
training-free comparison, its raw scores). `end_to_end`: stage 2 of the trainer can train it through the volume.
Scorers (SCORERS, named by ScorerConfig.kind):
- "matcher": the paper's cross-instance matcher on RoI-pooled object volumes (model/matcher.py, Eq. 5-8), with
  `matcher.prior` the training-free comparison's robust z-score added to its logit;
- "comparison": the training-free comparison alone (model/comparison.py): logit = (robust z - z0) / slope, so
  its probability is the baseline's calibrated score (model/baseline.py calibrate) for 3 or more boxes (with
  fewer, z is 0: sigmoid(-z0 / slope), where calibrate says 0.5 for two boxes and 0 for one);
- "comparator": the learned comparator on the comparison's cells (model/comparator.py; the shipped model).
Adding a scorer: a subclass here, its entry in SCORERS, its name in config.SCORERS and, if it has settings, a
section in ScorerConfig (docs/model.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
from torch.autograd.profiler import record_function

from ..geometry import Box3D, boxes_to_tensor
from .baseline import robust_z
from .comparator import CellComparator
from .comparison import Comparison
from .config import ModelConfig
from .matcher import CrossInstanceMatcher, roi_points, roi_pool
from .scene import SceneEncoding


@dataclass
class ScorerInputs:
    """What a scorer reads for each scene's boxes: the encoding, the boxes (world frame) and, by scorer, the
    comparison's raw scores (N_b,) float64 and robust z-scores (N_b,) float32, or its cells ((N_b, P, C), (N_b, P))."""

    encoding: SceneEncoding
    boxes: list[list[Box3D]]
    raw: list[np.ndarray] | None = None
    prior: list[torch.Tensor] | None = None
    cells: list[tuple[torch.Tensor, torch.Tensor]] | None = None


@dataclass
class Scores:
    """logits: per scene (N_b,) anomaly logits; raw: the training-free comparison's raw scores of the same boxes per
    scene (N_b,) float64 (None for a scorer that runs no comparison)."""

    logits: list[torch.Tensor]
    raw: list[np.ndarray] | None


class ObjectScorer(nn.Module):
    """(encoding, boxes) -> Scores (module docstring)."""

    end_to_end = False
    comparison: Comparison | None = None
    """the training-free comparison the scorer runs (None: none)"""

    def prepare(self, enc: SceneEncoding, boxes: list[list[Box3D]]) -> ScorerInputs:
        raise NotImplementedError

    def forward(self, inputs: ScorerInputs) -> Scores:
        raise NotImplementedError


class MatcherScorer(ObjectScorer):
    """The paper's volume matcher; with matcher.prior the comparison's robust z-scores are added (MatcherConfig)."""

    end_to_end = True

    def __init__(self, cfg: ModelConfig, feature_channels: int):
        super().__init__()
        self.m = cfg.scorer.matcher
        self.teacher_dim = feature_channels
        self.matcher = CrossInstanceMatcher(cfg, cfg.volume_channels + 1 + feature_channels)
        self.comparison = Comparison(cfg.scorer.comparison) if self.m.prior else None

    def prepare(self, enc: SceneEncoding, boxes: list[list[Box3D]]) -> ScorerInputs:
        if self.comparison is None:
            return ScorerInputs(enc, boxes)
        raw = self.comparison.raw_scores(enc, boxes)
        return ScorerInputs(enc, boxes, raw, self.comparison.z_scores(raw, enc.images.device))

    def forward(self, inputs: ScorerInputs) -> Scores:
        with record_function("classify"):
            enc, logits = inputs.encoding, []
            for b, bs in enumerate(inputs.boxes):
                if not bs:
                    logits.append(enc.volume.fv.new_zeros(0))
                    continue
                z, beta = self.object_volumes(enc, b, boxes_to_tensor(bs, enc.images.device).to(enc.volume.fv.dtype))
                logits.append(self.matcher(z, beta, inputs.prior[b] if inputs.prior is not None else None))
            return Scores(logits, inputs.raw)

    def object_volumes(self, enc: SceneEncoding, b: int, boxes: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Scene b's objects: boxes (N, 7) -> z (N, c + 1 [+ d_f], r, r, r) and beta(z) tokens (N, r^3, d_f) or None.
        A volume built inspect_only has no feat: V_f is then computed only at the voxels pooled (the same values)."""
        vol, grid = enc.volume, enc.encoder.grid
        margin = self.m.roi_margin * grid.voxel_size
        parts = [vol.fv[b:b + 1], vol.density[b:b + 1]]
        feat = vol.feat[b:b + 1] if vol.feat is not None else None
        if feat is None and self.teacher_dim:
            pts = roi_points(boxes, self.m.roi_size, margin).reshape(-1, 3)
            feat = enc.encoder.feature_field_near(vol.fv[b:b + 1], pts)
        if feat is not None:
            parts.append(feat)
        z = roi_pool(torch.cat(parts, dim=1), boxes, grid, self.m.roi_size, margin)
        # beta(z_n) of Eq. 5 = the distilled feature field sampled in the object volume
        beta = z[:, -self.teacher_dim:].flatten(2).transpose(1, 2) if feat is not None else None
        return z, beta


class ComparisonScorer(ObjectScorer):
    """The training-free comparison alone: logit = (robust z - z0) / slope (its calibration, BaselineConfig)."""

    def __init__(self, cfg: ModelConfig, feature_channels: int):
        super().__init__()
        self.comparison = Comparison(cfg.scorer.comparison)

    def prepare(self, enc: SceneEncoding, boxes: list[list[Box3D]]) -> ScorerInputs:
        return ScorerInputs(enc, boxes, raw=self.comparison.raw_scores(enc, boxes))

    def forward(self, inputs: ScorerInputs) -> Scores:
        bc = self.comparison.baseline_cfg
        logits = [torch.from_numpy((robust_z(r, bc) - bc.z0) / bc.slope).to(inputs.encoding.images.device,
                                                                             torch.float32) for r in inputs.raw]
        return Scores(logits, inputs.raw)


class ComparatorScorer(ObjectScorer):
    """The learned comparator on the comparison's cells (ComparatorConfig)."""

    def __init__(self, cfg: ModelConfig, feature_channels: int):
        super().__init__()
        from .teacher import MobileNetTeacher

        c = cfg.scorer.comparator
        self.comparison = Comparison(cfg.scorer.comparison)
        bc = self.comparison.baseline_cfg
        self.comparator = CellComparator(MobileNetTeacher.dim, cfg.scorer.comparison.grid, c.dim, c.hidden,
                                         bc.mad_floor, bc.z0)

    def prepare(self, enc: SceneEncoding, boxes: list[list[Box3D]]) -> ScorerInputs:
        return ScorerInputs(enc, boxes, cells=self.comparison.cells(enc, boxes))

    def forward(self, inputs: ScorerInputs) -> Scores:
        with record_function("compare"):
            raws, logits = [], []
            device = inputs.encoding.images.device
            for cells, valid in inputs.cells:
                if cells.shape[0] == 0:
                    raws.append(np.zeros(0))
                    logits.append(torch.zeros(0, device=device))
                    continue
                logit, raw = self.comparator(cells, valid)
                raws.append(raw.double().numpy())
                logits.append(logit.to(device))
            return Scores(logits, raws)


SCORERS = {"matcher": MatcherScorer, "comparison": ComparisonScorer, "comparator": ComparatorScorer}


def build_scorer(cfg: ModelConfig, feature_channels: int) -> ObjectScorer:
    """The scorer cfg.scorer.kind names; feature_channels: d_f of the scene encoder's V_f (0 without)."""
    return SCORERS[cfg.scorer.kind](cfg, feature_channels)
