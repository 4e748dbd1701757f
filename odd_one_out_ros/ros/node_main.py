"""The `main()` shared by every node executable: bad parameters or files end in a clear message and
exit code 2 (no traceback); Ctrl-C (SIGINT), SIGTERM and external shutdown end quietly with 0; SIGUSR1 prints every
thread's stack to stderr (a node that hangs says where)."""
from __future__ import annotations

import faulthandler
import signal
import sys
import threading
import time
from typing import Callable

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

SPIN_WAKE_S = 0.2
"""the executor's wait ends at least this often, so a stop request is seen even when nothing else wakes it"""
STOP_ANSWER_S = 0.5
"""after a stop request: how long the executor goes on spinning so that answered service calls go out"""


def run_node(make_node: Callable[[], Node], name: str, args=None, threads: int | Callable[[Node], int] = 1) -> int:
    """threads > 1 spins a MultiThreadedExecutor (needed by nodes whose service callbacks wait on other
    callbacks or worker threads); a callable gets the node and says how many. On a stop request a node's
    `answer_waiting_calls(why)`, where it has one, answers the service calls that wait (their callbacks would
    otherwise hold the executor's shutdown), and the executor gets up to STOP_ANSWER_S to send the answers.

    SIGINT and SIGTERM set a stop flag that the spin loop checks after each wait (at most SPIN_WAKE_S apart); rclpy's
    own handlers are not installed: they would shut the context down before waiting calls are answered. A second
    signal raises KeyboardInterrupt: stop waiting for a clean end."""
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    stop = threading.Event()

    def on_signal(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _run(make_node, name, args, threads, stop)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _run(make_node, name, args, threads, stop: threading.Event) -> int:
    try:
        # rclpy's own SIGINT handler would shut the context down at once, before waiting callers are answered
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except RuntimeError as e:  # rcl's RCLError: malformed --ros-args
        print(f"{name}: bad command line: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    try:
        node = make_node()
    except (ValueError, ParameterException) as e:  # bad file or parameter, detected at start
        print(f"{name}: {e}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    n = threads(node) if callable(threads) else threads
    executor = MultiThreadedExecutor(num_threads=n) if n > 1 else SingleThreadedExecutor()
    try:
        executor.add_node(node)
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=SPIN_WAKE_S)
        answer = getattr(node, "answer_waiting_calls", None)
        if answer is not None and rclpy.ok():
            answer(f"{name} is shutting down")
            end = time.monotonic() + STOP_ANSWER_S
            while time.monotonic() < end and rclpy.ok():
                executor.spin_once(timeout_sec=0.05)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown(timeout_sec=5.0)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def log_at(logger, level: str, line: str) -> None:
    """Log `line` at level "error", "warning" or "info": one call site per level (rclpy refuses a call site whose
    severity changes between calls)."""
    if level == "error":
        logger.error(line)
    elif level == "warning":
        logger.warning(line)
    else:
        logger.info(line)


def node_logger(node: Node):
    """The node's logger; once the context is shut down (Ctrl-C) a logger of another name, so that a line logged
    then is that one line (the node's own would also try /rosout and print an rcl error)."""
    if node.context.ok():
        return node.get_logger()
    import rclpy.logging

    return rclpy.logging.get_logger(node.get_logger().name + ".shutdown")
