"""The `main()` shared by every node executable: bad parameters or files end in a clear message and
exit code 2 (no traceback); Ctrl-C (SIGINT), SIGTERM and external shutdown end quietly with 0; SIGUSR1 prints every
thread's stack to stderr (a node that hangs says where)."""
from __future__ import annotations

import faulthandler
import signal
import sys
import threading
from typing import Callable

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node

SPIN_WAKE_S = 0.5
"""the executor's wait ends at least this often, so a stop request is seen even when nothing else wakes it"""


def run_node(make_node: Callable[[], Node], name: str, args=None, threads: int = 1) -> int:
    """threads > 1 spins a MultiThreadedExecutor (needed by nodes whose service callbacks wait on other
    callbacks or worker threads).

    SIGINT and SIGTERM set a stop flag that the spin loop checks after each wait (at most SPIN_WAKE_S apart); rclpy's
    own handler chains to it and wakes the executor. (Relying on the KeyboardInterrupt alone, a detector after a
    lifecycle shutdown, no timer left, sometimes kept waiting for good in full test runs.) A second signal raises
    KeyboardInterrupt: stop waiting for a clean end."""
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    stop = threading.Event()

    def on_signal(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    # installed before rclpy.init, whose signal handlers chain to the ones they find
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _run(make_node, name, args, threads, stop)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _run(make_node, name, args, threads, stop: threading.Event) -> int:
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
    executor = MultiThreadedExecutor(num_threads=threads) if threads > 1 else SingleThreadedExecutor()
    try:
        executor.add_node(node)
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=SPIN_WAKE_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown(timeout_sec=5.0)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
