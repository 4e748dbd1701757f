"""OddOneOutNet: the full model of the paper, composed of the small modules of this package.

    images (B, V, 3, H, W) + cameras  --E_2D-->  features (B, V, d, H/s, W/s)
      --back-projection (mean over views)-->  (B, d, Z, Y, X) + seen mask
      --E_3D-->  F_v (B, c, Z, Y, X)  --heads-->  density (B, 1, ...), colour (B, 3, ...), V_f = beta(F_v)
      --renderer-->  RGB, mask, features at any camera (training)
      --box estimator-->  boxes per scene  --RoI pooling-->  z (N, c + d_f + 1, r, r, r)
      --cross-instance matching-->  one anomaly logit per object
      (+ with matcher.prior: the training-free comparison of the boxes' frozen 2D features, model/baseline.py)

Cameras: K (B, V, 3, 3) for the H x W input images, T_cw (B, V, 4, 4) world-to-camera (docs/frames.md).
Images must be undistorted pinhole views, RGB in [0, 1].
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.autograd.profiler import record_function

from ..geometry import Box3D
from .baseline import BaselineConfig, baseline_scores, default_extractor, robust_z
from .box_estimator import estimate_boxes
from .config import ModelConfig
from .encoder2d import FPNEncoder
from .heads import ColourHead, DensityHead, Projector
from .matcher import CrossInstanceMatcher, boxes_to_tensor, roi_pool
from .renderer import VolumeRenderer, scale_intrinsics
from .unet3d import UNet3D
from .volume import VoxelGrid, backproject


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
        self.prior_cfg = BaselineConfig()
        self._frozen: dict = {}  # the prior's extractor: frozen weights from a package, kept out of state_dict

    # ------------------------------------------------------------------ 3D scene volume
    def build_volume(self, images: torch.Tensor, K: torch.Tensor, T_cw: torch.Tensor,
                     levels: list[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """images (B, V, 3, H, W), K (B, V, 3, 3), T_cw (B, V, 4, 4) ->
        fv (B, c, Z, Y, X), density (B, 1, ...), colour (B, 3, ...), seen (B, 1, ...) and, when distilling,
        feat (B, d_f, ...). levels: the 2D backbone's levels of the B*V images (encoder.backbone_levels, e.g.
        cached for a frozen backbone), so that only the feature pyramid runs."""
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
            out = {"fv": fv, "density": self.density_head(fv), "colour": self.colour_head(fv), "seen": seen}
            if self.projector is not None:
                out["feat"] = self.projector(fv)
        return out

    def render(self, vol: dict, K: torch.Tensor, T_cw: torch.Tensor, image_hw: tuple[int, int],
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
        out = self.renderer(vol["density"], vol["colour"], scale_intrinsics(K, r / W, r / H), T_cw, r, r, stratified,
                            pixels=pixels)
        result = {"rgb": out["fields"], "opacity": out["opacity"], "depth": out["depth"]}
        if "feat" in vol:
            f = rc.feature_size
            fo = self.renderer(vol["density"], vol["feat"], scale_intrinsics(K, f / W, f / H), T_cw, f, f, stratified,
                               detach_density=True, pixels=feature_pixels)
            result["feat"] = fo["fields"]
        return result

    # ------------------------------------------------------------------ objects
    @torch.no_grad()
    def estimate_boxes(self, vol: dict) -> list[list[Box3D]]:
        """Boxes per scene of the batch from the density volume (box estimator B)."""
        with record_function("boxes"):
            dens = vol["density"][:, 0].float().cpu().numpy()
            return [estimate_boxes(d, self.grid, self.cfg.boxes) for d in dens]

    def object_volumes(self, vol: dict, b: int, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Scene b's objects: boxes (N, 7) -> z (N, c + 1 [+ d_f], r, r, r) and beta(z) tokens (N, r^3, d_f) or None."""
        m = self.cfg.matcher
        parts = [vol["fv"][b:b + 1], vol["density"][b:b + 1]]
        if "feat" in vol:
            parts.append(vol["feat"][b:b + 1])
        z = roi_pool(torch.cat(parts, dim=1), boxes, self.grid, m.roi_size, m.roi_margin * self.grid.voxel_size)
        beta = None
        if "feat" in vol:
            # beta(z_n) of Eq. 5 = the distilled feature field sampled in the object volume
            beta = z[:, -self.cfg.teacher_dim:].flatten(2).transpose(1, 2)
        return z, beta

    @torch.no_grad()
    def prior_scores(self, images: torch.Tensor, K: torch.Tensor, T_cw: torch.Tensor, boxes: list[list[Box3D]],
                     feats: list[list[torch.Tensor]] | None = None) -> list[torch.Tensor]:
        """The training-free prior of matcher.prior: images (B, V, 3, H, W), K (B, V, 3, 3), T_cw (B, V, 4, 4),
        boxes per scene -> robust z-scores per scene (N_b,) float32 (model/baseline.py). feats[b]: scene b's
        extractor maps, one (V, C, h, w) per scale of BaselineConfig.scales (e.g. cached while training)."""
        with record_function("prior"):
            out = []
            for b, bs in enumerate(boxes):
                f = feats[b] if feats is not None else None
                ext = self.prior_extractor(images.device) if f is None else None
                raw = baseline_scores(images[b], K[b], T_cw[b], bs, ext, self.prior_cfg, f)
                out.append(torch.from_numpy(robust_z(raw, self.prior_cfg)).to(images.device, torch.float32))
            return out

    def prior_extractor(self, device: torch.device):
        """The prior's frozen 2D features (the offline ImageNet MobileNetV2), built on first use."""
        if "extractor" not in self._frozen:
            self._frozen["extractor"] = default_extractor(device)
        return self._frozen["extractor"].to(device)

    def classify(self, vol: dict, boxes: list[torch.Tensor], prior: list[torch.Tensor] | None = None
                 ) -> list[torch.Tensor]:
        """Anomaly logits per scene: boxes[b] (N_b, 7) -> logits (N_b,) (empty for no boxes); prior[b] (N_b,):
        the boxes' robust z-scores (`prior_scores`), required when matcher.prior is on."""
        with record_function("classify"):
            return self._classify(vol, boxes, prior)

    def _classify(self, vol, boxes, prior):
        logits = []
        for b, bx in enumerate(boxes):
            if bx.shape[0] == 0:
                logits.append(vol["fv"].new_zeros(0))
                continue
            z, beta = self.object_volumes(vol, b, bx.to(vol["fv"].dtype))
            logits.append(self.matcher(z, beta, prior[b] if prior is not None else None))
        return logits

    def forward(self, images: torch.Tensor, K: torch.Tensor, T_cw: torch.Tensor,
                boxes: list[list[Box3D]] | None = None) -> tuple[list[list[Box3D]], list[torch.Tensor]]:
        """Inference: boxes per scene (the model's own, or the given ones, world frame) and their anomaly logits."""
        vol = self.build_volume(images, K, T_cw)
        if boxes is None:
            boxes = self.estimate_boxes(vol)
        prior = self.prior_scores(images, K, T_cw, boxes) if self.cfg.matcher.prior else None
        logits = self.classify(vol, [boxes_to_tensor(bs, images.device) for bs in boxes], prior)
        return boxes, logits
