"""Detector results -> ROS messages: MarkerArray, PoseArray, DiagnosticStatus. Message classes only
(no rclpy), like conversions.py. Input: the objects of a JSON report (odd_one_out_ros.inspection.report).

Markers (all in the report's frame): a DELETEALL first (the previous inspection's markers go), ns "verdict" a
TEXT_VIEW_FACING "inspection <id>: <status>" above the board's origin (with the reason when not ok), then per
object, with the object's index as marker id: ns "boxes" a translucent CUBE (pose = centre + yaw about z,
scale = size), ns "edges" a LINE_LIST of the box's 12 edges, ns "labels" a TEXT_VIEW_FACING
"<uid> <label> <score>" above it. Red = anomalous, green = normal (grey: not compared, status not ok).
"""
from __future__ import annotations

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, Pose, PoseArray
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from ..geometry import Box3D, Rigid, yaw_to_matrix
from ..inspection.report import is_pass
from .conversions import rigid_to_pose

__all__ = ["yaw_pose", "object_pose", "markers_for", "anomaly_poses", "diagnostic_status", "verdict_msg",
           "detections_3d_msg", "camera_transforms", "COLOURS"]

COLOURS = {"anomalous": (0.9, 0.15, 0.15), "normal": (0.15, 0.8, 0.25), "not_compared": (0.6, 0.6, 0.6)}


def yaw_pose(center, yaw: float) -> Pose:
    """Pose at `center` rotated by `yaw` about +z (quaternion (0, 0, sin(yaw/2), cos(yaw/2)))."""
    p = Pose()
    p.position.x, p.position.y, p.position.z = (float(v) for v in center)
    p.orientation.z, p.orientation.w = float(np.sin(yaw / 2)), float(np.cos(yaw / 2))
    return p


def object_pose(o: dict, T: Rigid | None = None) -> Pose:
    """A report object's box pose (centre, yaw about the board's +z) in the board frame, or in another frame when
    T (T_target_board) is given: there the orientation is a full rotation."""
    if T is None:
        return yaw_pose(o["center"], o["yaw"])
    return rigid_to_pose(T @ Rigid(yaw_to_matrix(float(o["yaw"])), o["center"]))


def _colour(label: str, alpha: float) -> ColorRGBA:
    r, g, b = COLOURS[label]
    return ColorRGBA(r=r, g=g, b=b, a=float(alpha))


def markers_for(objects: list[dict], header: Header, report: dict | None = None) -> MarkerArray:
    """objects: report objects (id, uid, center, size, yaw, score, label); report: the verdict they belong to (its
    id and status are drawn; None: no verdict marker)."""
    out = MarkerArray()
    clear = Marker()
    clear.header = header
    clear.action = Marker.DELETEALL
    out.markers.append(clear)
    compared = report is None or report.get("status", "ok") == "ok"
    if report is not None:
        verdict = Marker(header=header, ns="verdict", id=0, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD)
        verdict.pose = yaw_pose([0.0, 0.0, 0.35], 0.0)
        verdict.scale.z = 0.04
        status = report.get("status", "ok")
        verdict.color = _colour("normal" if is_pass(report) else "anomalous" if compared else "not_compared", 1.0)
        verdict.text = f"inspection {report['inspection_id']}: {status.replace('_', ' ')}" + \
            (f" ({report['reason'][:80]})" if report.get("reason") else "")
        out.markers.append(verdict)
    for o in objects:
        colour = o["label"] if compared else "not_compared"
        box = Box3D(o["center"], o["size"], o["yaw"])
        cube = Marker(header=header, ns="boxes", id=int(o["id"]), type=Marker.CUBE, action=Marker.ADD)
        cube.pose = yaw_pose(box.center, box.yaw)
        cube.scale.x, cube.scale.y, cube.scale.z = (max(float(s), 1e-3) for s in box.size)
        cube.color = _colour(colour, 0.35)
        edges = Marker(header=header, ns="edges", id=int(o["id"]), type=Marker.LINE_LIST, action=Marker.ADD)
        edges.pose.orientation.w = 1.0
        edges.scale.x = 0.004  # line width (m)
        edges.color = _colour(colour, 1.0)
        corners = box.corners()
        edges.points = [Point(x=float(corners[i][0]), y=float(corners[i][1]), z=float(corners[i][2]))
                        for e in Box3D.EDGES for i in e]
        text = Marker(header=header, ns="labels", id=int(o["id"]), type=Marker.TEXT_VIEW_FACING, action=Marker.ADD)
        text.pose = yaw_pose(box.center + [0.0, 0.0, box.size[2] / 2 + 0.03], 0.0)
        text.scale.z = 0.03  # text height (m)
        text.color = _colour(colour, 1.0)
        text.text = f"{o.get('uid', o['id'])} {o['label']} {o['score']:.2f}"
        out.markers += [cube, edges, text]
    return out


