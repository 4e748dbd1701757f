"""AprilTag detection with pupil-apriltags, and reading images for it.

One pupil_apriltags.Detector per family is created for the whole process and reused (creating many
has crashed the library). Corners come back in pupil-apriltags' order p0..p3 (bottom-left,
bottom-right, top-right, top-left of the upright tag) and in the OpenCV pixel-centre convention of
docs/frames.md: pupil-apriltags puts the origin at the top-left corner of the first pixel, so its
coordinates are shifted by -0.5 px here (measured: +0.498 px bias before the shift on synthetic
renders whose chessboard corners OpenCV finds unbiased; pinned by tests/test_calibration.py).
"""
from __future__ import annotations

import atexit
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

__all__ = ["ImageReadError", "TagDetection", "FAMILIES", "get_detector", "detect_tags", "read_gray"]

FAMILIES = ("tag36h11", "tag25h9", "tag16h5", "tagCircle21h7", "tagCircle49h12", "tagStandard41h12",
            "tagStandard52h13", "tagCustom48h12")

_PIXEL_SHIFT = 0.5  # pupil-apriltags pixel (0, 0) is the corner of the first pixel; ours is its centre
_DETECTORS: dict = {}
_LOCK = threading.Lock()


@atexit.register
def _disarm_detectors() -> None:
    """Leave the detectors to the OS at exit: pupil-apriltags' Detector.__del__ segfaults now and then
    during interpreter shutdown (3 of 23 runs of a 10-image script here, inside its tag36h11_destroy)."""
    for det in _DETECTORS.values():
        det.tag_detector_ptr = None


class ImageReadError(ValueError):
    """An image that cannot be read; the message names the file."""


@dataclass(frozen=True)
class TagDetection:
    """One detected tag. corners (4, 2) pixels, p0..p3 (docs/frames.md); center (2,) pixels."""

    family: str
    id: int
    corners: np.ndarray
    center: np.ndarray
    hamming: int
    decision_margin: float


def get_detector(family: str = "tag36h11"):
    """The process's one pupil_apriltags.Detector for `family` (created on first use).

    Full resolution (quad_decimate 1) and edge refinement: corner accuracy matters more here than speed.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown AprilTag family {family!r}; pupil-apriltags knows {list(FAMILIES)}")
    with _LOCK:
        if family not in _DETECTORS:
            from pupil_apriltags import Detector

            _DETECTORS[family] = Detector(families=family, nthreads=1, quad_decimate=1.0, quad_sigma=0.0,
                                          refine_edges=1, decode_sharpening=0.25)
        return _DETECTORS[family]


def detect_tags(gray: np.ndarray, family: str = "tag36h11", max_hamming: int = 1) -> list[TagDetection]:
    """Detect tags in a grayscale (H, W) uint8 image (BGR (H, W, 3) is converted).

    Detections with more than `max_hamming` corrected bits are dropped; if an id is seen twice, only
    the detection with the larger decision margin is kept. Sorted by id.
    """
    gray = np.asarray(gray)
    if gray.ndim == 3:
        gray = cv2.cvtColor(gray, cv2.COLOR_BGR2GRAY)
    if gray.dtype != np.uint8:
        raise ValueError(f"detect_tags needs an 8-bit image, got {gray.dtype}")
    detector = get_detector(family)
    with _LOCK:  # the C detector is not re-entrant
        raw = detector.detect(np.ascontiguousarray(gray))
    best: dict[int, TagDetection] = {}
    for r in raw:
        if r.hamming > max_hamming:
            continue
        det = TagDetection(family=family, id=int(r.tag_id),
                           corners=np.asarray(r.corners, np.float64).reshape(4, 2) - _PIXEL_SHIFT,
                           center=np.asarray(r.center, np.float64).reshape(2) - _PIXEL_SHIFT, hamming=int(r.hamming),
                           decision_margin=float(r.decision_margin))
        if det.id not in best or det.decision_margin > best[det.id].decision_margin:
            best[det.id] = det
    return [best[k] for k in sorted(best)]


def read_gray(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as grayscale (H, W) uint8; ImageReadError names the file."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such image file")
    data = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
    if img is None:
        raise ImageReadError(f"{path}: cannot decode as an image")
    return img
