"""Camera pose from detected AprilTags: the board's world-to-camera pose, and each tag's own pose.

Board pose: all detected board corners together, cv2.solvePnPRansac (SQPnP) to drop wrong tags, then
cv2.solvePnPRefineLM on the inlier tags. Lens distortion (any model of geometry.PinholeCamera) is
removed from the corners first, so OpenCV solves an ideal pinhole problem; reported errors are in
the real (distorted) image. Frames: docs/frames.md ("AprilTag board").
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..geometry import PinholeCamera, Rigid
from .board import TagBoard, tag_corners_local
from .detect import TagDetection

__all__ = ["PoseError", "BoardPose", "TagPose", "board_correspondences", "estimate_board_pose",
           "estimate_tag_poses", "refine_pose", "reprojection_errors"]

_CRIT = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-10)


class PoseError(ValueError):
    """No pose: no board tag seen, too few tags, or the reprojection error is over the limit."""


@dataclass(frozen=True)
class TagPose:
    """Pose of one tag. T_ct maps the tag frame (x right, y up, z out of the tag, origin at its centre;
    docs/frames.md) into the camera optical frame. reprojection_error_px: RMS over its 4 corners."""

    id: int
    T_ct: Rigid
    reprojection_error_px: float
    corners: np.ndarray  # (4, 2) detected pixels


@dataclass(frozen=True)
class BoardPose:
    """World-to-camera pose T_cw from one image of the board.

    reprojection_error_px: RMS over the corners used; max_error_px: their largest error;
    tag_ids: tags used; outlier_tag_ids: board tags seen but rejected by RANSAC;
    unknown_tag_ids: tags of the family seen that are not on the board (ignored).
    """

    T_cw: Rigid
    reprojection_error_px: float
    max_error_px: float
    tag_ids: tuple[int, ...]
    outlier_tag_ids: tuple[int, ...] = ()
    unknown_tag_ids: tuple[int, ...] = ()


def board_correspondences(detections: list[TagDetection], board: TagBoard):
    """Board corners (N, 3) and their pixels (N, 2) for the detected board tags (4 per tag, p0..p3),
    the ids used (n,) and the detected ids that are not on the board."""
    corners = board.corners()
    used = [d for d in detections if d.id in corners and d.family == board.family]
    unknown = tuple(sorted(d.id for d in detections if d.id not in corners or d.family != board.family))
    obj = np.concatenate([corners[d.id] for d in used]) if used else np.zeros((0, 3))
    img = np.concatenate([d.corners for d in used]) if used else np.zeros((0, 2))
    return obj, img, [d.id for d in used], unknown


def _ideal_pixels(camera: PinholeCamera, uv: np.ndarray) -> np.ndarray:
    """Distorted pixels (N, 2) -> pixels of the same camera without distortion (N, 2)."""
    if not camera.has_distortion:
        return np.asarray(uv, np.float64).reshape(-1, 2)
    return camera.to_pixels(camera.undistort_pixels(uv))


def reprojection_errors(camera: PinholeCamera, T_cw: Rigid, obj: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Pixel distances (N,) between uv (N, 2) and the projections of obj (N, 3) through camera posed at T_cw."""
    proj, _ = camera.with_pose(T_cw).project(obj)
    return np.linalg.norm(proj - uv, axis=1)


def refine_pose(camera: PinholeCamera, obj: np.ndarray, uv: np.ndarray, T_init: Rigid) -> Rigid:
    """Levenberg-Marquardt refinement (cv2.solvePnPRefineLM) of T_init on all points."""
    rvec, tvec = T_init.as_rotvec().reshape(3, 1).copy(), T_init.t.reshape(3, 1).copy()
    rvec, tvec = cv2.solvePnPRefineLM(obj.astype(np.float64), _ideal_pixels(camera, uv), camera.K, None,
                                      rvec, tvec, _CRIT)
    return Rigid.from_rotvec(rvec.ravel(), tvec.ravel())


def _solve_square(camera: PinholeCamera, size: float, uv: np.ndarray) -> Rigid:
    """Pose of one square tag from its 4 corners p0..p3 (cv2 IPPE_SQUARE, best of its two solutions)."""
    # IPPE_SQUARE wants the corners in the order (-s/2, s/2), (s/2, s/2), (s/2, -s/2), (-s/2, -s/2): p3, p2, p1, p0
    obj = tag_corners_local(size)[::-1]
    img = _ideal_pixels(camera, uv)[::-1]
    n, rvecs, tvecs, errs = cv2.solvePnPGeneric(obj, img, camera.K, None, flags=cv2.SOLVEPNP_IPPE_SQUARE)
    if n == 0:
        raise PoseError("IPPE_SQUARE found no pose for a tag")
    best = int(np.argmin(np.ravel(errs)))
    return Rigid.from_rotvec(rvecs[best].ravel(), tvecs[best].ravel())