def anomaly_poses(objects: list[dict], header: Header, T: Rigid | None = None) -> PoseArray:
    """Box poses of the anomalous objects, e.g. for a reject arm; T: T_target_board (header in target_frame)."""
    msg = PoseArray(header=header)
    msg.poses = [object_pose(o, T) for o in objects if o["label"] == "anomalous"]
    return msg


def diagnostic_status(name: str, hardware_id: str, level: int, message: str, values: dict) -> DiagnosticStatus:
    level_byte = bytes([int(level)])
    return DiagnosticStatus(level=level_byte, name=name, message=message, hardware_id=hardware_id,
                            values=[KeyValue(key=str(k), value=str(v)) for k, v in values.items()])


def verdict_msg(report: dict, header: Header, T: Rigid | None = None):
    """The typed verdict (odd_one_out_msgs/Verdict) of a report: the same ids, status and objects, the objects
    sorted by anomaly score (highest first); anomaly_detected is true unless the tray passes (as ~/anomaly_detected).
    T: T_target_board when the header is in target_frame. (Imported here: the package may be built without it;
    DetectorPublishers then publishes no verdict.)"""
    from odd_one_out_msgs.msg import ObjectVerdict, Verdict

    status = {"ok": Verdict.STATUS_OK, "cannot_inspect": Verdict.STATUS_CANNOT_INSPECT,
              "cannot_compare": Verdict.STATUS_CANNOT_COMPARE}[report.get("status", "ok")]
    msg = Verdict(header=header, inspection_id=int(report["inspection_id"]), status=status,
                  reason=report.get("reason", ""), anomaly_detected=not is_pass(report),
                  threshold=float(report["threshold"]), cameras_used=[v["camera"] for v in report["views"]],
                  cameras_rejected=[f"{m['camera']}: {m['reason']}" for m in report.get("missing_views", [])])
    for o in sorted(report["objects"], key=lambda o: -o["score"]):
        ov = ObjectVerdict(id=o.get("uid", str(o["id"])), index=int(o["id"]), pose=object_pose(o, T),
                           anomaly_score=float(o["score"]), box_score=float(o.get("box_score", 1.0)),
                           anomalous=o["label"] == "anomalous", label=o["label"])
        ov.size.x, ov.size.y, ov.size.z = (float(v) for v in o["size"])
        msg.objects.append(ov)
    return msg


def detections_3d_msg(report: dict, header: Header, T: Rigid | None = None):
    """vision_msgs/Detection3DArray of a report (where the workspace has vision_msgs): per object, sorted by anomaly
    score, id = its uid, bbox = box pose + size, results = hypotheses "anomalous" (score) and "normal"
    (1 - score), the verdict's label first. Objects of a verdict that is not ok are still given (its status is on
    ~/verdict)."""
    from vision_msgs.msg import Detection3D, Detection3DArray, ObjectHypothesisWithPose

    msg = Detection3DArray(header=header)
    for o in sorted(report["objects"], key=lambda o: -o["score"]):
        d = Detection3D(header=header, id=o.get("uid", str(o["id"])))
        d.bbox.center = object_pose(o, T)
        d.bbox.size.x, d.bbox.size.y, d.bbox.size.z = (float(v) for v in o["size"])
        scores = {"anomalous": float(o["score"]), "normal": 1.0 - float(o["score"])}
        for label in sorted(scores, key=lambda k: k != o["label"]):
            h = ObjectHypothesisWithPose()
            h.hypothesis.class_id, h.hypothesis.score = label, scores[label]
            h.pose.pose = d.bbox.center
            d.results.append(h)
        msg.detections.append(d)
    return msg


def camera_transforms(frame_id: str, cameras: list[tuple[str, object, object]]):
    """TransformStamped of each camera's optical frame in `frame_id`: cameras = [(child frame, T_wc: Rigid
    camera-to-world, stamp: builtin_interfaces/Time)]."""
    from geometry_msgs.msg import TransformStamped

    out = []
    for child, T_wc, stamp in cameras:
        t = TransformStamped()
        t.header.frame_id, t.header.stamp, t.child_frame_id = frame_id, stamp, child
        tr, q = t.transform.translation, t.transform.rotation
        tr.x, tr.y, tr.z = (float(v) for v in T_wc.t)
        q.x, q.y, q.z, q.w = (float(v) for v in T_wc.as_quat())
        out.append(t)
    return out
