"""Per-voxel heads on the refined volume F_v (1x1x1 convolutions): density, colour, projector beta.

The 1x1x1 convolutions are `PointwiseConv3d` (nn.Conv3d parameters, computed as matrix products over
channels-last voxels); outputs are (B, C, Z, Y, X) tensors with channels-last strides, which the
renderer's feature integration reads in place.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .unet3d import PointwiseConv3d


class PointwiseMLP(nn.Sequential):
    """1x1x1 convolutions (`PointwiseConv3d`) with ReLUs between them, run as one chain of matrix products on
    the channels-last voxels: (B, c_in, Z, Y, X) -> (B, c_out, Z, Y, X) (channels-last strides)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cl = x.movedim(1, -1)  # (B, Z, Y, X, C)
        y = cl.reshape(-1, cl.shape[-1])  # (voxels, C): 2D, so that the in-place ReLUs act on whole tensors
        for m in self:
            y = F.linear(y, m.weight.flatten(1), m.bias) if isinstance(m, PointwiseConv3d) else m(y)
        return y.reshape(*cl.shape[:-1], -1).movedim(-1, 1)


def mlp3d(c_in: int, c_hidden: int, c_out: int, layers: int) -> PointwiseMLP:
    """`layers` 1x1x1 convolutions with ReLU between them: (B, c_in, Z, Y, X) -> (B, c_out, Z, Y, X)."""
    mods, c = [], c_in
    for _ in range(layers - 1):
        mods += [PointwiseConv3d(c, c_hidden), nn.ReLU(inplace=True)]
        c = c_hidden
    mods.append(PointwiseConv3d(c, c_out))
    return PointwiseMLP(*mods)


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
