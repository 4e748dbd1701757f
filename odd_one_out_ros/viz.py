"""Drawing: 3D boxes projected onto images, contact sheets. Pure (numpy + OpenCV), RGB uint8 images."""
from __future__ import annotations

import cv2
import numpy as np

from .geometry import Box3D, PinholeCamera

RED, GREEN, WHITE = (230, 40, 40), (40, 200, 60), (255, 255, 255)

def draw_box(image: np.ndarray, cam: PinholeCamera, box: Box3D, color=GREEN, text: str = "",
             thickness: int = 1, taken: list | None = None, font_scale: float = 0.35) -> np.ndarray:
    """Draw the 12 edges of `box` (world frame) on `image` (H, W, 3) in place; returns it. `text` goes above the
    box's projection (draw_label: on a dark plate, moved off the labels in `taken`).

    Edges with an end behind the camera are skipped.
    """
    anchor = box_edges(image, cam, box, color, thickness)
    if text and anchor is not None:
        draw_label(image, text, anchor, color, taken, font_scale)
    return image


def box_edges(image: np.ndarray, cam: PinholeCamera, box: Box3D, color=GREEN, thickness: int = 1
              ) -> tuple[int, int] | None:
    """The edges of draw_box; returns where its label goes (just above the top-left of the projection), None
    when a corner is behind the camera."""
    uv, z = cam.project(box.corners())
    for a, b in Box3D.EDGES:
        if z[a] > 0 and z[b] > 0:
            cv2.line(image, tuple(np.round(uv[a]).astype(int)), tuple(np.round(uv[b]).astype(int)), color,
                     thickness, cv2.LINE_AA)
    if not np.all(z > 0):
        return None
    x, y = np.round(uv.min(0)).astype(int)
    return int(x), int(y) - 3


def draw_label(image: np.ndarray, text: str, xy: tuple[int, int], color, taken: list | None = None,
               font_scale: float = 0.35) -> tuple[int, int, int, int]:
    """`text` with its baseline-left corner near xy. With `taken` (a list of (x0, y0, x1, y1) plates drawn
    already): on a dark plate inside the image, moved down or up by whole plate heights off those plates (the
    nearest free place within 6 tries), its plate appended. Without: the bare text (small images, `show`).
    Returns the text's plate (drawn or not)."""
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
    if taken is None:
        x, y = max(int(xy[0]), 0), max(int(xy[1]), 9)
        cv2.putText(image, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, font_scale, color, 1, cv2.LINE_AA)
        return x, y - th, x + tw, y + base
    h, w = image.shape[:2]
    pw, ph = tw + 4, th + base + 4
    x0 = min(max(int(xy[0]), 0), max(w - pw, 0))

    def plate(y_top):
        y_top = min(max(int(y_top), 0), max(h - ph, 0))
        return x0, y_top, x0 + pw, y_top + ph

    def free(r):
        return not any(r[0] < o[2] and o[0] < r[2] and r[1] < o[3] and o[1] < r[3] for o in taken)

    first = xy[1] - th - 2
    candidates = (plate(first + k * ph) for d in range(6) for k in ((d,) if d == 0 else (d, -d)))
    r = next((c for c in candidates if free(c)), None) or plate(first)
    cv2.rectangle(image, (r[0], r[1]), (r[2] - 1, r[3] - 1), (20, 20, 20), -1)
    cv2.putText(image, text, (r[0] + 2, r[1] + 2 + th), cv2.FONT_HERSHEY_SIMPLEX, font_scale, color, 1, cv2.LINE_AA)
    taken.append(r)
    return r


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
