"""Stage 1 of the model, the scene encoder: posed images -> the 3D scene volume (paper Sec. 3.2, Eq. 1-4).

    images (B, V, 3, H, W) + cameras  --E_2D-->  features (B, V, d, H/s, W/s)
      --back-projection (mean over views, Eq. 2)-->  (B, d, Z, Y, X) + seen mask
      --E_3D (Eq. 3)-->  F_v (B, c, Z, Y, X)  --heads (Eq. 4)-->  density (B, 1, ...), colour (B, 3, ...),
      V_f = beta(F_v) (B, d_f, ...) when distilling
      --renderer (training: RGB, mask, features at any camera)

Cameras: K (B, V, 3, 3) for the H x W input images, T_cw (B, V, 4, 4) world-to-camera (docs/frames.md).
Images must be undistorted pinhole views, RGB in [0, 1]. Built from the config's grid, encoder, unet_*, volume /
teacher channels and render sections.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.autograd.profiler import record_function

from ..geometry import scale_intrinsics
from .config import ModelConfig
from .encoder2d import FPNEncoder
from .heads import ColourHead, DensityHead, Projector
from .renderer import VolumeRenderer
from .unet3d import UNet3D
from .volume import SceneVolume, VoxelGrid, backproject


@dataclass
class SceneEncoding:
    """What the scene encoder hands to the box estimator and the object scorer: the posed views (images (B, V, 3, H,
    W), K (B, V, 3, 3), T_cw (B, V, 4, 4)), the 2D backbone's levels of the B*V images (finest first), the backbone's
    stride of each level, the volume, and the encoder itself (its projector beta computes V_f where a scorer needs
    it). maps: the comparison's 2D maps per scene when they were computed before (training caches them;
    model/comparison.py), else None."""

    images: torch.Tensor
    K: torch.Tensor
    T_cw: torch.Tensor
    levels: list[torch.Tensor]
    level_strides: tuple[int, ...]
    volume: SceneVolume
    encoder: "SceneEncoder"
    maps: list[list[torch.Tensor]] | None = None


class SceneEncoder(nn.Module):
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

    @property
    def feature_channels(self) -> int:
        """d_f: channels of V_f (0 without distillation)."""
        return self.cfg.teacher_dim if self.projector is not None else 0

    def volume(self, images: torch.Tensor, K: torch.Tensor, T_cw: torch.Tensor,
               levels: list[torch.Tensor] | None = None, inspect_only: bool = False) -> SceneVolume:
        """images (B, V, 3, H, W), K (B, V, 3, 3), T_cw (B, V, 4, 4) -> the scene volume: fv (B, c, Z, Y, X),
        density (B, 1, ...), colour (B, 3, ...), seen (B, 1, ...) and, when distilling, feat (B, d_f, ...).
        levels: the 2D backbone's levels of the B*V images (encoder.backbone_levels, e.g. cached for a frozen
        backbone), so that only the feature pyramid runs. inspect_only: only what an inspection reads (colour
        and feat None; a scorer that needs V_f computes it where it reads it: `feature_field_near`)."""
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

    def forward(self, images: torch.Tensor, K: torch.Tensor, T_cw: torch.Tensor,
                levels: list[torch.Tensor] | None = None, full: bool = False) -> SceneEncoding:
        """An inspection's encoding (`volume`'s arguments): the backbone runs once over the B*V images (unless
        `levels` are given) and its levels are kept for the comparison; the volume is built inspect_only unless
        `full` (training: colour and V_f for the rendering losses)."""
        if levels is None:
            with record_function("encoder"):
                levels = self.encoder.backbone_levels(images.flatten(0, 1))  # the one backbone pass per image
        vol = self.volume(images, K, T_cw, levels, inspect_only=not full)
        return SceneEncoding(images, K, T_cw, levels, tuple(self.encoder.level_strides), vol, self)

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

    def feature_field_near(self, fv: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
        """V_f = beta(F_v) of one scene, fv (1, c, Z, Y, X), at the voxels that trilinear sampling at the world points
        pts (P, 3) reads (the 8 corners of each point's cell) and 0 elsewhere: (1, d_f, Z, Y, X). Sampling it at pts
        equals sampling the whole field; beta runs on a few thousand voxels instead of all."""
        Z, Y, X = fv.shape[-3:]
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
