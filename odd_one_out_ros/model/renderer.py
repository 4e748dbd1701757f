"""Differentiable emission-absorption volume rendering of voxel fields (paper Eq. 3-4).

Rays through pixel centres (docs/frames.md) are clipped to the grid's box; `n_samples` stratified
samples per ray look the fields up by trilinear interpolation. Weights w_i = T_i (1 - exp(-sigma_i
delta_i)), T_i = exp(-sum_{j<i} sigma_j delta_j). Outputs per view: opacity (the rendered mask),
expected ray distance, and the weighted sum of any fields (colour, distilled features). With
`detach_density`, the weights come from sigma.detach(): the feature loss cannot shape the geometry.
Every pixel is rendered, or only the pixels given by index (training renders a random subset of rays:
TrainConfig.rays, docs/training.md "Training speed").
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from .volume import VoxelGrid


def pixel_rays(K: torch.Tensor, T_cw: torch.Tensor, h: int, w: int, pixels: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays through the pixel centres of an h x w image, or through some of them.

    K (B, V, 3, 3) at that resolution; T_cw (B, V, 4, 4); pixels (B, V, P) long, row-major indices v * w + u
    into the h x w pixels, or None for all of them (P = h * w, in row-major order) ->
    origins (B, V, P, 3), unit dirs (B, V, P, 3).
    """
    if pixels is None:
        v, u = torch.meshgrid(torch.arange(h, dtype=K.dtype, device=K.device),
                              torch.arange(w, dtype=K.dtype, device=K.device), indexing="ij")
        uv1 = torch.stack([u.reshape(-1), v.reshape(-1), torch.ones_like(u).reshape(-1)], dim=-1)  # (P, 3)
        d_cam = torch.einsum("bvij,pj->bvpi", torch.linalg.inv(K), uv1)
    else:
        u, v = (pixels % w).to(K.dtype), torch.div(pixels, w, rounding_mode="floor").to(K.dtype)
        uv1 = torch.stack([u, v, torch.ones_like(u)], dim=-1)  # (B, V, P, 3)
        d_cam = torch.einsum("bvij,bvpj->bvpi", torch.linalg.inv(K), uv1)
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


