"""The detector's outputs: its lifecycle publishers (nothing goes out unless the node is active), what each
inspection publishes (ros/outputs.py makes the messages), /diagnostics, and the serialized messages of a view bag.
Topics and QoS: docs/ros.md."""
from __future__ import annotations

import json
from copy import copy
from typing import Callable

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseArray, PoseStamped
from rclpy.clock import Clock, ClockType
from rclpy.event_handler import PublisherEventCallbacks
from rclpy.lifecycle import LifecycleNode
from rclpy.qos import DurabilityPolicy, QoSProfile
from rclpy.qos_overriding_options import QoSOverridingOptions
from rclpy.serialization import serialize_message
from rclpy.time import Time
from sensor_msgs.msg import Image
from std_msgs.msg import Bool, Header, String
from visualization_msgs.msg import MarkerArray

from ..inspection.diagnostics import ERROR
from ..inspection.overlay import overlay_image
from ..inspection.pipeline import BAG_TOPICS, GatheredView, ViewSet, one_line
from ..inspection.report import is_pass
from .conversions import rgb_to_image, rigid_to_pose
from .outputs import anomaly_poses, camera_transforms, detections_3d_msg, diagnostic_status, markers_for, verdict_msg
from .tf_listener import TargetFrame


class DetectorPublishers:
    """~/verdict, ~/markers, ~/anomalies, ~/anomaly_detected, ~/overlay, ~/detections_3d (latched), ~/detections,
    /diagnostics and the cameras' TF (/tf_static with static poses, else /tf) of one configured detector.
    overridable: the qos_overrides.* options (not for /diagnostics and TF); logger(): the logger to warn with (the
    node's, or another once the context is shut down); target_frame: the frame ~/verdict, ~/anomalies and
    ~/detections_3d are given in ("" or frame_id: frame_id)."""

    def __init__(self, node: LifecycleNode, frame_id: str, overlay_max_views: int, overridable: QoSOverridingOptions,
                 logger: Callable, static_poses: bool = True, target_frame: str = ""):
        self.node, self.frame_id, self.overlay_max_views, self.logger = node, frame_id, overlay_max_views, logger
        # the arm's frame for ~/verdict, ~/anomalies and ~/detections_3d (ValueError without tf2_msgs)
        self.target = TargetFrame(node, target_frame, frame_id) if target_frame and target_frame != frame_id else None
        self.static_poses, self._static_tf = static_poses, {}  # child frame -> TransformStamped sent on /tf_static
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
        self.verdict = self.tf = None
        try:  # built by make setup / colcon (interfaces/); a workspace without them still gets the rest
            from odd_one_out_msgs.msg import Verdict
            from tf2_msgs.msg import TFMessage
        except ImportError as e:
            logger().warning(f"no ~/verdict and no TF: {e.name} is not built (make setup, or colcon build "
                             "--base-paths src src/odd_one_out_ros/interfaces; docs/ros.md)")
        else:
            tf_qos = latched if static_poses else QoSProfile(depth=100)
            self.verdict = pub(Verdict, "~/verdict", latched)
            self.tf = pub(TFMessage, "/tf_static" if static_poses else "/tf", tf_qos, None)
            self.all += [self.verdict, self.tf]
        try:  # only where the workspace has vision_msgs (not obtainable here)
            from vision_msgs.msg import Detection3DArray
        except ImportError:
            self.detections_3d = None
        else:
            self.detections_3d = pub(Detection3DArray, "~/detections_3d", latched)
            self.all.append(self.detections_3d)

    def destroy(self) -> None:
        for p in self.all:
            self.node.destroy_lifecycle_publisher(p)
        self.all = []
        if self.target is not None:
            self.target.destroy()

    def frame_problem(self) -> str:
        """Why the outputs cannot be given in target_frame now ("" when they can, or no target_frame is set)."""
        return self.target.problem() if self.target is not None else ""

    def inspection(self, report: dict, result, vs: ViewSet) -> None:
        """One verdict's outputs, stamped as its newest image (no view: now), each replacing the last: an earlier
        tray's rejects never stay latched. ~/anomalies holds the rejects of an "ok" verdict only; ~/anomaly_detected
        is true unless the tray passes (status ok, nothing anomalous). An overlay that cannot be drawn is a warning
        (once per kind of problem), never a failed inspection: the report, markers and flag are out already."""
        newest, views = vs.newest, [g.view for g in vs.items]
        stamp = newest.frame.image.header.stamp if newest is not None else \
            Time(nanoseconds=round(report["stamp"] * 1e9)).to_msg()
        header = Header(stamp=stamp, frame_id=self.frame_id)
        objects = report["objects"]
        ok = report["status"] == "ok"
        T = self.target.transform() if self.target is not None else None  # None: no target_frame, or no
        arm = Header(stamp=stamp, frame_id=self.target.target) if T is not None else header  # objects (not ok)
        self.markers.publish(markers_for(objects, header, report))
        self.anomalies.publish(anomaly_poses(objects if ok else [], arm, T))
        self.flag.publish(Bool(data=not is_pass(report)))
        if self.verdict is not None:
            self.verdict.publish(verdict_msg(report, arm, T))
            self._cameras_tf(vs.items)
        if self.detections_3d is not None:
            self.detections_3d.publish(detections_3d_msg(report, arm, T))
        self.detections.publish(String(data=json.dumps(report)))
        if self.overlay_max_views:
            found = result.objects if result is not None else []  # (no model run: the views without boxes)
            try:
                sheet = overlay_image(views, [o.box for o in found], [o.score for o in found],
                                      [o["label"] == "anomalous" for o in objects], self.overlay_max_views,
                                      box_scores=[o.box_score for o in found])
            except Exception as e:  # a picture that cannot be drawn (e.g. cv2 on absurd pixels) is no failed inspection
                why = one_line(e)
                if why != self._overlay_problem:  # said once per kind of problem, not per inspection
                    self.logger().warning(f"no overlay from inspection {report['inspection_id']} on: {why}")
                self._overlay_problem = why
                return
            self._overlay_problem = None
            self.overlay.publish(rgb_to_image(sheet, self.frame_id, header.stamp))

    def _cameras_tf(self, items: list[GatheredView]) -> None:
        """The views' camera poses as TF: static poses once per camera on /tf_static (all of them in each message,
        as tf2's static broadcaster sends them), the others on /tf at each view's stamp. Child frame
        `odd_one_out/<camera>` (the optical frame as this detector sees it): the image's own frame_id may already
        have a parent in the robot's TF tree, and a frame has one parent."""
        TFMessage = self.tf.msg_type
        if self.static_poses:  # (each static camera once)
            items = [g for g in items if f"odd_one_out/{g.frame.camera}" not in self._static_tf]
        cams = [(f"odd_one_out/{g.frame.camera}", g.view.camera.T_cw.inverse(), g.frame.image.header.stamp)
                for g in items]
        if not self.static_poses:
            self.tf.publish(TFMessage(transforms=camera_transforms(self.frame_id, cams)))
            return
        if cams:
            self._static_tf.update({t.child_frame_id: t for t in camera_transforms(self.frame_id, cams)})
            self.tf.publish(TFMessage(transforms=list(self._static_tf.values())))

    def diagnostics(self, level: int, message: str, values: dict) -> None:
        self.diag.publish(diagnostics_msg(self.node, level, message, values))

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


