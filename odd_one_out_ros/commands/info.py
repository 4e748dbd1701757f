"""`odd-one-out info`: versions, compute devices and the package's paths."""
from __future__ import annotations

import argparse
import importlib
import json
import os


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def run(args) -> int:
    from .. import __version__
    from ..env import apply_ros_env_defaults
    from ..resources import SAMPLE_SCENE, share_dir

    apply_ros_env_defaults()
    info = {"odd_one_out_ros": __version__}
    for mod in ("numpy", "torch", "torchvision", "cv2", "open3d", "sklearn", "pupil_apriltags", "rclpy"):
        try:
            m = importlib.import_module(mod)
            info[mod] = getattr(m, "__version__", "installed")
        except Exception as e:  # report, do not fail: info is a diagnostic
            info[mod] = f"unavailable ({type(e).__name__}: {e})"
    try:
        import torch

        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "not available"
    except Exception:
        info["cuda"] = "unknown"
    try:
        info["share_dir"] = str(share_dir())
    except FileNotFoundError as e:
        info["share_dir"] = str(e)
    info["sample_scene"] = str(SAMPLE_SCENE)
    for var in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID", "AMENT_PREFIX_PATH", "RMW_IMPLEMENTATION"):
        info[var] = os.environ.get(var, "")
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        width = max(map(len, info))
        for k, v in info.items():
            print(f"{k:<{width}}  {v}")
    return 0
