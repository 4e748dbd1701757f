"""Differentiable emission-absorption volume rendering of voxel fields (paper Eq. 3-4).

Rays through pixel centres (docs/frames.md) are clipped to the grid's box; `n_samples` stratified
samples per ray look the fields up by trilinear interpolation. Weights w_i = T_i (1 - exp(-sigma_i
delta_i)), T_i = exp(-sum_{j<i} sigma_j delta_j). Outputs per view: opacity (the rendered mask),
expected ray distance, and the weighted sum of any fields (colour, distilled features). With
`detach_density`, the weights come from sigma.detach(): the feature loss cannot shape the geometry.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .volume import VoxelGrid


def scale_intrinsics(K: torch.Tensor, sx: float, sy: float) -> torch.Tensor:
    """K (..., 3, 3) for an image resized by (sx, sy), pixel centres kept consistent."""
    K = K.clone()
    K[..., 0, 0] *= sx
    K[..., 0, 1] *= sx
    K[..., 1, 1] *= sy
    K[..., 0, 2] = (K[..., 0, 2] + 0.5) * sx - 0.5
    K[..., 1, 2] = (K[..., 1, 2] + 0.5) * sy - 0.5
    return K


def pixel_rays(K: torch.Tensor, T_cw: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays through the pixel centres of an h x w image.

    K (B, V, 3, 3) at that resolution; T_cw (B, V, 4, 4) -> origins (B, V, h*w, 3), unit dirs (B, V, h*w, 3).
    """
    v, u = torch.meshgrid(torch.arange(h, dtype=K.dtype, device=K.device),
                          torch.arange(w, dtype=K.dtype, device=K.device), indexing="ij")
    uv1 = torch.stack([u.reshape(-1), v.reshape(-1), torch.ones_like(u).reshape(-1)], dim=-1)  # (P, 3)
    d_cam = torch.einsum("bvij,pj->bvpi", torch.linalg.inv(K), uv1)
    R = T_cw[..., :3, :3]
    d_world = torch.einsum("bvji,bvpj->bvpi", R, d_cam)  # R^T d
    d_world = d_world / d_world.norm(dim=-1, keepdim=True)
    origin = -torch.einsum("bvji,bvj->bvi", R, T_cw[..., :3, 3])  # -R^T t
    return origin[:, :, None, :].expand_as(d_world), d_world


def ray_box(origins: torch.Tensor, dirs: torch.Tensor, lo, hi) -> tuple[torch.Tensor, torch.Tensor]:
    """Slab test: entry and exit distances (..., ) of rays with an axis-aligned box; t_far <= t_near = miss."""
    lo = torch.as_tensor(lo, dtype=dirs.dtype, device=dirs.device)
    hi = torch.as_tensor(hi, dtype=dirs.dtype, device=dirs.device)
    inv = 1.0 / torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    t0, t1 = (lo - origins) * inv, (hi - origins) * inv
    t_near = torch.minimum(t0, t1).amax(dim=-1).clamp(min=0.0)
    t_far = torch.maximum(t0, t1).amin(dim=-1)
    return t_near, t_far


class VolumeRenderer:
    """Renders voxel fields defined on `grid` at any camera and resolution."""

    def __init__(self, grid: VoxelGrid, n_samples: int):
        self.grid, self.n_samples = grid, n_samples

    def __call__(self, density: torch.Tensor, fields: torch.Tensor | None, K: torch.Tensor, T_cw: torch.Tensor,
                 h: int, w: int, stratified: bool = False, detach_density: bool = False) -> dict[str, torch.Tensor]:
        """density (B, 1, Z, Y, X) in 1/m; fields (B, C, Z, Y, X) or None; K (B, V, 3, 3) at h x w; T_cw (B, V, 4, 4).

        Returns opacity (B, V, 1, h, w), depth (B, V, 1, h, w) (expected distance along the ray, 0 where
        nothing is hit) and, with fields, "fields" (B, V, C, h, w).
        """
        B, V = K.shape[:2]
        S = self.n_samples
        origins, dirs = pixel_rays(K, T_cw, h, w)  # (B, V, P, 3)
        t_near, t_far = ray_box(origins, dirs, self.grid.lo, self.grid.hi)  # (B, V, P)
        length = (t_far - t_near).clamp(min=0.0)
        offsets = torch.rand(B, V, h * w, S, device=K.device, dtype=K.dtype) if stratified else \
            torch.full((1, 1, 1, S), 0.5, device=K.device, dtype=K.dtype)
        t = t_near[..., None] + length[..., None] * (torch.arange(S, device=K.device, dtype=K.dtype) + offsets) / S
        delta = (length / S)[..., None]  # (B, V, P, 1)
        points = origins[..., None, :] + t[..., None] * dirs[..., None, :]  # (B, V, P, S, 3)
        norm = self.grid.world_to_normalized(points).reshape(B, V * h * w, S, 1, 3)

        def sample(volume):  # (B, C, Z, Y, X) -> (B, V, P, S, C)
            out = F.grid_sample(volume, norm, mode="bilinear", padding_mode="zeros", align_corners=False)
            return out.reshape(B, -1, V, h * w, S).permute(0, 2, 3, 4, 1)

        sigma = sample(density)[..., 0]  # (B, V, P, S)
        if detach_density:
            sigma = sigma.detach()
        tau = sigma * delta
        trans = torch.exp(-(torch.cumsum(tau, dim=-1) - tau))  # exclusive: light reaching sample i
        weights = trans * (1 - torch.exp(-tau))  # (B, V, P, S)
        opacity = weights.sum(-1)
        depth = (weights * t).sum(-1) / opacity.clamp(min=1e-6)
        out = {"opacity": opacity.reshape(B, V, 1, h, w), "depth": depth.reshape(B, V, 1, h, w)}
        if fields is not None:
            vals = (weights[..., None] * sample(fields)).sum(-2)  # (B, V, P, C)
            out["fields"] = vals.permute(0, 1, 3, 2).reshape(B, V, -1, h, w)
        return out
