"""The `main()` shared by every node executable: bad parameters or files end in a clear message and
exit code 2 (no traceback); Ctrl-C and external shutdown end quietly with 0; SIGUSR1 prints every thread's stack
to stderr (a node that hangs says where)."""
from __future__ import annotations

import faulthandler
import signal
import sys
from typing import Callable

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node


def run_node(make_node: Callable[[], Node], name: str, args=None, threads: int = 1) -> int:
    """threads > 1 spins a MultiThreadedExecutor (needed by nodes whose service callbacks wait on other
    callbacks or worker threads)."""
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        rclpy.init(args=args)
    except RuntimeError as e:  # rcl's RCLError: malformed --ros-args
        print(f"{name}: bad command line: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    try:
        node = make_node()
    except (ValueError, ParameterException) as e:  # bad file or parameter, detected at start
        print(f"{name}: {e}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    executor = None
    try:
        if threads > 1:
            executor = MultiThreadedExecutor(num_threads=threads)
            executor.add_node(node)
            executor.spin()
        else:
            rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if executor is not None:
            executor.shutdown(timeout_sec=5.0)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
