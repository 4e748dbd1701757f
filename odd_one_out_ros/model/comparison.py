"""The training-free comparison of an inspection's boxes (ComparisonConfig; the numbers in model/baseline.py).

Frozen 2D feature maps of the input views ("teacher": a separate ImageNet MobileNetV2 on the images at 2x; "trunk":
the encoder's own backbone levels of the inspection's one backbone pass) are lifted into a G^3 grid of cells per
box (`cells`) and each object is scored by how far its cells lie from their best match in the other instances
(`raw_scores`), then by its robust z-score among the scene's boxes (`z_scores`). Used by the scorers "comparison"
(alone), "matcher" (its `prior`) and "comparator" (its cells). No trainable weights: the extractor is kept out of
every state_dict.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.autograd.profiler import record_function

from ..geometry import Box3D
from .baseline import BaselineConfig, baseline_scores, cell_features, default_extractor, extract, robust_z
from .config import ComparisonConfig, prior_level_groups
from .scene import SceneEncoding


class Comparison:
    def __init__(self, cfg: ComparisonConfig):
        self.cfg = cfg
        self.trunk = cfg.features == "trunk"
        self.groups = prior_level_groups(cfg.levels)
        # in trunk mode the maps are the backbone's (BaselineConfig.scales unused)
        self.baseline_cfg = BaselineConfig(grid=cfg.grid, scales=(1.0,) if self.trunk else (2.0,))
        self._extractor = None  # frozen weights from a package, built on first use

    def extractor(self, device: torch.device):
        """The frozen 2D features of features "teacher" (the offline ImageNet MobileNetV2), built on first use."""
        if self._extractor is None:
            self._extractor = default_extractor(device)
        return self._extractor.to(device)

    @torch.no_grad()
    def maps(self, enc: SceneEncoding) -> list[list[torch.Tensor]]:
        """The comparison's frozen 2D feature maps of the encoding's images (B, V, 3, H, W) -> per scene one
        (V, C, h, w) map per scale ("teacher") or per group of `levels` ("trunk", from the encoding's levels); the
        encoding's own `maps` when it has them."""
        if enc.maps is not None:
            return enc.maps
        B, V = enc.images.shape[:2]
        if self.trunk:
            maps = self.trunk_maps(enc.levels, enc.level_strides)
        else:
            maps = extract(self.extractor(enc.images.device), enc.images.flatten(0, 1), self.baseline_cfg.scales)
        return [[mp[b * V:(b + 1) * V] for mp in maps] for b in range(B)]

    def trunk_maps(self, levels: list[torch.Tensor], strides: tuple[int, ...]) -> list[torch.Tensor]:
        """Backbone levels of N images (finest first, at `strides`) -> the comparison's maps, one (N, C, h, w) float32
        per group of `levels` (strides of a group joined at the finest: the coarser ones upsampled bilinearly, as the
        MobileNetV2 teacher joins its strides 8 and 16)."""
        by_stride = dict(zip(strides, levels))
        out = []
        for group in self.groups:
            maps = [by_stride[st].float() for st in group]
            hw = maps[0].shape[-2:]
            maps = [mp if mp.shape[-2:] == hw else F.interpolate(mp, size=hw, mode="bilinear", align_corners=False)
                    for mp in maps]
            out.append(torch.cat(maps, dim=1).contiguous())
        return out

    @torch.no_grad()
    def raw_scores(self, enc: SceneEncoding, boxes: list[list[Box3D]]) -> list[np.ndarray]:
        """Raw scores per scene (N_b,) float64, higher = more anomalous (model/baseline.py baseline_scores on
        `maps`)."""
        with record_function("prior"):
            maps = self.maps(enc)
            return [baseline_scores(enc.images[b], enc.K[b], enc.T_cw[b], bs, None, self.baseline_cfg, maps[b])
                    for b, bs in enumerate(boxes)]

    def z_scores(self, raw: list[np.ndarray], device: torch.device) -> list[torch.Tensor]:
        """Raw scores per scene -> robust z-scores per scene (N_b,) float32 on device."""
        return [torch.from_numpy(robust_z(r, self.baseline_cfg)).to(device, torch.float32) for r in raw]

    @torch.no_grad()
    def cells(self, enc: SceneEncoding, boxes: list[list[Box3D]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The cells of each scene's boxes (the first of `maps`): per scene (cells (N_b, P, C) float32, valid (N_b, P)
        bool) on the CPU, P = grid^3 (model/baseline.py cell_features)."""
        with record_function("prior"):
            maps = self.maps(enc)
            P, out = self.cfg.grid ** 3, []
            for b, bs in enumerate(boxes):
                if not bs:
                    out.append((torch.zeros(0, P, maps[b][0].shape[1]), torch.zeros(0, P, dtype=torch.bool)))
                    continue
                cells, valid = cell_features([m.float().cpu() for m in maps[b]], enc.K[b], enc.T_cw[b],
                                             tuple(enc.images.shape[-2:]), bs, self.baseline_cfg)
                out.append((cells[0], valid))
            return out