class FaultStatus:
    """/diagnostics ERROR, every second, of a detector that a failed configure or activate left unable to inspect
    (its lifecycle publishers are silent while it is not active): set(why) starts it, clear() stops it."""

    def __init__(self, node):
        self.node, self.why, self._timer = node, "", None
        self._pub = node.create_publisher(DiagnosticArray, "/diagnostics", 10)

    def set(self, why: str) -> None:
        self.why = why
        if self._timer is None:
            self._timer = self.node.create_timer(1.0, self._publish, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._publish()

    def clear(self) -> None:
        self.why = ""
        if self._timer is not None:
            self.node.destroy_timer(self._timer)
            self._timer = None

    def _publish(self) -> None:
        if self.why and self.node.context.ok():
            self._pub.publish(diagnostics_msg(self.node, ERROR, f"cannot inspect: {self.why}",
                                              {"lifecycle_state": "unconfigured or inactive"}))


def diagnostics_msg(node, level: int, message: str, values: dict) -> DiagnosticArray:
    """The detector's one /diagnostics status ("<node name>: odd-one-out detector", hardware id = the node's full
    name), stamped now."""
    msg = DiagnosticArray(status=[diagnostic_status(f"{node.get_name()}: odd-one-out detector",
                                                    node.get_fully_qualified_name(), level, message, values)])
    msg.header.stamp = node.get_clock().now().to_msg()
    return msg
