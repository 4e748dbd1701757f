"""The detector's `target_frame`: /tf and /tf_static heard into a FrameTree (geometry/frame_tree.py), and the
transform from the board frame (frame_id) into the arm's frame that the verdict and the rejects are given in.
(Hand-written: tf2_ros is not obtainable here; the TFMessage type is interfaces/tf2_msgs or a ROS install's.)"""
from __future__ import annotations

from types import SimpleNamespace

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile

from ..geometry import Rigid
from ..geometry.frame_tree import FrameTree
from .conversions import pose_to_rigid

__all__ = ["TargetFrame"]


class TargetFrame:
    """Listens to /tf and /tf_static (tf2's listener QoS: depth 100; static transient_local) while it exists.
    transform() -> T_target_board (Rigid) or None; problem() says why there is none ("" when there is)."""

    def __init__(self, node: Node, target: str, board: str):
        try:
            from tf2_msgs.msg import TFMessage
        except ImportError:
            raise ValueError(f"target_frame {target!r} needs tf2_msgs (make setup builds it; in a ROS workspace: "
                             "colcon build --base-paths src src/odd_one_out_ros/interfaces)") from None
        self.node, self.target, self.board, self.tree = node, target, board, FrameTree()
        self._bad = ""  # the last transform that could not be read (e.g. not a unit quaternion)
        self.subs = [node.create_subscription(TFMessage, "/tf", self._on_tf, QoSProfile(depth=100)),
                     node.create_subscription(TFMessage, "/tf_static", self._on_tf,
                                              QoSProfile(depth=100, durability=DurabilityPolicy.TRANSIENT_LOCAL))]

    def _on_tf(self, msg) -> None:
        for t in msg.transforms:
            try:
                T = pose_to_rigid(_as_pose(t.transform))
                self.tree.set(t.header.frame_id.lstrip("/"), t.child_frame_id.lstrip("/"), T)
            except ValueError as e:  # a malformed transform is skipped, and named by problem()
                self._bad = f"{t.header.frame_id} -> {t.child_frame_id}: {e}"

    def transform(self) -> Rigid | None:
        """T_target_board: maps board-frame (frame_id) coordinates into target_frame; the latest transforms."""
        return self.tree.lookup(self.target, self.board)

    def problem(self) -> str:
        """Why the verdict cannot be given in target_frame now ("" when it can)."""
        if self.transform() is not None:
            return ""
        heard = self.tree.frames()
        return (f"no transform from {self.board} to target_frame {self.target} on /tf or /tf_static (frames heard: "
                f"{', '.join(heard[:12]) or 'none'}{', ...' if len(heard) > 12 else ''})"
                + (f"; skipped {self._bad}" if self._bad else ""))

    def destroy(self) -> None:
        for s in self.subs:
            self.node.destroy_subscription(s)
        self.subs = []


def _as_pose(transform) -> SimpleNamespace:
    """geometry_msgs/Transform read as a Pose (translation = position, rotation = orientation) for pose_to_rigid."""
    return SimpleNamespace(position=transform.translation, orientation=transform.rotation)