def trilinear_corners(norm: torch.Tensor, shape: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The 8 voxels and weights of trilinear interpolation as F.grid_sample does it (align_corners=False,
    zero padding) for a volume (..., Z, Y, X): norm (N, 3) grid_sample coordinates (x, y, z) in [-1, 1] ->
    idx (N, 8) long flat voxel indices (z * Y + y) * X + x, weights (N, 8) (0 for voxels outside the grid)."""
    Z, Y, X = shape
    pos = (norm + 1) * torch.tensor([X, Y, Z], dtype=norm.dtype, device=norm.device) / 2 - 0.5  # voxel units
    lo = pos.floor()
    frac = pos - lo
    lo = lo.long()
    idx, wts = [], []
    for dz in (0, 1):
        for dy in (0, 1):
            for dx in (0, 1):
                x, y, z = lo[:, 0] + dx, lo[:, 1] + dy, lo[:, 2] + dz
                w = (frac[:, 0] if dx else 1 - frac[:, 0]) * (frac[:, 1] if dy else 1 - frac[:, 1]) * \
                    (frac[:, 2] if dz else 1 - frac[:, 2])
                inside = (x >= 0) & (x < X) & (y >= 0) & (y < Y) & (z >= 0) & (z < Z)
                idx.append(torch.where(inside, (z * Y + y) * X + x, 0))
                wts.append(w * inside)
    return torch.stack(idx, dim=-1), torch.stack(wts, dim=-1)


def integrate_fields(fields: torch.Tensor, norm: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum_s weights[s] * trilinear(fields)(norm[s]) per ray, for constant (detached) weights, as one sparse matrix
    product: fields (B, C, Z, Y, X), norm (B, R, S, 3) grid_sample coordinates, weights (B, R, S) without
    gradient -> (B, R, C), differentiable in fields. Equal to F.grid_sample + a weighted sum (the same terms,
    summed in another order), with far less memory traffic for many channels: row r of the matrix holds the
    S * 8 voxel weights of ray r; channels-last fields (as the per-voxel heads return them) are used in place."""
    B, C = fields.shape[:2]
    R, S = norm.shape[1:3]
    n_vox = fields[0, 0].numel()
    idx, tri = trilinear_corners(norm.reshape(-1, 3), fields.shape[2:])  # (B*R*S, 8)
    idx = idx.reshape(B, -1) + torch.arange(B, device=idx.device)[:, None] * n_vox  # batch b's voxels at b * n_vox
    vals = (weights.reshape(-1, 1) * tri).reshape(-1)
    crow = torch.arange(B * R + 1, device=norm.device) * (S * 8)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse CSR tensor support is in beta.*")
        A = torch.sparse_csr_tensor(crow, idx.reshape(-1), vals, (B * R, B * n_vox), dtype=fields.dtype,
                                    check_invariants=False)  # rows: rays of all batches; one block per batch
    table = fields.movedim(1, -1).reshape(B * n_vox, C)  # a view for channels-last fields
    return (A @ table).reshape(B, R, C)


class VolumeRenderer:
    """Renders voxel fields defined on `grid` at any camera and resolution."""

    def __init__(self, grid: VoxelGrid, n_samples: int):
        self.grid, self.n_samples = grid, n_samples

    def __call__(self, density: torch.Tensor, fields: torch.Tensor | None, K: torch.Tensor, T_cw: torch.Tensor,
                 h: int, w: int, stratified: bool = False, detach_density: bool = False,
                 pixels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """density (B, 1, Z, Y, X) in 1/m; fields (B, C, Z, Y, X) or None; K (B, V, 3, 3) at h x w; T_cw (B, V, 4, 4);
        pixels (B, V, P) long (row-major indices into the h x w pixels, e.g. a random subset in training) or None
        (every pixel).

        Returns opacity (B, V, 1, h, w), depth (B, V, 1, h, w) (expected distance along the ray, 0 where
        nothing is hit) and, with fields, "fields" (B, V, C, h, w); with pixels, the last two dimensions are
        replaced by P (the rays in the order of `pixels`).
        """
        B, V = K.shape[:2]
        S = self.n_samples
        origins, dirs = pixel_rays(K, T_cw, h, w, pixels)  # (B, V, P, 3)
        P = origins.shape[2]
        t_near, t_far = ray_box(origins, dirs, self.grid.lo, self.grid.hi)  # (B, V, P)
        length = (t_far - t_near).clamp(min=0.0)
        offsets = torch.rand(B, V, P, S, device=K.device, dtype=K.dtype) if stratified else \
            torch.full((1, 1, 1, S), 0.5, device=K.device, dtype=K.dtype)
        t = t_near[..., None] + length[..., None] * (torch.arange(S, device=K.device, dtype=K.dtype) + offsets) / S
        delta = (length / S)[..., None]  # (B, V, P, 1)
        points = origins[..., None, :] + t[..., None] * dirs[..., None, :]  # (B, V, P, S, 3)
        norm = self.grid.world_to_normalized(points).reshape(B, V * P, S, 1, 3)
        if detach_density and fields is not None:  # constant weights: the fields enter linearly
            with torch.no_grad():
                sigma = F.grid_sample(density, norm, mode="bilinear", padding_mode="zeros",
                                      align_corners=False).reshape(B, V, P, S)
            looked = None
        else:  # density and colour in one lookup (the trilinear weights of a point are computed once)
            sigma_vol = density.detach() if detach_density else density
            volume = sigma_vol if fields is None else torch.cat([sigma_vol, fields], dim=1)
            looked = F.grid_sample(volume, norm, mode="bilinear", padding_mode="zeros", align_corners=False)
            looked = looked.reshape(B, -1, V, P, S)  # (B, 1 + C, V, P, S)
            if fields is None:
                sigma = looked[:, 0]
            else:  # split, not two selects: their backward would allocate the whole lookup twice
                sigma, looked = looked.split([1, looked.shape[1] - 1], dim=1)
                sigma = sigma[:, 0]  # (B, V, P, S)
        tau = sigma * delta
        trans = torch.exp(-(torch.cumsum(tau, dim=-1) - tau))  # exclusive: light reaching sample i
        weights = trans * (1 - torch.exp(-tau))  # (B, V, P, S)
        opacity = weights.sum(-1)
        depth = (weights * t).sum(-1) / opacity.clamp(min=1e-6)
        shape = (h, w) if pixels is None else (P,)
        out = {"opacity": opacity.reshape(B, V, 1, *shape), "depth": depth.reshape(B, V, 1, *shape)}
        if fields is not None:
            if looked is None:
                vals = integrate_fields(fields, norm.reshape(B, V * P, S, 3), weights.reshape(B, V * P, S))
                vals = vals.reshape(B, V, P, -1).transpose(2, 3)  # (B, V, C, P)
            else:
                vals = torch.einsum("bvps,bcvps->bvcp", weights, looked)  # (B, V, C, P)
            out["fields"] = vals.reshape(B, V, -1, *shape)
        return out
