"""Drawing: 3D boxes projected onto images, contact sheets. Pure (numpy + OpenCV), RGB uint8 images."""
from __future__ import annotations

import cv2
import numpy as np

from .geometry import Box3D, PinholeCamera

RED, GREEN, WHITE = (230, 40, 40), (40, 200, 60), (255, 255, 255)

def draw_box(image: np.ndarray, cam: PinholeCamera, box: Box3D, color=GREEN, text: str = "",
             thickness: int = 1) -> np.ndarray:
    """Draw the 12 edges of `box` (world frame) on `image` (H, W, 3) in place; returns it.

    Edges with an end behind the camera are skipped.
    """
    uv, z = cam.project(box.corners())
    for a, b in Box3D.EDGES:
        if z[a] > 0 and z[b] > 0:
            cv2.line(image, tuple(np.round(uv[a]).astype(int)), tuple(np.round(uv[b]).astype(int)), color,
                     thickness, cv2.LINE_AA)
    if text and np.all(z > 0):
        x, y = np.round(uv.min(0)).astype(int)
        cv2.putText(image, text, (max(x, 0), max(y - 3, 9)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, color, 1, cv2.LINE_AA)
    return image


def contact_sheet(images: list[np.ndarray], cols: int = 5, captions: list[str] | None = None) -> np.ndarray:
    """Tile equally sized (H, W, 3) images into a grid, optional caption on each."""
    if not images:
        raise ValueError("contact_sheet needs at least one image")
    h, w = images[0].shape[:2]
    rows = -(-len(images) // cols)
    sheet = np.zeros((rows * h, min(cols, len(images)) * w, 3), np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        tile = np.ascontiguousarray(img[..., :3])
        if captions:
            tile = tile.copy()
            cv2.putText(tile, captions[i], (4, h - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, WHITE, 1, cv2.LINE_AA)
        sheet[r * h:(r + 1) * h, c * w:(c + 1) * w] = tile
    return sheet
