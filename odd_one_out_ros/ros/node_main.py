"""The `main()` shared by every node executable: bad parameters or files end in a clear message and
exit code 2 (no traceback); Ctrl-C and external shutdown end quietly with 0."""
from __future__ import annotations

import sys
from typing import Callable

from ..env import apply_ros_env_defaults

apply_ros_env_defaults()

import rclpy  # noqa: E402
from rclpy.exceptions import ParameterException  # noqa: E402
from rclpy.executors import ExternalShutdownException  # noqa: E402
from rclpy.node import Node  # noqa: E402


def run_node(make_node: Callable[[], Node], name: str, args=None) -> int:
    rclpy.init(args=args)
    try:
        node = make_node()
    except (ValueError, ParameterException) as e:  # bad file or parameter, detected at start
        print(f"{name}: {e}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
