"""The detector's overlay image: every object's 3D box drawn on the views (red anomalous, green normal,
"id score" next to it on a plate that overlaps no other label, and "box" with the box estimator's own score when
given), tiled into one image.
Pure (numpy + OpenCV), RGB uint8."""
from __future__ import annotations

import cv2
import numpy as np

from ..geometry import Box3D
from ..views import PosedView
from ..viz import GREEN, RED, WHITE, box_edges, contact_sheet, draw_label

__all__ = ["overlay_image"]


def overlay_image(views: list[PosedView], boxes: list[Box3D], scores: list[float], anomalous: list[bool],
                  max_views: int = 6, tile_width: int = 384, box_scores: list[float] | None = None) -> np.ndarray:
    """Up to `max_views` views resized to tiles of the first view's aspect ratio, at most tile_width wide (views
    under 256 px are enlarged to 256, so labels are readable), in rows of at most 5 of about equal length. Labels
    "<index> <score>" on dark plates that do not overlap; the anomalous ones, then the highest scores, placed first
    (nearest their boxes). box_scores: each box's score from the box estimator (drawn as "box 0.87"), or None.
    No view (a verdict the model did not run on): one dark 256 x 256 tile saying so, to replace the last overlay."""
    if not views:
        tile = np.full((256, 256, 3), 20, np.uint8)
        draw_label(tile, "no usable view", (10, 128), WHITE, font_scale=0.6)
        return tile
    views = views[:max_views]
    h0, w0 = views[0].image.shape[:2]
    tile_width = min(tile_width, max(w0, 256))  # (not larger than the view, but 256 px at least: readable labels)
    th = max(1, round(h0 * tile_width / w0))
    order = sorted(range(min(len(boxes), len(scores), len(anomalous))), key=lambda i: (not anomalous[i], -scores[i]))
    font = 0.4 if tile_width < 384 else 0.45
    tiles, captions = [], []
    for v in views:
        img = cv2.resize(v.image, (tile_width, th), interpolation=cv2.INTER_AREA if tile_width < w0 else
                         cv2.INTER_LINEAR)
        cam = v.camera.resized(tile_width, th)
        anchors = {i: box_edges(img, cam, boxes[i], RED if anomalous[i] else GREEN, 2 if anomalous[i] else 1)
                   for i in order}
        taken: list = []
        for i in order:  # labels after every box's edges: no edge crosses a label
            if anchors[i] is not None:
                text = f"{i} {scores[i]:.2f}" + (f" box {box_scores[i]:.2f}" if box_scores is not None else "")
                draw_label(img, text, anchors[i], RED if anomalous[i] else GREEN, taken, font)
        tiles.append(img)
        captions.append(v.source)
    rows = -(-len(tiles) // 5)
    return contact_sheet(tiles, -(-len(tiles) // rows), captions)
