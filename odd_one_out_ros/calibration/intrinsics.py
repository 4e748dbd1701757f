"""Intrinsic calibration (cv2.calibrateCamera) from chessboard images or AprilTag board images.

Images where the target is not found are listed with the reason and skipped. The result is a
geometry.CameraCalibration (plumb_bob: k1 k2 p1 p2, k3 fixed at 0 unless asked for), as ROS's
camera_calibration does, written as a camera_info YAML by the caller.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..geometry import CameraCalibration
from .board import TagBoard
from .detect import detect_tags, read_gray
from .pose import board_correspondences

__all__ = ["CalibrationError", "View", "IntrinsicsResult", "find_chessboard", "chessboard_views", "board_views",
           "calibrate_views", "MIN_VIEWS"]

MIN_VIEWS = 4  # calibrateCamera's planar initialisation needs >= 3; 10-20 varied views are advised


class CalibrationError(ValueError):
    """Calibration impossible: too few usable images, images of different sizes, no convergence."""


@dataclass
class View:
    """One usable image: board points (N, 3) and their pixels (N, 2)."""

    name: str
    obj: np.ndarray
    img: np.ndarray


@dataclass
class IntrinsicsResult:
    """calibration; rms_px: RMS reprojection error over all points; per_view_rms_px: name -> RMS;
    skipped: (name, reason) of the images not used."""

    calibration: CameraCalibration
    rms_px: float
    per_view_rms_px: dict[str, float]
    skipped: list[tuple[str, str]] = field(default_factory=list)


def find_chessboard(gray: np.ndarray, pattern: tuple[int, int]) -> np.ndarray | None:
    """Inner corners (cols * rows, 2) refined with cornerSubPix, or None if not found or if the
    board runs to the image border (findChessboardCorners then sometimes invents a row)."""
    ok, corners = cv2.findChessboardCorners(gray, pattern, flags=cv2.CALIB_CB_ADAPTIVE_THRESH
                                            | cv2.CALIB_CB_NORMALIZE_IMAGE)
    if not ok:
        return None
    c = corners.reshape(-1, 2)
    spacing = np.median(np.linalg.norm(np.diff(c.reshape(pattern[1], pattern[0], 2), axis=1), axis=2))
    h, w = gray.shape[:2]
    if min(c[:, 0].min(), c[:, 1].min(), w - 1 - c[:, 0].max(), h - 1 - c[:, 1].max()) < 0.5 * spacing:
        return None
    win = int(np.clip(spacing / 4, 2, 11))
    crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-3)
    return cv2.cornerSubPix(gray, corners, (win, win), (-1, -1), crit).reshape(-1, 2).astype(np.float64)


def _load(paths, find, skipped) -> tuple[list[View], tuple[int, int] | None]:
    """Apply find(gray, name) -> View | reason to each image; check that all have one size."""
    views, size, first = [], None, None
    for p in paths:
        gray = read_gray(p)
        if size is None:
            size, first = gray.shape[::-1], p
        elif gray.shape[::-1] != size:
            raise CalibrationError(f"{p}: image is {gray.shape[1]}x{gray.shape[0]} but {first} is "
                                   f"{size[0]}x{size[1]}; calibrate one camera (one resolution) at a time")
        found = find(gray, os.fspath(p))
        if isinstance(found, str):
            skipped.append((os.fspath(p), found))
        else:
            views.append(found)
    return views, size


def chessboard_views(paths, pattern: tuple[int, int], square: float, skipped: list):
    """Views of a chessboard with pattern = (cols, rows) inner corners and `square` metres;
    images without it are appended to `skipped`. Returns (views, image size (W, H))."""
    cols, rows = pattern
    obj = np.zeros((cols * rows, 3))
    obj[:, :2] = np.mgrid[0:cols, 0:rows].T.reshape(-1, 2) * square

    def find(gray, name):
        c = find_chessboard(gray, pattern)
        return f"no {cols}x{rows} chessboard found (fully inside the image)" if c is None else View(name, obj, c)

    return _load(paths, find, skipped)


def board_views(paths, board: TagBoard, skipped: list, min_tags: int = 2):
    """Views of an AprilTag board (corners of its detected tags); images with fewer than
    `min_tags` board tags are appended to `skipped`. Returns (views, image size (W, H))."""
    def find(gray, name):
        obj, img, ids, unknown = board_correspondences(detect_tags(gray, board.family), board)
        if len(ids) < min_tags:
            extra = f"; tags not on the board: {list(unknown)}" if unknown else ""
            return f"{len(ids)} board tag(s) found, {min_tags} needed{extra}"
        return View(name, obj, img)

    return _load(paths, find, skipped)


def calibrate_views(views: list[View], image_size: tuple[int, int], skipped: list | None = None, k3: bool = False,
                    camera_name: str = "camera") -> IntrinsicsResult:
    """cv2.calibrateCamera over the views (plumb_bob; k3 estimated only if `k3`)."""
    skipped = list(skipped or [])
    if len(views) < MIN_VIEWS:
        why = "".join(f"\n  {n}: {r}" for n, r in skipped)
        raise CalibrationError(f"{len(views)} usable image(s), at least {MIN_VIEWS} needed (10-20 varied views "
                               f"advised){why}")
    flags = 0 if k3 else cv2.CALIB_FIX_K3
    obj = [v.obj.astype(np.float32) for v in views]
    img = [v.img.astype(np.float32).reshape(-1, 1, 2) for v in views]
    try:
        rms, K, D, rvecs, tvecs = cv2.calibrateCamera(obj, img, image_size, None, None, flags=flags)
    except cv2.error as e:
        raise CalibrationError(f"cv2.calibrateCamera failed: {e.err}") from None
    if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise CalibrationError(f"calibration did not converge (K = {K.tolist()}); add more varied views")
    per_view = {}
    for v, r, t in zip(views, rvecs, tvecs):
        proj, _ = cv2.projectPoints(v.obj, r, t, K, D)
        per_view[v.name] = float(np.sqrt(np.mean(np.sum((proj.reshape(-1, 2) - v.img) ** 2, axis=1))))
    # P: camera matrix of the rectified (undistorted) image, alpha = 0 as ROS's camera_calibration
    new_K, _ = cv2.getOptimalNewCameraMatrix(K, D, image_size, 0.0)
    calib = CameraCalibration(width=image_size[0], height=image_size[1], K=K, D=D.ravel()[:5],
                              distortion_model="plumb_bob", P=np.column_stack([new_K, np.zeros(3)]),
                              camera_name=camera_name)
    return IntrinsicsResult(calibration=calib, rms_px=float(rms), per_view_rms_px=per_view, skipped=skipped)
