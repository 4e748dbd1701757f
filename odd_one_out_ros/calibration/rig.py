"""Extrinsics of a fixed camera rig from images of an AprilTag board lying still (board = world frame).

For each camera: a board pose per image (pose.estimate_board_pose), outlier images dropped (rotation
or position far from the others), then one Levenberg-Marquardt refinement over the corners of all
kept images together, started from the mean rotation (scipy Rotation.mean) and median translation.
The result is written to / read from a rig YAML (format in docs/calibration.md).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from scipy.spatial.transform import Rotation

from ..fileio import read_yaml, write_text_atomic
from ..geometry import PinholeCamera, Rigid, pose_to_dict
from .board import TagBoard
from .detect import detect_tags, read_gray
from .pose import PoseError, board_correspondences, estimate_board_pose, refine_pose, reprojection_errors

__all__ = ["RigFileError", "CameraExtrinsics", "calibrate_extrinsics", "rig_to_dict", "write_rig_yaml",
           "read_rig_yaml"]


class RigFileError(ValueError):
    """A rig YAML that cannot be read or is not valid; the message names the file."""


@dataclass
class CameraExtrinsics:
    """World-to-camera pose of one fixed camera.

    reprojection_error_px: RMS over all corners of the images used; rotation_spread_deg and
    position_spread_m: RMS deviation of the per-image poses from the result (a consistency check:
    large values mean the board or the camera moved); skipped: (image, reason).
    """

    name: str
    camera_info: str
    T_cw: Rigid
    reprojection_error_px: float
    images_used: list[str]
    rotation_spread_deg: float
    position_spread_m: float
    skipped: list[tuple[str, str]] = field(default_factory=list)


def calibrate_extrinsics(name: str, images, board: TagBoard, camera: PinholeCamera, camera_info: str = "",
                         max_error_px: float = 2.0, min_tags: int = 2, outlier_deg: float = 1.0,
                         outlier_m: float = 0.01) -> CameraExtrinsics:
    """One camera's pose from several images (paths) of the board. Per-image poses further than
    `outlier_deg` / `outlier_m` from the median pose are dropped. PoseError if no image gives a pose."""
    poses, data, skipped = [], [], []
    for path in images:
        dets = detect_tags(read_gray(path), board.family)
        try:
            pose = estimate_board_pose(dets, board, camera, max_error_px=max_error_px, min_tags=min_tags)
        except PoseError as e:
            skipped.append((os.fspath(path), str(e)))
            continue
        obj, uv, ids, _ = board_correspondences(dets, board)
        keep = np.repeat(np.isin(ids, pose.tag_ids), 4)
        poses.append(pose.T_cw)
        data.append((os.fspath(path), obj[keep], uv[keep]))
    if not poses:
        why = "".join(f"\n  {n}: {r}" for n, r in skipped)
        raise PoseError(f"camera {name}: no image gave a board pose{why}")
    rots = Rotation.from_matrix(np.stack([T.R for T in poses]))
    centres = np.stack([T.inverse().t for T in poses])
    # median pose: rotation of the image closest (chordal) to all others, median camera position
    R_med = rots[int(np.argmin([(rots * r.inv()).magnitude().sum() for r in rots]))]
    c_med = np.median(centres, axis=0)
    ok = (np.degrees((rots * R_med.inv()).magnitude()) <= outlier_deg) & \
        (np.linalg.norm(centres - c_med, axis=1) <= outlier_m)
    for i in np.flatnonzero(~ok):
        skipped.append((data[i][0], "pose disagrees with the other images (did the board or camera move?)"))
    kept = [d for d, k in zip(data, ok) if k]
    R0 = rots[ok].mean().as_matrix()
    T0 = Rigid(R0, -R0 @ np.median(centres[ok], axis=0))
    obj = np.concatenate([d[1] for d in kept])
    uv = np.concatenate([d[2] for d in kept])
    T = refine_pose(camera, obj, uv, T0)  # joint refinement over all kept images
    err = reprojection_errors(camera, T, obj, uv)
    c = T.inverse().t
    return CameraExtrinsics(
        name=name, camera_info=camera_info, T_cw=T, reprojection_error_px=float(np.sqrt(np.mean(err ** 2))),
        images_used=[d[0] for d in kept],
        rotation_spread_deg=float(np.sqrt(np.mean(np.degrees((rots[ok] * Rotation.from_matrix(T.R).inv())
                                                             .magnitude()) ** 2))),
        position_spread_m=float(np.sqrt(np.mean(np.sum((centres[ok] - c) ** 2, axis=1)))), skipped=skipped)


def rig_to_dict(cameras: list[CameraExtrinsics], board_file: str = "") -> dict:
    """The rig YAML's content (docs/calibration.md)."""
    out = {"frame_id": "world", "board": board_file, "cameras": {}}
    for c in cameras:
        out["cameras"][c.name] = {
            "camera_info": c.camera_info,
            **pose_to_dict(c.T_cw, matrix_key="T_cw"),
            "reprojection_error_px": round(c.reprojection_error_px, 4),
            "rotation_spread_deg": round(c.rotation_spread_deg, 4),
            "position_spread_m": round(c.position_spread_m, 6),
            "images_used": list(c.images_used),
            "images_skipped": [{"image": n, "reason": r} for n, r in c.skipped],
        }
    return out


def write_rig_yaml(path: str | os.PathLike, cameras: list[CameraExtrinsics], board_file: str = "",
                   force: bool = False) -> Path:
    """Write the rig YAML; refuses to overwrite an existing file unless force=True."""
    path = Path(path)
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass force=True (--force) to overwrite")
    head = ("# Camera rig extrinsics, written by `odd-one-out calibrate rig`. T_cw maps world (= board)\n"
            "# points into each camera's optical frame: X_cam = R X_world + t (docs/frames.md).\n")
    return write_text_atomic(path, head + yaml.safe_dump(rig_to_dict(cameras, board_file), sort_keys=False,
                                                         default_flow_style=None))


def read_rig_yaml(path: str | os.PathLike) -> dict[str, tuple[Rigid, Path | None]]:
    """name -> (T_cw, camera_info path resolved against the rig file's folder, or None)."""
    path = Path(path)
    d = read_yaml(path, RigFileError, "rig file")
    if not isinstance(d, dict) or not isinstance(d.get("cameras"), dict) or not d["cameras"]:
        raise RigFileError(f"{path}: expected a mapping with a non-empty 'cameras' mapping")
    out = {}
    for name, cam in d["cameras"].items():
        try:
            T = Rigid.from_matrix(np.array(cam["T_cw"], dtype=np.float64))
        except (TypeError, KeyError, ValueError) as e:
            raise RigFileError(f"{path}: camera {name!r}: T_cw must be a 4x4 rigid transform ({e})") from None
        info = cam.get("camera_info") or None
        out[str(name)] = (T, None if info is None else (path.parent / info))
    return out
