"""A posed view: one image with the calibrated camera that took it. Pure: no ROS imports."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry import PinholeCamera


@dataclass(frozen=True)
class PosedView:
    """image: (H, W, 3) uint8 RGB; camera: intrinsics + world-to-camera pose (docs/frames.md);
    stamp: seconds; source: camera name or file it came from."""

    image: np.ndarray
    camera: PinholeCamera
    stamp: float = 0.0
    source: str = ""

    def __post_init__(self):
        img = self.image
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"{self.source}: image must be (H, W, 3) uint8 RGB, got {img.shape} {img.dtype}")
        if img.shape[:2] != (self.camera.height, self.camera.width):
            raise ValueError(f"{self.source}: image is {img.shape[1]}x{img.shape[0]} but its camera_info says "
                             f"{self.camera.width}x{self.camera.height}")
