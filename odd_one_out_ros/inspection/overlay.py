"""The detector's overlay image: every object's 3D box drawn on the views (red anomalous, green normal,
"id score" next to it, and "box" with the box estimator's own score when given), tiled into one image.
Pure (numpy + OpenCV), RGB uint8."""
from __future__ import annotations

import cv2
import numpy as np

from ..geometry import Box3D
from ..views import PosedView
from ..viz import GREEN, RED, contact_sheet, draw_box

__all__ = ["overlay_image"]


def overlay_image(views: list[PosedView], boxes: list[Box3D], scores: list[float], anomalous: list[bool],
                  max_views: int = 6, tile_width: int = 384, box_scores: list[float] | None = None) -> np.ndarray:
    """Up to `max_views` views resized to tiles of the first view's aspect ratio, at most tile_width wide,
    in rows of at most 5 of about equal length. box_scores: each box's score from the box estimator (drawn as
    "box 0.87"), or None."""
    if not views:
        raise ValueError("overlay needs at least one view")
    views = views[:max_views]
    h0, w0 = views[0].image.shape[:2]
    tw = min(tile_width, w0)
    th = max(1, round(h0 * tw / w0))
    tiles, captions = [], []
    for v in views:
        img = cv2.resize(v.image, (tw, th), interpolation=cv2.INTER_AREA)
        cam = v.camera.resized(tw, th)
        for i, (box, score, bad) in enumerate(zip(boxes, scores, anomalous)):
            text = f"{i} {score:.2f}" + (f" box {box_scores[i]:.2f}" if box_scores is not None else "")
            draw_box(img, cam, box, RED if bad else GREEN, text, thickness=2 if bad else 1)
        tiles.append(img)
        captions.append(v.source)
    rows = -(-len(tiles) // 5)
    return contact_sheet(tiles, -(-len(tiles) // rows), captions)