def estimate_tag_poses(detections: list[TagDetection], camera: PinholeCamera, tag_size: float | dict) -> list[TagPose]:
    """Each tag's pose on its own (IPPE_SQUARE + LM refinement). tag_size: metres, or id -> metres
    (tags whose id is missing from the dict are skipped, and so are tags OpenCV finds no pose for)."""
    out = []
    for d in detections:
        size = tag_size.get(d.id) if isinstance(tag_size, dict) else tag_size
        if size is None:
            continue
        obj = tag_corners_local(size)
        try:
            T = refine_pose(camera, obj, d.corners, _solve_square(camera, size, d.corners))
        except (PoseError, cv2.error):
            continue
        err = reprojection_errors(camera, T, obj, d.corners)
        out.append(TagPose(id=d.id, T_ct=T, reprojection_error_px=float(np.sqrt(np.mean(err ** 2))),
                           corners=d.corners))
    return out


def _initial_pose(obj, uv, ids, board: TagBoard, camera: PinholeCamera, ransac_px: float):
    """(T_cw, inlier tag ids) before refinement: one tag by IPPE_SQUARE, more by RANSAC + SQPnP."""
    if len(ids) == 1:
        tag = board.tag(ids[0])
        T_bt = Rigid(tag.rotation(), [tag.x, tag.y, 0.0])  # tag frame -> board frame
        return _solve_square(camera, tag.size, uv) @ T_bt.inverse(), list(ids)
    ok, rvec, tvec, _ = cv2.solvePnPRansac(obj, _ideal_pixels(camera, uv), camera.K, None, flags=cv2.SOLVEPNP_SQPNP,
                                           reprojectionError=ransac_px, confidence=0.999, iterationsCount=200)
    if not ok:
        return None, []
    T = Rigid.from_rotvec(rvec.ravel(), tvec.ravel())
    err = reprojection_errors(camera, T, obj, uv).reshape(-1, 4)
    return T, [i for i, e in zip(ids, err) if e.max() <= ransac_px]


def estimate_board_pose(detections: list[TagDetection], board: TagBoard, camera: PinholeCamera,
                        max_error_px: float = 2.0, min_tags: int = 2, ransac_px: float = 4.0) -> BoardPose:
    """World-to-camera pose from the detected tags of `board` (camera: intrinsics; its pose is ignored).

    Raises PoseError when fewer than `min_tags` board tags survive, or when the RMS reprojection
    error is over `max_error_px`. A tag is an outlier when any of its corners is further than
    `ransac_px` from the RANSAC pose.
    """
    obj, uv, ids, unknown = board_correspondences(detections, board)
    note = f" (ignored tags not on the board: {list(unknown)})" if unknown else ""
    if not ids:
        raise PoseError(f"no tag of the board ({board.family}, ids {board.ids}) detected{note}")
    if len(ids) < min_tags:
        raise PoseError(f"only {len(ids)} board tag(s) detected ({ids}), at least {min_tags} needed{note}")
    try:
        T, inlier_ids = _initial_pose(obj, uv, ids, board, camera, ransac_px)
    except cv2.error as e:  # degenerate input (e.g. tags seen edge-on)
        raise PoseError(f"OpenCV found no pose from tags {ids}: {e.err}") from None
    if T is None:
        raise PoseError(f"no consistent pose from tags {ids}{note}")
    if len(inlier_ids) < min_tags:
        raise PoseError(f"only {len(inlier_ids)} of the detected board tags {ids} agree on a pose, "
                        f"at least {min_tags} needed{note}")
    keep = np.repeat(np.isin(ids, inlier_ids), 4)
    try:
        T = refine_pose(camera, obj[keep], uv[keep], T)
    except cv2.error as e:
        raise PoseError(f"pose refinement failed for tags {inlier_ids}: {e.err}") from None
    err = reprojection_errors(camera, T, obj[keep], uv[keep])
    rms = float(np.sqrt(np.mean(err ** 2)))
    if not rms <= max_error_px:  # also NaN: points behind the camera
        raise PoseError(f"reprojection error {rms:.2f} px over the limit {max_error_px} px (tags {inlier_ids})")
    return BoardPose(T_cw=T, reprojection_error_px=rms, max_error_px=float(err.max()), tag_ids=tuple(inlier_ids),
                     outlier_tag_ids=tuple(i for i in ids if i not in inlier_ids), unknown_tag_ids=unknown)
