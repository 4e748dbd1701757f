"""Object volumes and the cross-instance matching module M (paper Sec. 3.3-3.4).

- `roi_pool`: each box -> an r x r x r object volume sampled trilinearly in the box's own frame.
- `correspondences` (Eq. 5): for every voxel of object n and every partner object m, the top-k voxels
  of m by beta-feature dot product.
- `SparseVoxelAttention` (Eq. 6-7): queries attend only to their correspondences in the other objects
  (one softmax over all k * partners keys); `VanillaAttention`: every voxel of every object.
- `ClassificationHead` (Eq. 8): 3D CNN down to 1^3, then a 2-layer MLP -> one logit per object.
Tokens are (N, P, D): N objects, P = r^3 voxels (flattened z, y, x of the object volume).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig
from .volume import VoxelGrid


def roi_points(boxes: torch.Tensor, r: int, margin: float) -> torch.Tensor:
    """World sample points of each box's r^3 cells: boxes (N, 7) -> (N, r, r, r, 3) (cell order z, y, x).

    The box is padded by `margin` metres on every side before sampling.
    """
    steps = (torch.arange(r, device=boxes.device, dtype=boxes.dtype) + 0.5) / r - 0.5  # (r,)
    zz, yy, xx = torch.meshgrid(steps, steps, steps, indexing="ij")
    unit = torch.stack([xx, yy, zz], dim=-1)  # (r, r, r, 3) in [-0.5, 0.5]
    size = boxes[:, 3:6] + 2 * margin  # (N, 3)
    local = unit[None] * size[:, None, None, None, :]  # (N, r, r, r, 3)
    c, s = torch.cos(boxes[:, 6]), torch.sin(boxes[:, 6])
    x = local[..., 0] * c[:, None, None, None] - local[..., 1] * s[:, None, None, None]
    y = local[..., 0] * s[:, None, None, None] + local[..., 1] * c[:, None, None, None]
    return torch.stack([x, y, local[..., 2]], dim=-1) + boxes[:, None, None, None, :3]


def roi_pool(volume: torch.Tensor, boxes: torch.Tensor, grid: VoxelGrid, r: int, margin: float) -> torch.Tensor:
    """volume (1, C, Z, Y, X), boxes (N, 7) -> object volumes (N, C, r, r, r) (trilinear, zeros outside)."""
    N = boxes.shape[0]
    pts = roi_points(boxes, r, margin)
    norm = grid.world_to_normalized(pts).reshape(1, N * r, r, r, 3)
    out = F.grid_sample(volume, norm, mode="bilinear", padding_mode="zeros", align_corners=False)  # (1, C, N*r, r, r)
    return out.reshape(volume.shape[1], N, r, r, r).transpose(0, 1)


def select_partners(feats: torch.Tensor, max_partners: int) -> torch.Tensor:
    """feats (N, P, d) -> partners (N, M) long: for each object the M most similar other objects
    (cosine of mean features), M = N - 1 when max_partners is 0 or >= N - 1."""
    N = feats.shape[0]
    M = N - 1 if max_partners <= 0 else min(max_partners, N - 1)
    if M <= 0:
        return torch.zeros(N, 0, dtype=torch.long, device=feats.device)
    g = F.normalize(feats.mean(dim=1), dim=-1)
    sim = g @ g.T
    sim.fill_diagonal_(-float("inf"))
    if M == N - 1:  # all others, in object order
        others = torch.arange(N, device=feats.device).expand(N, N)
        return others[~torch.eye(N, dtype=torch.bool, device=feats.device)].reshape(N, N - 1)
    return sim.topk(M, dim=1).indices


@torch.no_grad()
def correspondences(feats: torch.Tensor, partners: torch.Tensor, k: int) -> torch.Tensor:
    """Eq. 5: feats (N, P, d) beta-projected voxel features; partners (N, M) ->
    idx (N, P, M, k) long: for voxel i of object n, the k voxels of object partners[n, m] with the
    largest dot product beta(z_n[i]) . beta(z_m[j]) (k is capped at P)."""
    N, P, _ = feats.shape
    k = min(k, P)
    sims = torch.einsum("npd,nmqd->npmq", feats, feats[partners])  # (N, P, M, P)
    return sims.topk(k, dim=-1).indices


class SparseVoxelAttention(nn.Module):
    """Multi-head attention of each voxel over its correspondences in the partner objects (Eq. 6-7).

    x (N, P, D), partners (N, M), idx (N, P, M, k) -> (N, P, D). W_Q, W_K, W_V shared by all objects.
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.h, self.dh = heads, dim // heads
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, partners: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Computed without gathering per-correspondence keys and values (issue 13): the D-channel tokens x of the
        correspondences are gathered once, W_K is folded into the queries (q_h . (W_K,h x + b_K,h) =
        (W_K,h^T q_h) . x + a constant per query and head, which the softmax ignores) and W_V is applied after the
        weighted sum (sum_j a_j (W_V,h x_j + b_V,h) = W_V,h (sum_j a_j x_j) + b_V,h, the weights summing to 1).
        The same attention as gathering keys and values (tests/reference_impl.py), up to floating-point rounding."""
        N, P, D = x.shape
        M, k = partners.shape[1], idx.shape[-1]
        if M == 0:  # a single object has nobody to compare with
            return torch.zeros_like(x)
        h, dh = self.h, self.dh
        q = self.q(x).view(N, P, h, dh)
        qk = torch.einsum("nphe,hed->nphd", q, self.k.weight.view(h, dh, D) * dh ** -0.5)  # (N, P, h, D)
        xs = x.reshape(N * P, D)
        # flat row of each correspondence in (N * P): object partners[n, m], voxel idx[n, i, m, j]
        flat = (partners[:, None, :, None] * P + idx).reshape(N, P * M * k)  # (N, P*M*k)
        # objects per step: ~16 MB of gathered tokens (freshly mapped pages of a larger block cost more than the
        # gather; blocks below glibc's mmap threshold are reused from the heap)
        chunk = max(1, int(2 ** 22 // max(1, P * M * k * D)))
        outs = []
        for s in range(0, N, chunk):
            n = min(chunk, N - s)
            xg = xs.index_select(0, flat[s:s + n].reshape(-1)).view(n * P, M * k, D)  # (nP, Mk, D)
            # Eq. 7: one softmax over the correspondences in all partner objects together
            att = torch.bmm(qk[s:s + n].reshape(n * P, h, D), xg.transpose(1, 2)).softmax(-1)  # (nP, h, Mk)
            outs.append(torch.bmm(att, xg))  # (nP, h, D)
        y = torch.cat(outs) if len(outs) > 1 else outs[0]
        o = torch.einsum("phd,hed->phe", y, self.v.weight.view(h, dh, D)) + self.v.bias.view(h, dh)
        return self.out(o.reshape(N, P, D))


class VanillaAttention(nn.Module):
    """Multi-head self-attention over all voxels of all objects (ablation B / C). x (N, P, D) -> (N, P, D)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.h = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, partners=None, idx=None) -> torch.Tensor:
        N, P, D = x.shape
        qkv = self.qkv(x.reshape(1, N * P, D)).reshape(1, N * P, 3, self.h, D // self.h).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # (1, h, N*P, dh)
        return self.out(o.transpose(1, 2).reshape(N, P, D))


class AttentionBlock(nn.Module):
    """x + attn(LN(x)), then x + MLP(LN(x)); the attention's output projection starts at zero."""

    def __init__(self, dim: int, heads: int, sparse: bool):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = SparseVoxelAttention(dim, heads) if sparse else VanillaAttention(dim, heads)
        nn.init.zeros_(self.attn.out.weight)
        nn.init.zeros_(self.attn.out.bias)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x, partners=None, idx=None):
        x = x + self.attn(self.norm1(x), partners, idx)
        return x + self.mlp(self.norm2(x))


