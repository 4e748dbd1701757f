"""The detector's outputs: its lifecycle publishers (nothing goes out unless the node is active), what each
inspection publishes (ros/outputs.py makes the messages), /diagnostics, and the serialized messages of a view bag.
Topics and QoS: docs/ros.md."""
from __future__ import annotations

import json
from copy import copy
from typing import Callable

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseArray, PoseStamped
from rclpy.event_handler import PublisherEventCallbacks
from rclpy.lifecycle import LifecycleNode
from rclpy.qos import DurabilityPolicy, QoSProfile
from rclpy.qos_overriding_options import QoSOverridingOptions
from rclpy.serialization import serialize_message
from sensor_msgs.msg import Image
from std_msgs.msg import Bool, Header, String
from visualization_msgs.msg import MarkerArray

from ..inspection.overlay import overlay_image
from ..inspection.pipeline import BAG_TOPICS, GatheredView, one_line
from .conversions import rgb_to_image, rigid_to_pose
from .outputs import anomaly_poses, diagnostic_status, markers_for


class DetectorPublishers:
    """~/markers, ~/anomalies, ~/anomaly_detected, ~/overlay (latched), ~/detections and /diagnostics of one
    configured detector. overridable: the qos_overrides.* options (not for /diagnostics); logger(): the logger to
    warn with (the node's, or another once the context is shut down)."""

    def __init__(self, node: LifecycleNode, frame_id: str, overlay_max_views: int, overridable: QoSOverridingOptions,
                 logger: Callable):
        self.node, self.frame_id, self.overlay_max_views, self.logger = node, frame_id, overlay_max_views, logger
        self._overlay_problem: str | None = None  # the last reason the overlay could not be drawn
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)

        # no QoS event handlers: cleanup destroys these while an executor thread may be waiting on them
        def pub(typ, topic, qos_profile, options=overridable):
            return node.create_lifecycle_publisher(typ, topic, copy(qos_profile), qos_overriding_options=options,
                                                   event_callbacks=PublisherEventCallbacks(use_default_callbacks=False))

        self.all = [pub(MarkerArray, "~/markers", latched), pub(PoseArray, "~/anomalies", latched),
                    pub(Bool, "~/anomaly_detected", latched), pub(Image, "~/overlay", latched),
                    pub(String, "~/detections", 10), pub(DiagnosticArray, "/diagnostics", 10, None)]
        self.markers, self.anomalies, self.flag, self.overlay, self.detections, self.diag = self.all

    def destroy(self) -> None:
        for p in self.all:
            self.node.destroy_lifecycle_publisher(p)
        self.all = []

    def inspection(self, report: dict, result, views, newest: GatheredView) -> None:
        """One inspection's outputs, stamped as its newest image. An overlay that cannot be drawn is a warning
        (once per kind of problem), never a failed inspection: the report, markers and flag are out already."""
        header = Header(stamp=newest.frame.image.header.stamp, frame_id=self.frame_id)
        objects = report["objects"]
        self.markers.publish(markers_for(objects, header))
        self.anomalies.publish(anomaly_poses(objects, header))
        self.flag.publish(Bool(data=report["anomaly_detected"]))
        self.detections.publish(String(data=json.dumps(report)))
        if self.overlay_max_views:
            try:
                sheet = overlay_image(views, [o.box for o in result.objects], [o.score for o in result.objects],
                                      [o["label"] == "anomalous" for o in objects], self.overlay_max_views,
                                      box_scores=[o.box_score for o in result.objects])
            except Exception as e:  # a picture that cannot be drawn (e.g. cv2 on absurd pixels) is no failed inspection
                why = one_line(e)
                if why != self._overlay_problem:  # said once per kind of problem, not per inspection
                    self.logger().warning(f"no overlay from inspection {report['inspection_id']} on: {why}")
                self._overlay_problem = why
                return
            self._overlay_problem = None
            self.overlay.publish(rgb_to_image(sheet, self.frame_id, header.stamp))

    def diagnostics(self, level: int, message: str, values: dict) -> None:
        node = self.node
        msg = DiagnosticArray(status=[diagnostic_status(f"{node.get_name()}: odd-one-out detector",
                                                        node.get_fully_qualified_name(), level, message, values)])
        msg.header.stamp = node.get_clock().now().to_msg()
        self.diag.publish(msg)

    def bag_messages(self, g: GatheredView) -> dict:
        """`view_bag_messages` in this detector's frame_id."""
        return view_bag_messages(g, self.frame_id)

    @staticmethod
    def bag_report(report: dict) -> bytes:
        return serialize_message(String(data=json.dumps(report)))


def view_bag_messages(g: GatheredView, frame_id: str) -> dict:
    """The view bag's messages of one view: {BAG_TOPICS[i]: serialized message} of the Image, CameraInfo and
    PoseStamped it was made from (static and apriltag: the pose found, as camera-to-world in frame_id, stamped as the
    image)."""
    pose = g.built.pose
    if pose is None:
        pose = PoseStamped()
        pose.header.stamp, pose.header.frame_id = g.frame.image.header.stamp, frame_id
        pose.pose = rigid_to_pose(g.view.camera.T_cw.inverse())
    return {k: serialize_message(m) for k, m in zip(BAG_TOPICS, (g.frame.image, g.frame.info, pose))}
