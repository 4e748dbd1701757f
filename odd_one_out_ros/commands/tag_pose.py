"""`odd-one-out tag-pose`: AprilTag poses in one image, and the camera's pose when a board is given.

JSON written (docs/calibration.md): {"image", "family", "tags": [{"id", "translation", "rotation_matrix",
"quaternion_xyzw", "reprojection_error_px", "corners_px"}], "camera_pose": {...} or null,
"ignored_tag_ids", "camera_pose_error"}. Tag poses map the tag frame (x right, y up, z out of the tag,
origin at its centre) into the camera optical frame, in metres. Exit codes: 0 written; 1 written but
the board pose was rejected (camera_pose null, camera_pose_error says why); 2 bad input or no tag
(of the board) in the image, nothing written.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import CommandError, positive_float, write_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image", required=True, help="image file")
    p.add_argument("--camera", required=True, metavar="CAMERA_INFO_YAML", help="the camera's intrinsics")
    size = p.add_mutually_exclusive_group(required=True)
    size.add_argument("--board", metavar="BOARD_YAML", help="board description: tag sizes and the camera pose")
    size.add_argument("--tag-size", type=positive_float, metavar="METRES", help="edge of the black square of every tag")
    p.add_argument("--family", default=None, help="tag family (default tag36h11, or the board's)")
    p.add_argument("--json", required=True, metavar="FILE", help="JSON file to write")
    p.add_argument("--max-error-px", type=positive_float, default=2.0,
                   help="reject a board pose with RMS error over this")
    p.add_argument("--min-tags", type=int, default=2, help="board tags needed for a camera pose (default 2)")
    p.add_argument("--force", action="store_true", help="overwrite --json if it exists")


def _floats(a) -> list:
    return [[float(x) for x in row] for row in a] if getattr(a, "ndim", 1) == 2 else [float(x) for x in a]


def run(args) -> int:
    from ..calibration import (
        BoardFileError,
        ImageReadError,
        PoseError,
        detect_tags,
        estimate_board_pose,
        estimate_tag_poses,
        load_board,
        read_gray,
    )
    from ..geometry import CalibrationFileError, pose_to_dict, read_camera_info_yaml

    out = Path(args.json)
    if out.exists() and not args.force:
        raise CommandError(f"{out} exists; pass --force to overwrite")
    if args.tag_size is not None and not args.tag_size > 0:
        raise CommandError(f"--tag-size must be > 0 metres, got {args.tag_size}")
    try:
        camera = read_camera_info_yaml(args.camera).to_camera()
        board = load_board(args.board) if args.board else None
        family = args.family or (board.family if board else "tag36h11")
        if board and family != board.family:
            raise CommandError(f"--family {family} but the board {args.board} is {board.family}")
        gray = read_gray(args.image)
        if gray.shape[::-1] != (camera.width, camera.height):
            raise CommandError(f"{args.image} is {gray.shape[1]}x{gray.shape[0]} but {args.camera} is for "
                               f"{camera.width}x{camera.height} images")
        dets = detect_tags(gray, family)
    except (CalibrationFileError, BoardFileError, ImageReadError, ValueError) as e:
        raise CommandError(str(e)) from None

    sizes = {t.id: t.size for t in board.tags} if board else args.tag_size
    ignored = sorted(d.id for d in dets if board and d.id not in sizes)
    if ignored:
        print(f"ignored tags not on the board: {ignored}", file=sys.stderr)
    tags = estimate_tag_poses(dets, camera, sizes)
    if not tags:
        where = f"no tag of the board {args.board} (ids {board.ids})" if board else f"no {family} tag"
        raise CommandError(f"{where} found in {args.image}; nothing written")

    result = {"image": os.fspath(args.image), "family": family, "tags": [], "camera_pose": None,
              "ignored_tag_ids": ignored}
    for t in tags:
        result["tags"].append({"id": t.id, "translation": _floats(t.T_ct.t), "rotation_matrix": _floats(t.T_ct.R),
                               "quaternion_xyzw": _floats(t.T_ct.as_quat()),
                               "reprojection_error_px": round(t.reprojection_error_px, 4),
                               "corners_px": _floats(t.corners)})
    code = 0
    if board:
        try:
            pose = estimate_board_pose(dets, board, camera, max_error_px=args.max_error_px, min_tags=args.min_tags)
            result["camera_pose"] = {
                "frame": "world-to-camera (X_cam = R X_world + t)",
                **pose_to_dict(pose.T_cw),
                "reprojection_error_px": round(pose.reprojection_error_px, 4),
                "max_error_px": round(pose.max_error_px, 4),
                "tags_used": list(pose.tag_ids),
                "outlier_tag_ids": list(pose.outlier_tag_ids),
            }
        except PoseError as e:
            result["camera_pose_error"] = str(e)
            print(f"odd-one-out tag-pose: camera pose rejected: {e}", file=sys.stderr)
            code = 1
    write_json(out, result)
    for t in tags:
        x, y, z = t.T_ct.t
        print(f"tag {t.id}: ({x:.4f}, {y:.4f}, {z:.4f}) m in the camera frame, RMS {t.reprojection_error_px:.3f} px")
    if result["camera_pose"]:
        c = result["camera_pose"]
        print(f"camera at {[round(v, 4) for v in c['camera_position']]} m in the world, "
              f"RMS {c['reprojection_error_px']:.3f} px over tags {c['tags_used']}")
    print(f"wrote {out}")
    return code
