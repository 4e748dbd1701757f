"""`odd-one-out calibrate intrinsics|rig`: camera intrinsics from chessboard or AprilTag board images,
and the world-to-camera poses of a fixed rig from images of the board (docs/calibration.md)."""
from __future__ import annotations

import argparse
import glob
import os
import re
import sys
from pathlib import Path

from . import CommandError, positive_float


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    h = "intrinsics (K, distortion) from chessboard or AprilTag board images -> camera_info YAML"
    i = sub.add_parser("intrinsics", help=h, description=h)
    i.add_argument("--images", nargs="+", required=True, metavar="GLOB",
                   help="image files or quoted glob patterns, e.g. 'calib/*.png'")
    target = i.add_mutually_exclusive_group(required=True)
    target.add_argument("--chessboard", metavar="COLSxROWS", help="inner corners of the chessboard, e.g. 9x6")
    target.add_argument("--board", metavar="BOARD_YAML", help="AprilTag board description (calibration/*.yaml)")
    i.add_argument("--square", type=positive_float, metavar="METRES", help="chessboard square edge (with --chessboard)")
    i.add_argument("--out", required=True, help="camera_info YAML to write")
    i.add_argument("--camera-name", default="camera", help="camera_name written in the YAML")
    i.add_argument("--k3", action="store_true", help="also estimate k3 (wide-angle lenses; default fixes it at 0)")
    i.add_argument("--min-tags", type=int, default=2, help="board tags an image needs to be used (default 2)")
    i.add_argument("--force", action="store_true", help="overwrite --out if it exists")

    h = "world-to-camera poses of fixed cameras from images of the board -> rig YAML"
    r = sub.add_parser("rig", help=h, description=h)
    r.add_argument("--board", required=True, metavar="BOARD_YAML", help="AprilTag board description")
    r.add_argument("--camera", action="append", required=True, metavar="NAME=CAMERA_INFO_YAML",
                   help="a camera's name and intrinsics; repeat for each camera")
    r.add_argument("--images", action="append", required=True, metavar="NAME=GLOB",
                   help="that camera's images of the still board (quoted glob); repeat for each camera")
    r.add_argument("--out", required=True, help="rig YAML to write")
    r.add_argument("--max-error-px", type=positive_float, default=2.0,
                   help="reject images whose RMS error is over this")
    r.add_argument("--min-tags", type=int, default=2, help="board tags an image needs (default 2)")
    r.add_argument("--force", action="store_true", help="overwrite --out if it exists")


def expand_images(patterns) -> list[str]:
    """Files named or matched by glob patterns (sorted per pattern); ValueError names a pattern that matches none."""
    out = []
    for pat in patterns:
        hits = sorted(glob.glob(pat)) if glob.has_magic(pat) else [pat]
        if not hits:
            raise ValueError(f"{pat}: matches no file")
        out += hits
    return out


def _pairs(items, what: str) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise ValueError(f"{what} must look like NAME=VALUE, got {item!r}")
        if name in out:
            raise ValueError(f"{what}: camera {name!r} given twice")
        out[name] = value
    return out


def run(args) -> int:
    from ..calibration import BoardFileError, CalibrationError, ImageReadError, PoseError
    from ..geometry import CalibrationFileError

    if Path(args.out).exists() and not args.force:
        raise CommandError(f"{args.out} exists; pass --force to overwrite")
    try:
        return _intrinsics(args) if args.what == "intrinsics" else _rig(args)
    except (BoardFileError, CalibrationFileError, ImageReadError, CalibrationError, PoseError, ValueError,
            FileExistsError) as e:
        raise CommandError(str(e)) from None


def _intrinsics(args) -> int:
    from ..calibration import board_views, calibrate_views, chessboard_views, load_board
    from ..geometry import write_camera_info_yaml

    paths = expand_images(args.images)
    skipped: list = []
    if args.chessboard:
        m = re.fullmatch(r"(\d+)[xX](\d+)", args.chessboard)
        if not m or min(int(m[1]), int(m[2])) < 2:
            raise CommandError(f"--chessboard must be COLSxROWS inner corners, e.g. 9x6, got {args.chessboard!r}")
        if args.square is None or args.square <= 0:
            raise CommandError("--chessboard needs --square METRES (edge of one square, > 0)")
        views, size = chessboard_views(paths, (int(m[1]), int(m[2])), args.square, skipped)
    else:
        if args.square is not None:
            raise CommandError("--square goes with --chessboard; the board YAML gives the tag size")
        views, size = board_views(paths, load_board(args.board), skipped, min_tags=args.min_tags)
    for name, reason in skipped:
        print(f"skipped {name}: {reason}", file=sys.stderr)
    res = calibrate_views(views, size, skipped, k3=args.k3, camera_name=args.camera_name)
    write_camera_info_yaml(res.calibration, args.out, force=args.force)
    K = res.calibration.K
    print(f"used {len(views)} of {len(paths)} images; RMS reprojection error {res.rms_px:.3f} px")
    print(f"fx {K[0, 0]:.2f}  fy {K[1, 1]:.2f}  cx {K[0, 2]:.2f}  cy {K[1, 2]:.2f}  "
          f"D {[round(float(d), 5) for d in res.calibration.D]}")
    worst = max(res.per_view_rms_px.items(), key=lambda kv: kv[1])
    print(f"worst image {worst[0]}: {worst[1]:.3f} px")
    print(f"wrote {args.out}")
    return 0


def _rig(args) -> int:
    from ..calibration import calibrate_extrinsics, load_board, write_rig_yaml
    from ..geometry import read_camera_info_yaml

    cams, imgs = _pairs(args.camera, "--camera"), _pairs(args.images, "--images")
    if set(cams) != set(imgs):
        raise CommandError(f"every camera needs both --camera and --images: cameras {sorted(cams)}, "
                           f"images for {sorted(imgs)}")
    board = load_board(args.board)
    results = []
    for name, info in cams.items():
        camera = read_camera_info_yaml(info).to_camera()
        rel = os.path.relpath(Path(info).resolve(), Path(args.out).resolve().parent)  # as read_rig_yaml reads it
        ext = calibrate_extrinsics(name, expand_images([imgs[name]]), board, camera, camera_info=rel,
                                   max_error_px=args.max_error_px, min_tags=args.min_tags)
        for img, reason in ext.skipped:
            print(f"{name}: skipped {img}: {reason}", file=sys.stderr)
        c = ext.T_cw.inverse().t
        print(f"{name}: {len(ext.images_used)} image(s), RMS {ext.reprojection_error_px:.3f} px, "
              f"camera at ({c[0]:.4f}, {c[1]:.4f}, {c[2]:.4f}) m, spread {ext.rotation_spread_deg:.3f} deg / "
              f"{ext.position_spread_m * 1000:.2f} mm")
        results.append(ext)
    write_rig_yaml(args.out, results, board_file=args.board, force=args.force)
    print(f"wrote {args.out}")
    return 0
