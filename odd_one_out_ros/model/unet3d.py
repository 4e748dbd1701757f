"""E_3D: a multi-scale 3D encoder-decoder CNN that refines the back-projected feature volume."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def norm3d(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, c), c)


class ResBlock3d(nn.Module):
    """x + conv(relu(norm(conv(relu(norm(x)))))) ; (B, C, Z, Y, X) -> same."""

    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(norm3d(c), nn.ReLU(inplace=True), nn.Conv3d(c, c, 3, padding=1),
                                  norm3d(c), nn.ReLU(inplace=True), nn.Conv3d(c, c, 3, padding=1))

    def forward(self, x):
        return x + self.body(x)


class UNet3D(nn.Module):
    """(B, in_ch + 1, Z, Y, X) (features and the seen-by-any-view mask) -> (B, out_ch, Z, Y, X).

    len(channels) scales; stride-2 convolutions down, trilinear upsampling + concatenated skips up.
    Odd sizes are fine (upsampling goes to the skip's exact size).
    """

    def __init__(self, in_ch: int, out_ch: int, channels: tuple[int, ...], blocks: tuple[int, ...]):
        super().__init__()
        self.stem = nn.Conv3d(in_ch + 1, channels[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.enc = nn.ModuleList()
        for i, (c, n) in enumerate(zip(channels, blocks)):
            self.down.append(nn.Identity() if i == 0 else nn.Conv3d(channels[i - 1], c, 3, stride=2, padding=1))
            self.enc.append(nn.Sequential(*[ResBlock3d(c) for _ in range(n)]))
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in range(len(channels) - 1, 0, -1):
            self.up.append(nn.Conv3d(channels[i] + channels[i - 1], channels[i - 1], 3, padding=1))
            self.dec.append(ResBlock3d(channels[i - 1]))
        self.out = nn.Sequential(norm3d(channels[0]), nn.ReLU(inplace=True), nn.Conv3d(channels[0], out_ch, 1))

    def forward(self, volume: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
        x = self.stem(torch.cat([volume, seen], dim=1))
        skips = []
        for down, enc in zip(self.down, self.enc):
            x = enc(down(x))
            skips.append(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-3:], mode="trilinear", align_corners=False)
            x = dec(up(torch.cat([x, skip], dim=1)))
        return self.out(x)
