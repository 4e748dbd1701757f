"""AprilTag board: its YAML description, its corners in the board (= world) frame, its raster image.

Board frame, tag frame and corner order: docs/frames.md, section "AprilTag board". In short:
origin at the centre of the printed sheet, x right and y up as printed, z out of the paper; tag
corners p0..p3 = bottom-left, bottom-right, top-right, top-left of the upright tag (counter-clockwise
seen from above), the order pupil-apriltags returns them in. Printed tags look like the official
AprilTag images (apriltag-imgs).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np

from ..fileio import read_yaml
from ..geometry.transforms import yaw_to_matrix

__all__ = ["BoardFileError", "TagPlacement", "TagBoard", "load_board", "board_from_dict", "board_image",
           "texture_to_board", "PRINTABLE_FAMILIES", "tag_corners_local"]

# families that cv2.aruco can draw (and pupil-apriltags detect): name -> (dictionary, number of ids)
PRINTABLE_FAMILIES = {"tag36h11": (cv2.aruco.DICT_APRILTAG_36h11, 587), "tag25h9": (cv2.aruco.DICT_APRILTAG_25h9, 35),
                      "tag16h5": (cv2.aruco.DICT_APRILTAG_16h5, 30)}
# bits across the black square (data bits + the 1-bit black border)
_BITS = {"tag36h11": 8, "tag25h9": 7, "tag16h5": 6}


class BoardFileError(ValueError):
    """A board description that cannot be read or is not valid; the message names the file."""


def tag_corners_local(size: float) -> np.ndarray:
    """Corners p0..p3 of a tag of edge `size` in its own frame (x right, y up, z out), (4, 3)."""
    h = size / 2
    return np.array([[-h, -h, 0.0], [h, -h, 0.0], [h, h, 0.0], [-h, h, 0.0]])


@dataclass(frozen=True)
class TagPlacement:
    """One tag on the board: centre (x, y) in metres, in-plane rotation `yaw` (radians, counter-clockwise
    seen from above, from board +x to the tag's x axis), edge `size` of its black square (metres)."""

    id: int
    x: float
    y: float
    yaw: float
    size: float

    def rotation(self) -> np.ndarray:
        """(3, 3) tag-to-board rotation (about z)."""
        return yaw_to_matrix(self.yaw)

    def corners(self) -> np.ndarray:
        """Corners p0..p3 in the board frame, (4, 3), z = 0."""
        return tag_corners_local(self.size) @ self.rotation().T + [self.x, self.y, 0.0]


@dataclass(frozen=True)
class TagBoard:
    """A planar board of AprilTags of one family. `sheet_size` (width, height) in metres is the
    printed sheet, centred on the board origin; `source` names the file it came from."""

    family: str
    tags: tuple[TagPlacement, ...]
    sheet_size: tuple[float, float]
    source: str = "<board>"

    @property
    def ids(self) -> list[int]:
        return [t.id for t in self.tags]

    def tag(self, tag_id: int) -> TagPlacement | None:
        return next((t for t in self.tags if t.id == tag_id), None)

    def corners(self) -> dict[int, np.ndarray]:
        """id -> (4, 3) corners in the board frame."""
        return {t.id: t.corners() for t in self.tags}


def board_from_dict(d, source: str = "<dict>") -> TagBoard:
    """Validate a board description (the YAML's mapping); BoardFileError names `source`."""
    def fail(msg):
        raise BoardFileError(f"{source}: {msg}")

    if not isinstance(d, dict):
        fail(f"expected a mapping with family, tag_size and tags, got {type(d).__name__}")
    family = str(d.get("family", "tag36h11"))
    if family not in PRINTABLE_FAMILIES:
        fail(f"family {family!r} not supported for boards; use one of {sorted(PRINTABLE_FAMILIES)}")
    try:
        default_size = float(d["tag_size"]) if "tag_size" in d else None
    except (TypeError, ValueError):
        fail(f"tag_size must be a number of metres, got {d.get('tag_size')!r}")
    rows = d.get("tags")
    if not isinstance(rows, list) or not rows:
        fail("tags must be a non-empty list of {id, x, y[, yaw_deg, size]}")
    tags = []
    for i, row in enumerate(rows):
        try:
            size = float(row.get("size", default_size))
            tag = TagPlacement(id=int(row["id"]), x=float(row["x"]), y=float(row["y"]),
                               yaw=float(np.radians(float(row.get("yaw_deg", 0.0)))), size=size)
        except (TypeError, KeyError, ValueError, AttributeError):
            fail(f"tags[{i}] must have numeric id, x, y (metres), optional yaw_deg and size "
                 f"(or a board-wide tag_size), got {row!r}")
        if not (np.isfinite([tag.x, tag.y, tag.yaw, tag.size]).all() and tag.size > 0):
            fail(f"tags[{i}] (id {tag.id}): sizes must be > 0 and values finite")
        if not 0 <= tag.id < PRINTABLE_FAMILIES[family][1]:
            fail(f"tag id {tag.id} does not exist in {family} (ids 0..{PRINTABLE_FAMILIES[family][1] - 1})")
        tags.append(tag)
    ids = [t.id for t in tags]
    if len(set(ids)) != len(ids):
        fail(f"tag ids must be unique, got {ids}")
    # each tag needs a white quiet zone of one bit around its black square: no two zones may overlap
    grow = 1 + 2 / _BITS[family]
    zones = [(t, (t.corners()[:, :2] - [t.x, t.y]) * grow + [t.x, t.y]) for t in tags]
    for a in range(len(zones)):
        for b in range(a + 1, len(zones)):
            area, _ = cv2.intersectConvexConvex(zones[a][1].astype(np.float32), zones[b][1].astype(np.float32))
            if area > 1e-12:
                fail(f"tags {zones[a][0].id} and {zones[b][0].id} overlap (with their one-bit white border)")
    extent = np.abs(np.concatenate([z for _, z in zones])).max(axis=0) * 2
    sheet = d.get("sheet_size")
    if sheet is None:
        sheet = tuple(float(e) + 0.02 for e in extent)  # 1 cm margin beyond the quiet zones
    try:
        sheet = (float(sheet[0]), float(sheet[1]))
    except (TypeError, ValueError, IndexError, KeyError):
        fail(f"sheet_size must be [width, height] in metres, got {sheet!r}")
    if sheet[0] < extent[0] - 1e-9 or sheet[1] < extent[1] - 1e-9:
        fail(f"sheet_size {list(sheet)} m is smaller than the tags with their borders "
             f"({extent[0]:.4f} x {extent[1]:.4f} m, centred on the origin)")
    return TagBoard(family=family, tags=tuple(tags), sheet_size=sheet, source=source)


def load_board(path: str | os.PathLike) -> TagBoard:
    """Read a board YAML (format: calibration/board_8tags.yaml); BoardFileError names the file."""
    return board_from_dict(read_yaml(path, BoardFileError, "board file"), source=str(path))


def texture_to_board(shape: tuple[int, int], px_per_metre: float) -> np.ndarray:
    """(3, 3) map from pixel (u, v, 1) of a board image of `shape` (H, W) to board (x, y, 1).

    The image is centred on the board origin, rows go down (-y); pixel centres at integer (u, v).
    """
    h, w = shape[:2]
    s = 1.0 / px_per_metre
    return np.array([[s, 0.0, (0.5 - w / 2) * s], [0.0, -s, (h / 2 - 0.5) * s], [0.0, 0.0, 1.0]])


def _tag_bits(family: str, tag_id: int) -> np.ndarray:
    """The black square of one tag as (bits, bits) uint8, upright as in the official AprilTag images."""
    dictionary = cv2.aruco.getPredefinedDictionary(PRINTABLE_FAMILIES[family][0])
    marker = cv2.aruco.generateImageMarker(dictionary, tag_id, _BITS[family], borderBits=1)
    return np.ascontiguousarray(marker[::-1, ::-1])  # cv2.aruco draws AprilTags rotated by 180 degrees


def board_image(board: TagBoard, px_per_metre: float, caption: str | None = None) -> np.ndarray:
    """The printed sheet as a grayscale image (H, W) uint8 at `px_per_metre`, white background.

    Each tag's bits are sampled with nearest neighbour, so tag edges are exact when tag corners fall
    on pixel boundaries (e.g. 4000 px/m for boards laid out on a 0.25 mm grid). With `caption`, a
    line of text and a 100 mm scale bar are drawn in the bottom margin, if there is room.
    """
    w, h = (int(round(v * px_per_metre)) for v in board.sheet_size)
    img = np.full((h, w), 255, np.uint8)
    A = texture_to_board((h, w), px_per_metre)
    for t in board.tags:
        bits = _tag_bits(board.family, t.id)
        n = bits.shape[0]
        # board (x, y) -> tag-local (x, y) -> bit grid (column, row), pixel centres at integers
        to_local = np.eye(3)
        to_local[:2, :2] = t.rotation()[:2, :2].T
        to_local[:2, 2] = -to_local[:2, :2] @ [t.x, t.y]
        to_bits = np.array([[n / t.size, 0.0, n / 2 - 0.5], [0.0, -n / t.size, n / 2 - 0.5], [0.0, 0.0, 1.0]])
        M = (to_bits @ to_local @ A)[:2]
        flags = cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
        drawn = cv2.warpAffine(bits, M, (w, h), flags=flags, borderValue=255)
        inside = cv2.warpAffine(np.ones_like(bits), M, (w, h), flags=flags, borderValue=0).astype(bool)
        img[inside] = drawn[inside]
    if caption:
        _draw_caption(img, board, px_per_metre, caption)
    return img


def _draw_caption(img: np.ndarray, board: TagBoard, ppm: float, caption: str) -> None:
    """Caption and a 100 mm scale bar in the bottom margin (below every tag's quiet zone), if room."""
    lowest = min((t.corners()[:, 1].min() - t.size / _BITS[board.family] for t in board.tags))
    room = lowest + board.sheet_size[1] / 2  # metres between the sheet's bottom edge and the tags
    if room < 0.008:
        return
    text_h = min(0.003, room / 3)
    scale = text_h * ppm / 22.0  # FONT_HERSHEY_SIMPLEX is about 22 px high at scale 1
    thick = max(1, int(round(scale * 1.5)))
    y0 = img.shape[0] - int((room - text_h) / 2 * ppm)  # baseline, centred in the margin
    x0 = int(round(0.01 * ppm))
    bar = int(round(0.1 * ppm))
    bar_y = y0 - int(text_h * 0.4 * ppm)
    if x0 + bar < img.shape[1]:
        cv2.rectangle(img, (x0, bar_y - max(1, int(0.0005 * ppm))), (x0 + bar, bar_y), 0, -1)
        x_text = x0 + bar + int(0.005 * ppm)
    else:
        x_text = x0
    cv2.putText(img, caption, (x_text, y0), cv2.FONT_HERSHEY_SIMPLEX, scale, 0, thick, cv2.LINE_AA)
