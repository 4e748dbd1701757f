"""`odd-one-out camera-info FILE`: validate a camera_info YAML and print what it says."""
from __future__ import annotations

import argparse
import json

from . import CommandError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="camera_info YAML (camera_calibration_parsers format)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def run(args) -> int:
    import numpy as np

    from ..geometry import CalibrationFileError, read_camera_info_yaml

    try:
        calib = read_camera_info_yaml(args.file)
    except CalibrationFileError as e:
        raise CommandError(str(e)) from None
    K = calib.K
    summary = {
        "camera_name": calib.camera_name,
        "width": calib.width,
        "height": calib.height,
        "fx": K[0, 0], "fy": K[1, 1], "cx": K[0, 2], "cy": K[1, 2],
        "hfov_deg": float(np.degrees(2 * np.arctan2(calib.width / 2, K[0, 0]))),
        "vfov_deg": float(np.degrees(2 * np.arctan2(calib.height / 2, K[1, 1]))),
        "distortion_model": calib.distortion_model,
        "distortion": calib.D.tolist(),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for k, v in summary.items():
            print(f"{k:<17} {round(v, 4) if isinstance(v, float) else v}")
    return 0
