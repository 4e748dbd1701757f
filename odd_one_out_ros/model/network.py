"""OddOneOutNet: the model of the paper as three stages, each built from its own config section (docs/model.md).

    images (B, V, 3, H, W) + cameras
      --scene encoder (model/scene.py; Eq. 1-4)-->  SceneEncoding: the backbone's levels, the volume F_v, density...
      --box estimator (model/estimators.py: "density" = the paper's B, "heatmap" = learned)-->  boxes per scene
      --object scorer (model/scorers.py: "matcher" = Eq. 5-8, "comparison", "comparator")-->  a logit per object

`forward` is the one inspection sequence: the detector node (through model/inference.py Inspector), `evaluate`,
`detect`, `bench`, the cell cache of train-comparator and stage 2 of the trainer run it (the box cache of
train-boxes needs only the first stage, `scene`). The network branches on no
estimator or scorer: each stage is whatever its config names.
Cameras: K (B, V, 3, 3) for the H x W input images, T_cw (B, V, 4, 4) world-to-camera (docs/frames.md).
Images must be undistorted pinhole views, RGB in [0, 1].
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from ..geometry import Box3D
from .config import ModelConfig
from .estimators import SceneBoxes, build_box_estimator
from .losses import LossWeights, feature_loss, image_loss, occupancy_loss, weighted_bce
from .scene import SceneEncoder, SceneEncoding
from .scorers import ObjectScorer, build_scorer

STAGES = ("volume", "boxes", "prior", "classify")
"""the steps of an inspection `Inspection.seconds` times: the scene encoding, the box estimator, the scorer's inputs
(ObjectScorer.prepare: the comparison's maps, scores or cells) and the scorer itself"""


@dataclass
class Inspection:
    """What `OddOneOutNet.forward` returns for B scenes.

    found: per scene the box estimator's boxes and scores (the given boxes with score 1.0 when boxes were given);
    boxes: per scene the boxes scored (found's, or what `select` chose); logits: per scene (N_b,) for `boxes`
    (None when not scored); raw: the training-free comparison's raw scores of `boxes` per scene (N_b,) float64 (None
    for a scorer that runs none); encoding: the scene encoding; seconds: the time of each of STAGES run."""

    found: list[SceneBoxes]
    boxes: list[list[Box3D]]
    logits: list[torch.Tensor] | None
    raw: list[np.ndarray] | None
    encoding: SceneEncoding
    seconds: dict[str, float] = field(default_factory=dict)


class OddOneOutNet(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self._cfg = cfg
        self.scene = SceneEncoder(cfg)
        self.boxes = build_box_estimator(cfg, self.scene.grid)
        self.scorer = build_scorer(cfg, self.scene.feature_channels)

    @property
    def cfg(self) -> ModelConfig:
        return self._cfg

    @cfg.setter
    def cfg(self, cfg: ModelConfig) -> None:
        """A new config for the same network: only settings nothing is built from may change (the density
        estimator's, the heatmap's score threshold and refine passes: tune-boxes; the anomaly threshold); the box
        estimator reads them from here. Another network (estimator, scorer, sizes) is made by
        model/checkpoint.py with_parts."""
        old = self._cfg
        same = (cfg.changed("", anomaly_threshold=old.anomaly_threshold).changed("boxes", density=old.boxes.density)
                .changed("boxes.heatmap", score_threshold=old.boxes.heatmap.score_threshold,
                         refine_passes=old.boxes.heatmap.refine_passes))
        if same != old:
            raise ValueError("this config builds another network: make it with model.checkpoint.with_parts")
        self._cfg = cfg
        self.boxes.cfg = cfg.boxes

    @property
    def grid(self):
        return self.scene.grid

    def forward(self, images: torch.Tensor, K: torch.Tensor, T_cw: torch.Tensor,
                boxes: list[list[Box3D]] | None = None, count: int | None = None, *,
                encoding: SceneEncoding | None = None, select: Callable | None = None,
                score: bool = True, scorer: ObjectScorer | None = None, timed: bool = False) -> Inspection:
        """The inspection sequence: encode (or take `encoding`, e.g. training's full volume from cached levels), find
        the boxes (or take the given `boxes`, world frame, per scene; `count`: the true number of objects where a
        protocol gives it), `select(b, found_b) -> boxes` to score instead (training: matched to the truth; the
        bench: a given number), then score them unless `score` is False, with the model's scorer or `scorer`
        (training: stage 2's auxiliary matcher). Gradients flow where the caller enables them (the scene encoder
        and the scorer's forward; boxes and the comparison never take gradients). `timed`: each stage waits for its
        GPU work before its time is taken (the bench; otherwise the seconds of a GPU inspection are launch times)."""
        clock = _StageClock(images.is_cuda and timed)
        enc = self.scene(images, K, T_cw) if encoding is None else encoding
        clock.lap("volume")
        if boxes is None:
            found = self.boxes(enc.volume, count)
            clock.lap("boxes")
        else:
            found = [SceneBoxes(list(bs), np.ones(len(bs))) for bs in boxes]
        chosen = [f.boxes if select is None else select(b, f) for b, f in enumerate(found)]
        if not score:
            return Inspection(found, chosen, None, None, enc, clock.seconds)
        scorer = self.scorer if scorer is None else scorer
        inputs = scorer.prepare(enc, chosen)
        clock.lap("prior")
        scores = scorer(inputs)
        clock.lap("classify")
        return Inspection(found, chosen, scores.logits, scores.raw, enc, clock.seconds)

    # ------------------------------------------------------------------ training
    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """The trainable parameters (requires_grad) by optimiser group, each parameter in one group, in the order of
        the optimiser's groups (resume files keep its state by group index): "backbone" (the pretrained 2D backbone;
        empty when frozen), "network" (all else) and, only when there are trainable ones, "prior" (the scalars that
        scale and shift the comparison's z-score in a scorer, prior_scale / prior_shift)."""
        backbone = [p for p in self.scene.encoder.backbone.parameters() if p.requires_grad]
        prior = [p for n, p in self.scorer.named_parameters() if p.requires_grad and n.split(".")[-1] in PRIOR_SCALARS]
        ids = {id(p) for p in backbone + prior}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
        groups = {"backbone": backbone, "network": rest}
        if prior:
            groups["prior"] = prior
        return groups

    def get_loss_dict(self, vol, outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
                      weights: LossWeights) -> dict[str, torch.Tensor]:
        """The loss terms of a training scene (model/losses.py; docs/training.md).

        vol: the full scene volume of the input views. outputs: SceneEncoder.render of the target views at P pixels
        (Pf for the features): rgb (B, V, 3, P), opacity (B, V, 1, P), when distilling feat (B, V, d_f, Pf); and for
        the BCE logits (N,) of the scene's objects (the scorer's). targets at the same pixels: rgb (B, V, 3, P) and
        mask (B, V, 1, P) in [0, 1]; for the feature term teacher feat (B, V, d_f, Pf) and feat_weights (B, V, 1,
        Pf); for the occupancy term (weights.occupancy > 0) occupancy (B, Z, Y, X) in [0, 1]; with logits labels
        (N,), 1 = anomalous.
        Returns image, feature (when outputs and targets have feat), occupancy (weights.occupancy > 0), bce (with
        logits) and total: the reconstruction image + feature x feature + occupancy x occupancy, or with logits
        bce + reconstruction_stage2 x reconstruction.
        """
        w = weights
        terms = {"image": image_loss(outputs["rgb"], outputs["opacity"], targets["rgb"], targets["mask"], w.sigma)}
        if "feat" in outputs and "feat" in targets:
            terms["feature"] = feature_loss(outputs["feat"], targets["feat"], targets["feat_weights"])
        if w.occupancy > 0:
            terms["occupancy"] = occupancy_loss(vol.density, targets["occupancy"], self.grid.voxel_size)
        recon = terms["image"] + w.feature * terms.get("feature", 0.0) + w.occupancy * terms.get("occupancy", 0.0)
        if "logits" not in outputs:
            terms["total"] = recon
            return terms
        terms["bce"] = weighted_bce(outputs["logits"], targets["labels"])
        terms["total"] = terms["bce"] + w.reconstruction_stage2 * recon
        return terms


PRIOR_SCALARS = ("prior_scale", "prior_shift")


class _StageClock:
    """Seconds of each inspection step (with sync, on a GPU, each step's kernels finish before its time is taken)."""

    def __init__(self, sync: bool):
        self.cuda = sync
        self.seconds: dict[str, float] = {}
        self._sync()
        self.t = time.perf_counter()

    def _sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def lap(self, name: str) -> None:
        self._sync()
        t = time.perf_counter()
        self.seconds[name] = t - self.t
        self.t = t
