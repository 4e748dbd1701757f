"""Per-voxel heads on the refined volume F_v (1x1x1 convolutions): density, colour, projector beta."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def mlp3d(c_in: int, c_hidden: int, c_out: int, layers: int) -> nn.Sequential:
    """`layers` 1x1x1 convolutions with ReLU between them: (B, c_in, Z, Y, X) -> (B, c_out, Z, Y, X)."""
    mods, c = [], c_in
    for _ in range(layers - 1):
        mods += [nn.Conv3d(c, c_hidden, 1), nn.ReLU(inplace=True)]
        c = c_hidden
    mods.append(nn.Conv3d(c, c_out, 1))
    return nn.Sequential(*mods)


class DensityHead(nn.Module):
    """alpha_sigma: F_v (B, d, Z, Y, X) -> density sigma >= 0 (B, 1, Z, Y, X), in 1/m.

    softplus keeps sigma non-negative (the reference leaves it unconstrained); the bias starts
    low so an untrained volume is nearly empty rather than a fog.
    """

    def __init__(self, d: int, hidden: int = 64):
        super().__init__()
        self.net = mlp3d(d, hidden, 1, 2)
        nn.init.constant_(self.net[-1].bias, -4.0)

    def forward(self, fv):
        return F.softplus(self.net(fv)) * 20.0  # scale: softplus(0) * 20 = 13.9 / m


class ColourHead(nn.Module):
    """alpha_c: F_v (B, d, Z, Y, X) -> RGB in [0, 1] (B, 3, Z, Y, X)."""

    def __init__(self, d: int, hidden: int = 64):
        super().__init__()
        self.net = mlp3d(d, hidden, 3, 2)

    def forward(self, fv):
        return torch.sigmoid(self.net(fv))


class Projector(nn.Module):
    """beta: F_v (B, d, Z, Y, X) -> feature field V_f (B, d_f, Z, Y, X), 4 layers (paper)."""

    def __init__(self, d: int, d_f: int, hidden: int = 128):
        super().__init__()
        self.net = mlp3d(d, hidden, d_f, 4)

    def forward(self, fv):
        return self.net(fv)
