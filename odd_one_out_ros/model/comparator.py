"""A learned comparison of instances on the training-free comparison's cells (issue 22, MatcherConfig.comparator).

The training-free comparison (model/baseline.py) lifts frozen 2D features into a G^3 grid of cells in every box's
own frame and scores an object by how far its cells lie from their best match in the other instances. The
comparator keeps that structure and learns what the fixed rule cannot:

1. per cell and partner, four distances: 1 - cosine of the fixed descriptors and of a learned projection of
   them, at the same cell after the best of 4 turns of the partner's grid about z (chosen per pair on the fixed
   descriptors, as the baseline does), and the best match over all of the partner's cells (turn-free);
2. over the partners: the nearest and the mean of the nearer half (MuSc's interval averaging), so that another
   anomalous instance does not lift a score;
3. the same eight features relative to the scene (minus their median over the objects of the scene, per cell):
   odd one out, not "unusual for this category";
4. a small 3D CNN over the cell grid (valid cells only), masked mean and max pooling, an MLP -> a residual
   added to the baseline's own robust z-score through a learned scale and shift (the residual starts at zero,
   so an untrained comparator ranks exactly as the baseline).

Inputs per scene: cells (N, P, C) with P = G^3 (cell order x, y, z of the box frame, baseline.cell_points),
valid (N, P) bool (a view saw the cell). Output: logits (N,). Pure torch; device follows the inputs.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .baseline import BaselineConfig, object_scores, rotation_perms

N_FEATURES = 8
"""per-cell features before the scene-relative copy: 4 distances x (nearest, nearer-half mean)"""


def robust_z_torch(s: torch.Tensor, mad_floor: float) -> torch.Tensor:
    """baseline.robust_z in torch: s (N,) -> (N,); zeros for N < 3. (The numpy one serves the baseline's callers.)"""
    if s.numel() < 3:
        return torch.zeros_like(s)
    med = s.quantile(0.5)  # as np.median: the mean of the two middle values for an even N (torch.median: the lower)
    mad = 1.4826 * (s - med).abs().quantile(0.5)
    return (s - med) / torch.clamp(torch.maximum(mad, mad_floor * med.abs()), min=1e-6)


class CellComparator(nn.Module):
    """cells (N, P, C), valid (N, P) -> (logits (N,), baseline raw scores (N,)).

    The raw scores are the training-free comparison's (score_cells with the cpu preset's BaselineConfig: one scale,
    radius 0, 4 turns, nearest partner, mean over all cells), computed on the way."""

    def __init__(self, in_channels: int, grid: int, dim: int = 32, hidden: int = 32, mad_floor: float = 0.05,
                 prior_shift: float = 3.0):
        super().__init__()
        self.g, self.mad_floor = grid, mad_floor
        self.baseline_cfg = BaselineConfig(grid=grid)
        self.register_buffer("perms", torch.from_numpy(rotation_perms(grid, 4)).long(), persistent=False)
        self.proj = nn.Sequential(nn.Linear(in_channels, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.cell_in = nn.Linear(2 * N_FEATURES + 1, hidden)
        self.conv = nn.Sequential(nn.Conv3d(hidden, hidden, 3, padding=1), nn.GELU(),
                                  nn.Conv3d(hidden, hidden, 3, padding=1), nn.GELU())
        self.out = nn.Sequential(nn.Linear(2 * hidden + 1, hidden), nn.GELU(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)
        self.prior_scale = nn.Parameter(torch.tensor(1.0))
        self.prior_shift = nn.Parameter(torch.tensor(prior_shift))

    def distances(self, cells: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> per-cell features (N, P, 2 * N_FEATURES) and the baseline's raw scores (N,)."""
        N, P, _ = cells.shape
        vm = valid.float()
        fixed = F.normalize(cells.float(), dim=-1)
        learned = F.normalize(self.proj(cells.float()), dim=-1)
        feats = []
        loc_fixed = None
        for i, e in enumerate((fixed, learned)):
            S = torch.einsum("ipc,jqc->ipjq", e, e).masked_fill(~valid[None, None], -2.0)  # (N, P, N, P)
            glob = S.max(-1).values  # (N, P, N)
            # turn r: cell p of i against cell perms[r, p] of j
            loc = torch.stack([S.gather(3, perm.view(1, P, 1, 1).expand(N, P, N, 1))[..., 0]
                               for perm in self.perms])  # (R, N, P, N)
            if i == 0:  # the turn per pair (i, j): on the fixed descriptors, the mean over i's valid cells
                mean_r = (loc * vm[None, :, :, None]).sum(2) / vm.sum(1).clamp(min=1)[None, :, None]  # (R, N, N)
                best = mean_r.argmax(0)  # (N, N)
            loc = loc.gather(0, best[None, :, None, :].expand(1, N, P, N))[0]  # (N, P, N)
            if i == 0:
                loc_fixed = loc
            feats += [(1 - loc).clamp(min=0), (1 - glob).clamp(min=0)]
        eye = torch.eye(N, dtype=torch.bool, device=cells.device)[:, None, :]
        half = max(1, (N - 1) // 2)
        out = []
        for d in feats:  # (N, P, N) -> nearest, nearer-half mean over the partners
            d = d.masked_fill(eye, float("inf"))
            srt = d.sort(-1).values[..., :max(1, N - 1)]
            out += [srt[..., 0], srt[..., :half].mean(-1)]
        x = torch.stack(out, dim=-1) if N > 1 else cells.new_zeros(N, P, N_FEATURES)  # (N, P, 8)
        x = x * vm[..., None]
        med = x.median(dim=0).values if N > 1 else torch.zeros_like(x[0])
        x = torch.cat([x, (x - med[None]) * vm[..., None]], dim=-1)
        # the baseline's raw score: mean over the valid cells of the distance to the nearest partner (fixed, turned)
        if N > 1:
            d0 = (1 - loc_fixed).clamp(min=0).masked_fill(eye, float("inf")).min(-1).values  # (N, P)
            raw = object_scores(d0, valid, self.baseline_cfg)  # the baseline's own reduction: the same digits
        else:
            raw = cells.new_zeros(N)
        return x, raw

    def forward(self, cells: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        N, P, _ = cells.shape
        if N == 0:
            z = cells.new_zeros(0)
            return z, z
        x, raw = self.distances(cells, valid)
        prior = robust_z_torch(raw.double(), self.mad_floor).to(x.dtype)
        vm = valid.float()
        h = F.gelu(self.cell_in(torch.cat([x, vm[..., None]], dim=-1))) * vm[..., None]  # (N, P, h)
        g = self.g
        h = self.conv(h.transpose(1, 2).reshape(N, -1, g, g, g)).flatten(2).transpose(1, 2) * vm[..., None]
        n = vm.sum(1, keepdim=True).clamp(min=1)
        pooled = torch.cat([h.sum(1) / n, h.masked_fill(~valid[..., None], -1e4).max(1).values.clamp(min=-10),
                            prior[:, None]], dim=-1)
        logits = self.out(pooled)[:, 0] + self.prior_scale * (prior - self.prior_shift)
        return logits, raw

