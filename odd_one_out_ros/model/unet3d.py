"""E_3D: a multi-scale 3D encoder-decoder CNN that refines the back-projected feature volume.

Layout. Every module of the package exchanges volumes as (B, C, Z, Y, X) (docs/frames.md). Inside this
network the same tensor runs permuted to (B, C, X, Y, Z): PyTorch's CPU conv3d takes its slow native
kernel instead of oneDNN when N * C * D * H <= 20480 (its heuristic ignores the last dimension), and with
the short z axis (12-16 voxels) as D every level of the cpu config falls below that. The lower levels
stay below it in any order (32 channels x 24 x 24 at half resolution), so `fast_conv3d` also folds the
volume into a batch of two halves with a one-voxel halo (exactly the same convolution; oneDNN is used
for any batch > 1). The kernels keep the (out, in, kz, ky, kx) order of an nn.Conv3d on the
(B, C, Z, Y, X) layout and are permuted on the fly, so checkpoints are the same in both layouts
(tests/test_train_speed.py checks the outputs against the original formulation).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

NATIVE_CONV3D_LIMIT = 20480
"""PyTorch (2.x, aten/src/ATen/native/Convolution.cpp, use_mkldnn) runs a CPU float conv3d of batch 1 with its
slow native kernel when N * C * D * H of the input is at most this"""


def swap_xz(volume: torch.Tensor) -> torch.Tensor:
    """(B, C, Z, Y, X) <-> (B, C, X, Y, Z) (contiguous): the permutation is its own inverse."""
    return volume.permute(0, 1, 4, 3, 2).contiguous()


def _native_slow_path(x: torch.Tensor) -> bool:
    N, C, D, H = x.shape[:4]
    return (x.device.type == "cpu" and x.dtype == torch.float32 and N == 1 and N * C * D * H <= NATIVE_CONV3D_LIMIT
            and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled)


def fast_conv3d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: tuple[int, int, int],
                padding: tuple[int, int, int]) -> torch.Tensor:
    """F.conv3d(x, weight, bias, stride, padding) (dilation 1, one group) that avoids PyTorch's slow native CPU
    kernel: a batch-1 input that would take it is cut along D into two overlapping halves (the halo the kernel
    needs, zero padding at the outer ends), convolved as a batch of 2 (oneDNN) and put back together.
    x (N, C, D, H, W) -> (N, C_out, D', H', W'), the same values as F.conv3d up to float rounding."""
    if not _native_slow_path(x):
        return F.conv3d(x, weight, bias, stride, padding)
    D = x.shape[2]
    k, s, p = weight.shape[2], stride[0], padding[0]
    d_out = (D + 2 * p - k) // s + 1
    if d_out < 2:
        return F.conv3d(x, weight, bias, stride, padding)
    half = (d_out + 1) // 2  # output rows per piece
    span = (half - 1) * s + k  # input rows (padded) one piece reads
    need = half * s + span  # padded input rows both pieces read
    xp = F.pad(x, (0, 0, 0, 0, p, need - D - p))  # zeros = the convolution's own padding (negative: crop)
    pieces = torch.cat([xp[:, :, :span], xp[:, :, half * s:half * s + span]])  # (2, C, span, H, W)
    y = F.conv3d(pieces, weight, bias, stride, (0, padding[1], padding[2]))  # (2, C_out, half, H', W')
    return torch.cat([y[:1], y[1:]], dim=2)[:, :, :d_out]


class VolumeConv3d(nn.Conv3d):
    """An nn.Conv3d whose weight is stored for the (B, C, Z, Y, X) layout (kernel order kz, ky, kx) but that is
    applied to volumes in the (B, C, X, Y, Z) layout: (B, C_in, X, Y, Z) -> (B, C_out, X', Y', Z')."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dilation != (1, 1, 1) or self.groups != 1 or self.padding_mode != "zeros":
            raise NotImplementedError("VolumeConv3d supports dilation 1, one group and zero padding")
        w = self.weight.permute(0, 1, 4, 3, 2)
        return fast_conv3d(x, w, self.bias, self.stride[::-1], self.padding[::-1])


class PointwiseConv3d(nn.Conv3d):
    """A 1x1x1 nn.Conv3d (the same parameters, so the same checkpoints) computed as one matrix product over
    channels-last voxels, in any volume layout: (B, C_in, D, H, W) -> (B, C_out, D, H, W), the result with
    channels-last strides (PyTorch's CPU conv3d unfolds a 1x1x1 kernel into a copy first). A chain of them
    (the per-voxel heads) copies nothing in between."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.movedim(1, -1), self.weight.flatten(1), self.bias).movedim(-1, 1)


def norm3d(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, c), c)


class ResBlock3d(nn.Module):
    """x + conv(relu(norm(conv(relu(norm(x)))))) ; (B, C, X, Y, Z) -> same."""

    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(norm3d(c), nn.ReLU(inplace=True), VolumeConv3d(c, c, 3, padding=1),
                                  norm3d(c), nn.ReLU(inplace=True), VolumeConv3d(c, c, 3, padding=1))

    def forward(self, x):
        return x + self.body(x)


class UNet3D(nn.Module):
    """(B, in_ch + 1, Z, Y, X) (features and the seen-by-any-view mask) -> (B, out_ch, Z, Y, X).

    len(channels) scales; stride-2 convolutions down, trilinear upsampling + concatenated skips up.
    Odd sizes are fine (upsampling goes to the skip's exact size). Computed in the (B, C, X, Y, Z) layout
    (module docstring); `forward_xyz` takes and returns that layout.
    """

    def __init__(self, in_ch: int, out_ch: int, channels: tuple[int, ...], blocks: tuple[int, ...]):
        super().__init__()
        conv = VolumeConv3d
        self.stem = conv(in_ch + 1, channels[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.enc = nn.ModuleList()
        for i, (c, n) in enumerate(zip(channels, blocks)):
            self.down.append(nn.Identity() if i == 0 else conv(channels[i - 1], c, 3, stride=2, padding=1))
            self.enc.append(nn.Sequential(*[ResBlock3d(c) for _ in range(n)]))
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in range(len(channels) - 1, 0, -1):
            self.up.append(conv(channels[i] + channels[i - 1], channels[i - 1], 3, padding=1))
            self.dec.append(ResBlock3d(channels[i - 1]))
        self.out = nn.Sequential(norm3d(channels[0]), nn.ReLU(inplace=True), PointwiseConv3d(channels[0], out_ch))

    def forward_xyz(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, in_ch + 1, X, Y, Z) (features and seen mask concatenated) -> (B, out_ch, X, Y, Z)."""
        x = self.stem(x)
        skips = []
        for down, enc in zip(self.down, self.enc):
            x = enc(down(x))
            skips.append(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-3:], mode="trilinear", align_corners=False)
            x = dec(up(torch.cat([x, skip], dim=1)))
        return self.out(x)

    def forward(self, volume: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
        """volume (B, in_ch, Z, Y, X), seen (B, 1, Z, Y, X) -> (B, out_ch, Z, Y, X)."""
        return swap_xz(self.forward_xyz(swap_xz(torch.cat([volume, seen], dim=1))))
