"""The voxel grid and the back-projection of view features into it (paper Eq. 2).

Frames: docs/frames.md. Volumes are (B, C, Z, Y, X); voxel (i, j, k) along world (x, y, z) has its
centre at origin + (index + 0.5) * voxel_size. Cameras are batched tensors: K (B, V, 3, 3) for the
feature map's resolution and T_cw (B, V, 4, 4) world-to-camera. Images are assumed undistorted.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .config import GridConfig


@dataclass(frozen=True)
class SceneVolume:
    """The 3D scene volume of B scenes on a Z x Y x X voxel grid (SceneEncoder.volume; paper Sec. 3.2)."""

    fv: torch.Tensor
    """(B, c, Z, Y, X) the 3D network's features F_v"""
    density: torch.Tensor
    """(B, 1, Z, Y, X) density sigma >= 0 in 1/m"""
    colour: torch.Tensor | None
    """(B, 3, Z, Y, X) RGB in [0, 1]; None in a volume built for inspection only (SceneEncoder.volume inspect_only)"""
    seen: torch.Tensor
    """(B, 1, Z, Y, X) 1 where at least one input view sees the voxel centre, else 0"""
    feat: torch.Tensor | None = None
    """(B, d_f, Z, Y, X) the distilled feature field V_f = beta(F_v), or None (a model that does not distil)"""


@dataclass(frozen=True)
class VoxelGrid:
    shape: tuple[int, int, int]  # (X, Y, Z) voxels
    voxel_size: float
    origin: tuple[float, float, float]  # world position of the grid's minimum corner

    @staticmethod
    def from_config(cfg: GridConfig) -> "VoxelGrid":
        X, Y, Z = cfg.shape
        s = cfg.voxel_size
        return VoxelGrid(tuple(cfg.shape), s, (-X * s / 2, -Y * s / 2, cfg.z_min))

    @property
    def lo(self) -> np.ndarray:
        return np.asarray(self.origin, dtype=np.float64)

    @property
    def hi(self) -> np.ndarray:
        return self.lo + np.asarray(self.shape) * self.voxel_size

    def centers(self, device=None, dtype=torch.float32) -> torch.Tensor:
        """(Z, Y, X, 3) world coordinates of the voxel centres."""
        X, Y, Z = self.shape
        axes = [torch.arange(n, device=device, dtype=dtype) * self.voxel_size + (o + self.voxel_size / 2)
                for n, o in zip((X, Y, Z), self.origin)]
        zz, yy, xx = torch.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
        return torch.stack([xx, yy, zz], dim=-1)

    def world_to_normalized(self, points: torch.Tensor) -> torch.Tensor:
        """World points (..., 3) -> grid_sample coordinates (..., 3) in [-1, 1] (align_corners=False)."""
        lo = torch.as_tensor(self.lo, dtype=points.dtype, device=points.device)
        size = torch.as_tensor(np.asarray(self.shape) * self.voxel_size, dtype=points.dtype, device=points.device)
        return (points - lo) / size * 2 - 1


def project_points(points: torch.Tensor, K: torch.Tensor, T_cw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pinhole projection of world points through many cameras.

    points (B, P, 3); K (B, V, 3, 3); T_cw (B, V, 4, 4) -> pixels uv (B, V, P, 2), depth z (B, V, P).
    """
    R, t = T_cw[..., :3, :3], T_cw[..., :3, 3]
    pc = torch.einsum("bvij,bpj->bvpi", R, points) + t[:, :, None, :]  # (B, V, P, 3) camera frame
    z = pc[..., 2]
    xy = pc[..., :2] / z.clamp(min=1e-6)[..., None]
    uv = torch.einsum("bvij,bvpj->bvpi", K[..., :2, :2], xy) + K[:, :, None, :2, 2]
    return uv, z


def sample_views(features: torch.Tensor, K: torch.Tensor, T_cw: torch.Tensor, points: torch.Tensor,
                 mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Average the view features at world points over the views that see them.

    features (B, V, C, h, w); K (B, V, 3, 3) at the feature resolution (pixel-centre convention); T_cw (B, V, 4, 4);
    points (B, P, 3); mask (B, V, P) bool or None: extra per-view validity (e.g. occlusion). Returns the mean
    (B, C, P) and count (B, 1, P): the number of views in which the point is in front of the camera, inside the
    feature map (and in mask). Points seen by no view are 0. Bilinear sampling, so features get gradients.
    """
    B, V, C, h, w = features.shape
    uv, z = project_points(points, K, T_cw)  # (B, V, P, 2), (B, V, P)
    valid = (z > 1e-6) & (uv[..., 0] >= -0.5) & (uv[..., 0] <= w - 0.5) & (uv[..., 1] >= -0.5) & (uv[..., 1] <= h - 0.5)
    if mask is not None:
        valid = valid & mask
    # pixel (u, v) -> grid_sample coordinates with align_corners=False: pixel centres at (2u + 1) / w - 1
    norm = torch.stack([(2 * uv[..., 0] + 1) / w - 1, (2 * uv[..., 1] + 1) / h - 1], dim=-1)
    sampled = F.grid_sample(features.reshape(B * V, C, h, w), norm.reshape(B * V, 1, -1, 2), mode="bilinear",
                            padding_mode="border", align_corners=False)  # (B*V, C, 1, P)
    sampled = sampled.reshape(B, V, C, -1) * valid[:, :, None, :]
    count = valid.sum(dim=1, keepdim=True).to(features.dtype)  # (B, 1, P)
    return sampled.sum(dim=1) / count.clamp(min=1), count


def backproject(features: torch.Tensor, K: torch.Tensor, T_cw: torch.Tensor, grid: VoxelGrid
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Average the view features seen by each voxel centre (paper Eq. 2, aggr = mean): sample_views at the grid's
    voxel centres. features (B, V, C, h, w); K (B, V, 3, 3) at the feature resolution; T_cw (B, V, 4, 4).
    Returns volume (B, C, Z, Y, X) and count (B, 1, Z, Y, X); voxels seen by no view are 0."""
    B, V, C, h, w = features.shape
    X, Y, Z = grid.shape
    centers = grid.centers(features.device, features.dtype).reshape(1, -1, 3).expand(B, -1, -1)  # (B, P, 3)
    volume, count = sample_views(features, K, T_cw, centers)
    return volume.reshape(B, C, Z, Y, X), count.reshape(B, 1, Z, Y, X)
