"""Detector results -> ROS messages: MarkerArray, PoseArray, DiagnosticStatus. Message classes only
(no rclpy), like conversions.py. Input: the objects of a JSON report (odd_one_out_ros.inspection.report).

Markers (all in the report's frame): a DELETEALL first (the previous inspection's markers go), then per
object, with the object's id as marker id: ns "boxes" a translucent CUBE (pose = centre + yaw about z,
scale = size), ns "edges" a LINE_LIST of the box's 12 edges, ns "labels" a TEXT_VIEW_FACING
"<id> <label> <score>" above it. Red = anomalous, green = normal.
"""
from __future__ import annotations

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, Pose, PoseArray
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from ..geometry import Box3D

__all__ = ["yaw_pose", "markers_for", "anomaly_poses", "diagnostic_status", "COLOURS"]

COLOURS = {"anomalous": (0.9, 0.15, 0.15), "normal": (0.15, 0.8, 0.25)}


def yaw_pose(center, yaw: float) -> Pose:
    """Pose at `center` rotated by `yaw` about +z (quaternion (0, 0, sin(yaw/2), cos(yaw/2)))."""
    p = Pose()
    p.position.x, p.position.y, p.position.z = (float(v) for v in center)
    p.orientation.z, p.orientation.w = float(np.sin(yaw / 2)), float(np.cos(yaw / 2))
    return p


def _colour(label: str, alpha: float) -> ColorRGBA:
    r, g, b = COLOURS[label]
    return ColorRGBA(r=r, g=g, b=b, a=float(alpha))


def markers_for(objects: list[dict], header: Header) -> MarkerArray:
    """objects: report objects (id, center, size, yaw, score, label)."""
    out = MarkerArray()
    clear = Marker()
    clear.header = header
    clear.action = Marker.DELETEALL
    out.markers.append(clear)
    for o in objects:
        box = Box3D(o["center"], o["size"], o["yaw"])
        cube = Marker(header=header, ns="boxes", id=int(o["id"]), type=Marker.CUBE, action=Marker.ADD)
        cube.pose = yaw_pose(box.center, box.yaw)
        cube.scale.x, cube.scale.y, cube.scale.z = (max(float(s), 1e-3) for s in box.size)
        cube.color = _colour(o["label"], 0.35)
        edges = Marker(header=header, ns="edges", id=int(o["id"]), type=Marker.LINE_LIST, action=Marker.ADD)
        edges.pose.orientation.w = 1.0
        edges.scale.x = 0.004  # line width (m)
        edges.color = _colour(o["label"], 1.0)
        corners = box.corners()
        edges.points = [Point(x=float(corners[i][0]), y=float(corners[i][1]), z=float(corners[i][2]))
                        for e in Box3D.EDGES for i in e]
        text = Marker(header=header, ns="labels", id=int(o["id"]), type=Marker.TEXT_VIEW_FACING, action=Marker.ADD)
        text.pose = yaw_pose(box.center + [0.0, 0.0, box.size[2] / 2 + 0.03], 0.0)
        text.scale.z = 0.03  # text height (m)
        text.color = _colour(o["label"], 1.0)
        text.text = f"{o['id']} {o['label']} {o['score']:.2f}"
        out.markers += [cube, edges, text]
    return out


def anomaly_poses(objects: list[dict], header: Header) -> PoseArray:
    """Centres (and yaw) of the anomalous objects, e.g. for a reject arm."""
    msg = PoseArray(header=header)
    msg.poses = [yaw_pose(o["center"], o["yaw"]) for o in objects if o["label"] == "anomalous"]
    return msg


def diagnostic_status(name: str, hardware_id: str, level: int, message: str, values: dict) -> DiagnosticStatus:
    level_byte = bytes([int(level)])
    return DiagnosticStatus(level=level_byte, name=name, message=message, hardware_id=hardware_id,
                            values=[KeyValue(key=str(k), value=str(v)) for k, v in values.items()])
