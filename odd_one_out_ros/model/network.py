"""OddOneOutNet: the full model of the paper, composed of the small modules of this package.

    images (B, V, 3, H, W) + cameras  --E_2D-->  features (B, V, d, H/s, W/s)
      --back-projection (mean over views)-->  (B, d, Z, Y, X) + seen mask
      --E_3D-->  F_v (B, c, Z, Y, X)  --heads-->  density (B, 1, ...), colour (B, 3, ...), V_f = beta(F_v)
      --renderer-->  RGB, mask, features at any camera (training)
      --box estimator (the learned heatmap head, or density threshold + DBSCAN)-->  boxes per scene
      --RoI pooling-->  z (N, c + d_f + 1, r, r, r)
      --cross-instance matching-->  one anomaly logit per object
      (+ with matcher.prior: the training-free comparison of the boxes' frozen 2D features, model/baseline.py;
         with matcher.prior_features "trunk" those are the backbone levels of the same pass: one pass per image)

Cameras: K (B, V, 3, 3) for the H x W input images, T_cw (B, V, 4, 4) world-to-camera (docs/frames.md).
Images must be undistorted pinhole views, RGB in [0, 1].
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.profiler import record_function

from ..geometry import Box3D, boxes_from_tensor, boxes_to_tensor, scale_intrinsics
from .baseline import BaselineConfig, baseline_scores, cell_features, default_extractor, extract, robust_z
from .box_estimator import estimate_boxes
from .box_head import BoxHead, BoxRefiner, apply_residuals, decode, refine_regions
from .comparator import CellComparator
from .config import BoxConfig, ModelConfig, prior_level_groups
from .encoder2d import FPNEncoder
from .heads import ColourHead, DensityHead, Projector
from .losses import LossWeights, feature_loss, image_loss, occupancy_loss, weighted_bce
from .matcher import CrossInstanceMatcher, roi_points, roi_pool
from .renderer import VolumeRenderer
from .unet3d import UNet3D
from .volume import SceneVolume, VoxelGrid, backproject


class OddOneOutNet(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.grid = VoxelGrid.from_config(cfg.grid)
        d, c = cfg.encoder.out_channels, cfg.volume_channels
        self.encoder = FPNEncoder(cfg.encoder)
        self.unet = UNet3D(d, c, cfg.unet_channels, cfg.unet_blocks)
        self.density_head = DensityHead(c)
        self.colour_head = ColourHead(c)
        self.projector = Projector(c, cfg.teacher_dim) if cfg.distill else None
        self.renderer = VolumeRenderer(self.grid, cfg.render.n_samples)
        obj_channels = c + 1 + (cfg.teacher_dim if cfg.distill else 0)
        self.matcher = CrossInstanceMatcher(cfg, obj_channels)
        heatmap = cfg.boxes.estimator == "heatmap"
        self.box_head = BoxHead(c, self.grid, cfg.boxes) if heatmap else None
        self.box_refiner = BoxRefiner(c, cfg.boxes) if heatmap and cfg.boxes.refine else None
        m = cfg.matcher
        self.prior_trunk = m.prior_features == "trunk"
        self.prior_groups = prior_level_groups(m.prior_levels)
        # the comparison's settings; in trunk mode its maps are the backbone's (BaselineConfig.scales unused)
        self.prior_cfg = BaselineConfig(grid=m.prior_grid, scales=(1.0,) if self.prior_trunk else (2.0,))
        self.comparator = None
        if m.comparator:
            from .teacher import MobileNetTeacher

            self.comparator = CellComparator(MobileNetTeacher.dim, m.prior_grid, m.comparator_dim,
                                             m.comparator_hidden, self.prior_cfg.mad_floor, self.prior_cfg.z0)
        self._frozen: dict = {}  # the prior's extractor: frozen weights from a package, kept out of state_dict

    # ------------------------------------------------------------------ 3D scene volume
    def build_volume(self, images: torch.Tensor, K: torch.Tensor, T_cw: torch.Tensor,
                     levels: list[torch.Tensor] | None = None, inspect_only: bool = False) -> SceneVolume:
        """images (B, V, 3, H, W), K (B, V, 3, 3), T_cw (B, V, 4, 4) -> the scene volume: fv (B, c, Z, Y, X),
        density (B, 1, ...), colour (B, 3, ...), seen (B, 1, ...) and, when distilling, feat (B, d_f, ...).
        levels: the 2D backbone's levels of the B*V images (encoder.backbone_levels, e.g. cached for a frozen
        backbone), so that only the feature pyramid runs. inspect_only: only what an inspection reads (colour
        and feat None; object_volumes then computes V_f at the voxels it pools)."""
        B, V, _, H, W = images.shape
        with record_function("encoder"):
            feats = self.encoder(images.flatten(0, 1), levels)  # (B*V, d, h, w)
        h, w = feats.shape[-2:]
        feats = feats.reshape(B, V, *feats.shape[1:])
        K_feat = scale_intrinsics(K, w / W, h / H)
        with record_function("backproject"):
            volume, count = backproject(feats, K_feat, T_cw, self.grid)
            seen = (count > 0).to(volume.dtype)
        with record_function("unet3d"):
            fv = self.unet(volume * seen, seen)
        with record_function("heads"):
            if inspect_only:
                return SceneVolume(fv, self.density_head(fv), None, seen, None)
            return SceneVolume(fv, self.density_head(fv), self.colour_head(fv), seen,
                               self.projector(fv) if self.projector is not None else None)

    def render(self, vol: SceneVolume, K: torch.Tensor, T_cw: torch.Tensor, image_hw: tuple[int, int],
               stratified: bool = False, pixels: torch.Tensor | None = None,
               feature_pixels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Render the volume at target cameras (K for image_hw images).

        Returns rgb (B, V, 3, r, r), opacity (B, V, 1, r, r), depth (B, V, 1, r, r) at r = render.rgb_size and,
        when distilling, feat (B, V, d_f, f, f) at f = render.feature_size, rendered with detached density.
        pixels (B, V, P) long: render only these pixels of the r x r image (row-major indices v * r + u); rgb,
        opacity and depth are then (B, V, C, P). feature_pixels (B, V, Pf): the same for the f x f features.
        """
        with record_function("render"):
            return self._render(vol, K, T_cw, image_hw, stratified, pixels, feature_pixels)

    def _render(self, vol, K, T_cw, image_hw, stratified, pixels, feature_pixels):
        H, W = image_hw
        rc = self.cfg.render
        r = rc.rgb_size
        out = self.renderer(vol.density, vol.colour, scale_intrinsics(K, r / W, r / H), T_cw, r, r, stratified,
                            pixels=pixels)
        result = {"rgb": out["fields"], "opacity": out["opacity"], "depth": out["depth"]}
        if vol.feat is not None:
            f = rc.feature_size
            fo = self.renderer(vol.density, vol.feat, scale_intrinsics(K, f / W, f / H), T_cw, f, f, stratified,
                               detach_density=True, pixels=feature_pixels)
            result["feat"] = fo["fields"]
        return result

    # ------------------------------------------------------------------ objects
    @torch.no_grad()
    def estimate_boxes(self, vol: SceneVolume) -> list[list[Box3D]]:
        """Boxes per scene of the batch (`detect_boxes` without the scores)."""
        return [boxes for boxes, _ in self.detect_boxes(vol)]

    @torch.no_grad()
    def detect_boxes(self, vol: SceneVolume, count: int | None = None) -> list[tuple[list[Box3D], np.ndarray]]:
        """Per scene of the batch: its boxes (world frame) and their scores (N,) float64 in [0, 1], by
        cfg.boxes.estimator: "heatmap" = the learned head's peaks and their heatmap probability; "density" = the
        paper's estimator B (density threshold + DBSCAN), which has no confidence: every score 1.0. count: the
        number of objects when it is known (the reference code's test protocol): the `count` highest peaks whatever
        their score, or the `count` largest clusters (fewer where DBSCAN finds fewer)."""
        bcfg = self.cfg.boxes if count is None else dataclasses.replace(self.cfg.boxes, score_threshold=0.0,
                                                                         max_objects=int(count))
        with record_function("boxes"):
            if self.box_head is not None:
                x = BoxHead.inputs(vol, self.grid.voxel_size)
                return self.head_boxes(x, self.box_head(x), bcfg)
            dens = vol.density[:, 0].float().cpu().numpy()
            found = [estimate_boxes(d, self.grid, bcfg) for d in dens]
            return [(bs, np.ones(len(bs))) for bs in found]

    @torch.no_grad()
    def head_boxes(self, x: torch.Tensor, head_out: tuple[torch.Tensor, torch.Tensor], bcfg: BoxConfig
                   ) -> list[tuple[list[Box3D], np.ndarray]]:
        """The learned head's boxes and scores per scene: x (B, c + 2, Z, Y, X) = BoxHead.inputs, head_out = the
        head's (heatmap logits, regression) on x, decoded under bcfg (its score threshold) and refined by the box
        refiner when there is one (`refine_boxes`)."""
        found = decode(*head_out, self.grid, bcfg)
        return found if self.box_refiner is None else [self.refine_boxes(x[b:b + 1], *f) for b, f in enumerate(found)]

    @torch.no_grad()
    def refine_boxes(self, x: torch.Tensor, boxes: list[Box3D], scores: np.ndarray
                     ) -> tuple[list[Box3D], np.ndarray]:
        """One scene's boxes and scores (N,) corrected by the box refiner (BoxConfig.refine, refine_passes times), x
        (1, c + 2, Z, Y, X) = BoxHead.inputs; returned sorted by centre (x, then y) as the estimators return them."""
        if not boxes:
            return boxes, scores
        t = boxes_to_tensor(boxes, x.device, x.dtype)
        for _ in range(self.cfg.boxes.refine_passes):
            t = apply_residuals(t, self.box_refiner(refine_regions(x, t, self.grid, self.cfg.boxes.refine_size), t))
        refined = boxes_from_tensor(t)
        order = sorted(range(len(refined)), key=lambda i: (round(refined[i].center[0], 6),
                                                           round(refined[i].center[1], 6)))
        return [refined[i] for i in order], scores[order]

    def object_volumes(self, vol: SceneVolume, b: int, boxes: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Scene b's objects: boxes (N, 7) -> z (N, c + 1 [+ d_f], r, r, r) and beta(z) tokens (N, r^3, d_f) or None.
        A volume built inspect_only has no feat: V_f is then computed only at the voxels pooled (the same values)."""
        m = self.cfg.matcher
        margin = m.roi_margin * self.grid.voxel_size
        parts = [vol.fv[b:b + 1], vol.density[b:b + 1]]
        feat = vol.feat[b:b + 1] if vol.feat is not None else None
        if feat is None and self.projector is not None:
            feat = self._feature_field_near(vol.fv[b:b + 1], boxes, margin)
        if feat is not None:
            parts.append(feat)
        z = roi_pool(torch.cat(parts, dim=1), boxes, self.grid, m.roi_size, margin)
        beta = None
        if feat is not None:
            # beta(z_n) of Eq. 5 = the distilled feature field sampled in the object volume
            beta = z[:, -self.cfg.teacher_dim:].flatten(2).transpose(1, 2)
        return z, beta

    def _feature_field_near(self, fv: torch.Tensor, boxes: torch.Tensor, margin: float) -> torch.Tensor:
        """V_f = beta(F_v) of one scene, fv (1, c, Z, Y, X), at the voxels that RoI pooling of boxes (N, 7) reads (the
        8 corners of each sample point's trilinear cell) and 0 elsewhere: (1, d_f, Z, Y, X). roi_pool of it equals
        roi_pool of the whole field; beta runs on a few thousand voxels instead of all."""
        Z, Y, X = fv.shape[-3:]
        pts = roi_points(boxes, self.cfg.matcher.roi_size, margin).reshape(-1, 3)
        lo = torch.as_tensor(self.grid.lo, dtype=pts.dtype, device=pts.device)
        # grid_sample (align_corners=False) reads voxels floor(i) and floor(i) + 1 at index i = position / voxel - 0.5
        base = ((pts - lo) / self.grid.voxel_size - 0.5).floor().long()  # (P, 3) x, y, z
        offs = torch.tensor([[dx, dy, dz] for dx in (0, 1) for dy in (0, 1) for dz in (0, 1)], device=pts.device)
        c = (base[:, None] + offs[None]).reshape(-1, 3)
        hi = torch.tensor([X, Y, Z], device=pts.device)
        c = c[((c >= 0) & (c < hi)).all(1)]
        lin = torch.unique((c[:, 2] * Y + c[:, 1]) * X + c[:, 0])  # (M,) voxel indices z, y, x
        picked = fv.flatten(2)[:, :, lin]  # (1, c, M)
        vf = self.projector(picked[..., None, None])[..., 0, 0]  # (1, d_f, M)
        field = fv.new_zeros(1, vf.shape[1], Z * Y * X)
        field[:, :, lin] = vf
        return field.reshape(1, -1, Z, Y, X)

    @torch.no_grad()
    def prior_scores(self, images: torch.Tensor, K: torch.Tensor, T_cw: torch.Tensor, boxes: list[list[Box3D]],
                     feats: list[list[torch.Tensor]] | None = None, raw: list[np.ndarray] | None = None
                     ) -> list[torch.Tensor]:
        """The training-free prior of matcher.prior: images (B, V, 3, H, W), K (B, V, 3, 3), T_cw (B, V, 4, 4),
        boxes per scene -> robust z-scores per scene (N_b,) float32 (model/baseline.py). feats[b]: scene b's
        comparison maps (`prior_maps`; e.g. cached while training); raw: the scenes' prior_raw_scores, when already
        computed."""
        raw = self.prior_raw_scores(images, K, T_cw, boxes, feats) if raw is None else raw
        return [torch.from_numpy(robust_z(r, self.prior_cfg)).to(images.device, torch.float32) for r in raw]

    @torch.no_grad()
    def prior_raw_scores(self, images: torch.Tensor, K: torch.Tensor, T_cw: torch.Tensor, boxes: list[list[Box3D]],
                         feats: list[list[torch.Tensor]] | None = None, levels: list[torch.Tensor] | None = None
                         ) -> list[np.ndarray]:
        """The comparison behind the prior (prior_scores' arguments) -> raw scores per scene (N_b,) float64: the
        training-free baseline's (model/baseline.py baseline_scores with self.prior_cfg on `prior_maps`, made from
        `levels` when given and feats is not)."""
        with record_function("prior"):
            feats = self.prior_maps(images, levels) if feats is None else feats
            return [baseline_scores(images[b], K[b], T_cw[b], bs, None, self.prior_cfg, feats[b])
                    for b, bs in enumerate(boxes)]

    @torch.no_grad()
    def prior_maps(self, images: torch.Tensor, levels: list[torch.Tensor] | None = None) -> list[list[torch.Tensor]]:
        """The comparison's frozen 2D feature maps: images (B, V, 3, H, W) -> per scene one (V, C, h, w) map per
        scale (prior_features "teacher") or per group of matcher.prior_levels ("trunk", from `levels`, the
        encoder's backbone_levels of the B*V images when already computed)."""
        B, V = images.shape[:2]
        flat = images.flatten(0, 1)
        if self.prior_trunk:
            maps = self.trunk_prior_maps(self.encoder.backbone_levels(flat) if levels is None else levels)
        else:
            maps = extract(self.prior_extractor(images.device), flat, self.prior_cfg.scales)
        return [[mp[b * V:(b + 1) * V] for mp in maps] for b in range(B)]

    def trunk_prior_maps(self, levels: list[torch.Tensor]) -> list[torch.Tensor]:
        """Backbone levels of N images (encoder.backbone_levels, finest first) -> the comparison's maps, one
        (N, C, h, w) float32 per group of matcher.prior_levels (strides of a group joined at the finest: the
        coarser ones upsampled bilinearly, as the MobileNetV2 teacher joins its strides 8 and 16)."""
        by_stride = dict(zip(self.encoder.level_strides, levels))
        out = []
        for group in self.prior_groups:
            maps = [by_stride[st].float() for st in group]
            hw = maps[0].shape[-2:]
            maps = [mp if mp.shape[-2:] == hw else F.interpolate(mp, size=hw, mode="bilinear", align_corners=False)
                    for mp in maps]
            out.append(torch.cat(maps, dim=1).contiguous())
        return out

    def prior_extractor(self, device: torch.device):
        """The frozen 2D features of prior_features "teacher" (the offline ImageNet MobileNetV2), built on first use."""
        if "extractor" not in self._frozen:
            self._frozen["extractor"] = default_extractor(device)
        return self._frozen["extractor"].to(device)

    def classify(self, vol: SceneVolume, boxes: list[torch.Tensor], prior: list[torch.Tensor] | None = None
                 ) -> list[torch.Tensor]:
        """Anomaly logits per scene: boxes[b] (N_b, 7) -> logits (N_b,) (empty for no boxes); prior[b] (N_b,):
        the boxes' robust z-scores (`prior_scores`), required when matcher.prior is on."""
        with record_function("classify"):
            return self._classify(vol, boxes, prior)

    def _classify(self, vol, boxes, prior):
        logits = []
        for b, bx in enumerate(boxes):
            if bx.shape[0] == 0:
                logits.append(vol.fv.new_zeros(0))
                continue
            z, beta = self.object_volumes(vol, b, bx.to(vol.fv.dtype))
            logits.append(self.matcher(z, beta, prior[b] if prior is not None else None))
        return logits

    # ------------------------------------------------------------------ training
    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """The trainable parameters (requires_grad) by optimiser group, each parameter in one group, in the order of
        the optimiser's groups (resume files keep its state by group index): "backbone" (the pretrained 2D backbone;
        empty when frozen), "network" (all else) and, only when there are trainable ones, "prior" (the two scalars
        matcher.prior_scale / prior_shift of matcher.prior)."""
        backbone = [p for p in self.encoder.backbone.parameters() if p.requires_grad]
        prior = [p for n, p in self.named_parameters() if p.requires_grad and n.startswith("matcher.prior_")]
        ids = {id(p) for p in backbone + prior}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
        groups = {"backbone": backbone, "network": rest}
        if prior:
            groups["prior"] = prior
        return groups

    def get_loss_dict(self, vol: SceneVolume, outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
                      weights: LossWeights) -> dict[str, torch.Tensor]:
        """The loss terms of a training scene (model/losses.py; docs/training.md).

        vol: build_volume of the input views. outputs: `render` of the target views at P pixels (Pf for the
        features): rgb (B, V, 3, P), opacity (B, V, 1, P), when distilling feat (B, V, d_f, Pf); and for the BCE
        logits (N,) of the scene's objects (`classify`). targets at the same pixels: rgb (B, V, 3, P) and mask
        (B, V, 1, P) in [0, 1]; for the feature term teacher feat (B, V, d_f, Pf) and feat_weights (B, V, 1, Pf);
        for the occupancy term (weights.occupancy > 0) occupancy (B, Z, Y, X) in [0, 1]; with logits labels (N,),
        1 = anomalous.
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

    def forward(self, images: torch.Tensor, K: torch.Tensor, T_cw: torch.Tensor,
                boxes: list[list[Box3D]] | None = None, return_extras: bool = False, count: int | None = None
                ) -> tuple:
        """Inference: boxes per scene (the model's own, or the given ones, world frame) and their anomaly logits;
        with return_extras a third item, a dict: "prior_raw" = the prior's raw scores per scene
        (prior_raw_scores; None without matcher.prior): the training-free baseline's scores of the same boxes, at
        no extra cost; "box_scores" = per scene the boxes' scores (N_b,) float64 (`detect_boxes`; 1.0 for given
        boxes). The backbone runs once per image: its levels feed the feature pyramid and, with prior_features
        "trunk", the comparison. count: the true number of objects, where a protocol gives it (`detect_boxes`)."""
        levels, vol = self.inspection_volume(images, K, T_cw)
        if boxes is None:
            found = self.detect_boxes(vol, count)
            boxes, box_scores = [bs for bs, _ in found], [sc for _, sc in found]
        else:
            box_scores = [np.ones(len(bs)) for bs in boxes]
        raw, logits = self.score_objects(vol, images, K, T_cw, boxes, levels)
        if return_extras:
            return boxes, logits, {"prior_raw": raw, "box_scores": box_scores}
        return boxes, logits

    @torch.no_grad()
    def inspection_volume(self, images: torch.Tensor, K: torch.Tensor, T_cw: torch.Tensor
                          ) -> tuple[list[torch.Tensor], SceneVolume]:
        """An inspection's volume (build_volume's arguments): the backbone runs once over the B*V images -> (its
        levels, for the comparison too; the volume built inspect_only)."""
        with record_function("encoder"):
            levels = self.encoder.backbone_levels(images.flatten(0, 1))  # the one backbone pass per image
        return levels, self.build_volume(images, K, T_cw, levels, inspect_only=True)

    @torch.no_grad()
    def score_objects(self, vol: SceneVolume, images: torch.Tensor, K: torch.Tensor, T_cw: torch.Tensor,
                      boxes: list[list[Box3D]], levels: list[torch.Tensor] | None = None) -> tuple:
        """An inspection's anomaly logits of the given boxes (per scene (N_b,)) and the comparison's raw scores per
        scene (None without matcher.prior): with matcher.comparator the comparator on the comparison's cells
        (`compare`), else the volume matcher (`classify`) with the prior of `inspection_prior`."""
        if self.comparator is not None:
            return self.compare(images, K, T_cw, boxes, levels)
        raw, prior = self.inspection_prior(images, K, T_cw, boxes, levels)
        return raw, self.classify(vol, [boxes_to_tensor(bs, images.device) for bs in boxes], prior)

    @torch.no_grad()
    def compare(self, images: torch.Tensor, K: torch.Tensor, T_cw: torch.Tensor, boxes: list[list[Box3D]],
                levels: list[torch.Tensor] | None = None) -> tuple[list[np.ndarray], list[torch.Tensor]]:
        """matcher.comparator: images (B, V, 3, H, W), boxes per scene -> (the comparison's raw scores per scene (N_b,)
        float64, the same as prior_raw_scores; logits per scene (N_b,)). The cells are those of the training-free
        comparison (model/baseline.py cell_features on `prior_maps`)."""
        with record_function("compare"):
            raws, logits = [], []
            for cells, valid in self.prior_cells(images, K, T_cw, boxes, levels):
                if cells.shape[0] == 0:
                    raws.append(np.zeros(0))
                    logits.append(images.new_zeros(0))
                    continue
                logit, raw = self.comparator(cells, valid)
                raws.append(raw.double().numpy())
                logits.append(logit.to(images.device))
            return raws, logits

    @torch.no_grad()
    def prior_cells(self, images: torch.Tensor, K: torch.Tensor, T_cw: torch.Tensor, boxes: list[list[Box3D]],
                    levels: list[torch.Tensor] | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The comparison's cells of each scene's boxes (one map of `prior_maps`): per scene (cells (N_b, P, C)
        float32, valid (N_b, P) bool) on the CPU, P = prior_grid^3 (model/baseline.py cell_features)."""
        maps = self.prior_maps(images, levels)
        P, out = self.prior_cfg.grid ** 3, []
        for b, bs in enumerate(boxes):
            if not bs:
                out.append((torch.zeros(0, P, maps[b][0].shape[1]), torch.zeros(0, P, dtype=torch.bool)))
                continue
            cells, valid = cell_features([m.float().cpu() for m in maps[b]], K[b], T_cw[b], tuple(images.shape[-2:]),
                                         bs, self.prior_cfg)
            out.append((cells[0], valid))
        return out

    @torch.no_grad()
    def inspection_prior(self, images: torch.Tensor, K: torch.Tensor, T_cw: torch.Tensor, boxes: list[list[Box3D]],
                         levels: list[torch.Tensor] | None = None) -> tuple:
        """matcher.prior of an inspection: (raw scores per scene, robust z-scores per scene), both None without
        the prior; `levels` = inspection_volume's (used with prior_features "trunk")."""
        if not self.cfg.matcher.prior:
            return None, None
        raw = self.prior_raw_scores(images, K, T_cw, boxes, levels=levels)
        return raw, self.prior_scores(images, K, T_cw, boxes, raw=raw)
