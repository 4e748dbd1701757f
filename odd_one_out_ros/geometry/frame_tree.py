"""The latest transform of each frame in its parent, and the transform between any two frames of one tree: what
tf2's buffer answers without time (hand-written: tf2 and tf2_ros are not obtainable here). Pure: no ROS imports;
ros/tf_listener.py feeds it from /tf and /tf_static.

A tree as TF has it: each child frame has one parent; a newer transform of a child replaces the older one (also
one with another parent, as tf2 does). No interpolation in time: lookups use the latest transforms.
"""
from __future__ import annotations

import threading

from .transforms import Rigid

__all__ = ["FrameTree"]

MAX_DEPTH = 256  # a chain longer than this is a loop in what was published


class FrameTree:
    """set(parent, child, T_parent_child) and lookup(target, source) -> T_target_source (maps source coordinates
    into target), from any threads."""

    def __init__(self):
        self._parent: dict[str, tuple[str, Rigid]] = {}  # child -> (parent, T_parent_child)
        self._lock = threading.Lock()

    def set(self, parent: str, child: str, T_parent_child: Rigid) -> None:
        if not parent or not child or parent == child:
            raise ValueError(f"a transform needs two different, named frames; got {parent!r} -> {child!r}")
        with self._lock:
            self._parent[child] = (parent, T_parent_child)

    def _to_root(self, frame: str) -> dict[str, Rigid]:
        """{ancestor (the frame itself included): T_ancestor_frame}, in order from the frame to its root."""
        chain, T, f = {frame: Rigid.identity()}, Rigid.identity(), frame
        while f in self._parent and len(chain) <= MAX_DEPTH:
            f, T_pf = self._parent[f]
            if f in chain:  # a loop: stop here, the lookup fails unless it met the other chain before
                break
            T = T_pf @ T
            chain[f] = T
        return chain

    def lookup(self, target: str, source: str) -> Rigid | None:
        """T_target_source, or None when the two frames are not (yet) in one tree."""
        if target == source:
            return Rigid.identity()
        with self._lock:
            up_source, up_target = self._to_root(source), self._to_root(target)
        for ancestor, T_a_source in up_source.items():  # the nearest common ancestor
            if ancestor in up_target:
                return up_target[ancestor].inverse() @ T_a_source
        return None

    def frames(self) -> list[str]:
        """Every frame heard of, sorted (for the message that says a lookup failed)."""
        with self._lock:
            return sorted(set(self._parent) | {p for p, _ in self._parent.values()})
