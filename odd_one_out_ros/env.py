"""Process environment that ROS 2 needs here, applied before rclpy is imported. No ROS imports.

- ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST keeps DDS traffic on loopback (Kilted ignores
  ROS_LOCALHOST_ONLY). A value the user set is kept.
- AMENT_PREFIX_PATH gains this Python environment's prefix when it holds an ament index (the
  PyPI ROS wheels and this package install one there), so ament_index lookups work in a venv.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["apply_ros_env_defaults"]


def apply_ros_env_defaults(environ: dict | None = None) -> dict:
    """Set the defaults in `environ` (os.environ by default) and return it."""
    env = os.environ if environ is None else environ
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    prefix = sys.prefix
    if (Path(prefix) / "share" / "ament_index").is_dir():
        paths = [p for p in env.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
        if prefix not in paths:
            env["AMENT_PREFIX_PATH"] = os.pathsep.join(paths + [prefix])
    return env