class ClassificationHead(nn.Module):
    """(N, D, r, r, r) -> logits (N,): log2(r) stride-2 3D convolutions down to 1^3, then a 2-layer MLP."""

    def __init__(self, dim: int, r: int, hidden: int):
        super().__init__()
        n_down = int(round(math.log2(r)))
        if 2 ** n_down != r:
            raise ValueError(f"roi_size must be a power of two, got {r}")
        layers = []
        for _ in range(n_down):
            layers += [nn.Conv3d(dim, dim, 3, stride=2, padding=1), nn.GroupNorm(min(8, dim), dim),
                       nn.ReLU(inplace=True)]
        self.down = nn.Sequential(*layers)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1))

    def forward(self, z):
        return self.mlp(self.down(z).flatten(1)).squeeze(-1)


class CrossInstanceMatcher(nn.Module):
    """Object volumes -> anomaly logits. Variant A: no attention; B, C: vanilla; full: sparse (Eq. 5-8).

    forward(z (N, C_in, r, r, r), corr_feats (N, P, d_f) or None, prior (N,) or None) -> logits (N,).
    With `scorer.matcher.prior`, prior is each object's robust z-score from the training-free comparison and the
    logit is head + prior_scale * (prior - prior_shift).
    """

    def __init__(self, cfg: ModelConfig, in_channels: int):
        super().__init__()
        m = cfg.scorer.matcher
        self.r, self.k, self.max_partners = m.roi_size, m.k, m.max_partners
        self.sparse = cfg.variant == "full"
        self.inp = nn.Linear(in_channels, m.dim)
        n_blocks = 0 if cfg.variant == "A" else m.blocks
        self.blocks = nn.ModuleList(AttentionBlock(m.dim, m.heads, self.sparse) for _ in range(n_blocks))
        self.norm = nn.LayerNorm(m.dim)
        self.head = ClassificationHead(m.dim, m.roi_size, m.head_hidden)
        self.use_prior = m.prior
        if m.prior:
            self.prior_scale = nn.Parameter(torch.tensor(1.0))
            self.prior_shift = nn.Parameter(torch.tensor(3.0))

    def forward(self, z: torch.Tensor, corr_feats: torch.Tensor | None = None,
                prior: torch.Tensor | None = None) -> torch.Tensor:
        N, r = z.shape[0], self.r
        x = self.inp(z.flatten(2).transpose(1, 2))  # (N, P, D)
        partners = idx = None
        if self.sparse and len(self.blocks):
            if corr_feats is None:
                raise ValueError("sparse voxel attention needs the beta-projected features of the objects")
            partners = select_partners(corr_feats, self.max_partners)
            idx = correspondences(corr_feats, partners, self.k)
        for block in self.blocks:
            x = block(x, partners, idx)
        x = self.norm(x).transpose(1, 2).reshape(N, -1, r, r, r)
        logits = self.head(x)
        if self.use_prior:
            if prior is None:
                raise ValueError("this model adds the training-free prior: pass each object's robust z-score")
            logits = logits + self.prior_scale * (prior.to(logits.dtype) - self.prior_shift)
        return logits
