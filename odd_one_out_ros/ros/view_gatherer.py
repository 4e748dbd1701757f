"""Gathers posed views from a fixed camera rig: for each camera an image, its CameraInfo and its
pose (geometry_msgs/PoseStamped of the optical frame in the world frame), matched by stamp.

Thin: message conversion and synchronisation only (odd_one_out_ros.sync, .views). Bad messages are
logged once per camera and per reason and counted; they never raise out of a callback.
"""
from __future__ import annotations

import threading
from typing import Callable

from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image

from ..sync import ApproximateSync
from ..views import PosedView
from .conversions import camera_info_to_camera, image_to_rgb, pose_to_rigid


def stamp_seconds(msg) -> float:
    return msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec


class ViewGatherer:
    """Subscribes `node` to <prefix>/<camera>/{image_raw, camera_info, pose} for each camera name.

    When every camera has a fresh synchronised view, calls on_views(list[PosedView]) (camera order).
    """

    def __init__(self, node: Node, cameras: list[str], on_views: Callable[[list[PosedView]], None],
                 prefix: str = "cameras", sync_slop: float = 0.05, qos: QoSProfile = qos_profile_sensor_data):
        self.node, self.cameras, self.on_views = node, list(cameras), on_views
        self.latest: dict[str, PosedView] = {}
        self.failures: dict[str, int] = {}
        self._warned: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        for name in self.cameras:
            sync = ApproximateSync(3, slop=sync_slop, on_match=lambda msgs, n=name: self._on_match(n, *msgs))
            streams = ((Image, "image_raw"), (CameraInfo, "camera_info"), (PoseStamped, "pose"))
            for i, (typ, topic) in enumerate(streams):
                node.create_subscription(typ, f"{prefix}/{name}/{topic}",
                                         lambda m, i=i, s=sync: self._add(s, i, m), qos)

    def _add(self, sync: ApproximateSync, i: int, msg) -> None:
        with self._lock:
            sync.add(i, stamp_seconds(msg), msg)

    def _on_match(self, name: str, image: Image, info: CameraInfo, pose: PoseStamped) -> None:
        try:
            T_wc = pose_to_rigid(pose.pose)
            cam = camera_info_to_camera(info, T_wc.inverse(), source=f"{name}/camera_info")
            view = PosedView(image_to_rgb(image), cam, stamp_seconds(image), name)
        except ValueError as e:
            self.failures[name] = self.failures.get(name, 0) + 1
            if (name, str(e)) not in self._warned:  # once per camera and reason
                self._warned.add((name, str(e)))
                self.node.get_logger().error(f"dropping views of {name}: {e}")
            return
        self.latest[name] = view
        if all(n in self.latest for n in self.cameras):
            views = [self.latest.pop(n) for n in self.cameras]
            self.on_views(views)
