"""Messages made from our types: CameraCalibration -> CameraInfo, Rigid -> geometry_msgs/Pose, RGB -> Image; and,
re-exported from odd_one_out_ros.views, the readers the other way (they need no message classes).

Message classes only; no rclpy import. Frames: docs/frames.md.
"""
from __future__ import annotations

import numpy as np
from geometry_msgs.msg import Pose
from sensor_msgs.msg import CameraInfo, Image

from ..geometry import CameraCalibration, Rigid
from ..views import (  # noqa: F401  (re-exported: the readers)
    IMAGE_ENCODINGS,
    ViewError,
    camera_info_to_calibration,
    camera_info_to_camera,
    image_to_rgb,
    pose_to_rigid,
    posed_view,
    stamp_seconds,
)

__all__ = ["camera_info_to_calibration", "calibration_to_camera_info", "camera_info_to_camera",
           "pose_to_rigid", "rigid_to_pose", "image_to_rgb", "rgb_to_image", "IMAGE_ENCODINGS",
           "stamp_seconds", "posed_view", "ViewError"]


def calibration_to_camera_info(calib: CameraCalibration, frame_id: str = "", stamp=None) -> CameraInfo:
    """CameraCalibration -> CameraInfo (no binning, full ROI)."""
    msg = CameraInfo()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.width, msg.height = calib.width, calib.height
    msg.distortion_model = calib.distortion_model
    msg.d = [float(x) for x in calib.D]
    msg.k = [float(x) for x in calib.K.ravel()]
    msg.r = [float(x) for x in calib.R.ravel()]
    msg.p = [float(x) for x in calib.P.ravel()]
    return msg


def rigid_to_pose(T: Rigid) -> Pose:
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in T.t)
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = (float(v) for v in T.as_quat())
    return pose


def rgb_to_image(rgb: np.ndarray, frame_id: str = "", stamp=None, encoding: str = "rgb8") -> Image:
    """(H, W, 3) uint8 RGB -> sensor_msgs/Image (rgb8 or bgr8)."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
    if encoding not in ("rgb8", "bgr8"):
        raise ValueError(f"encoding must be rgb8 or bgr8, got {encoding!r}")
    msg = Image()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = rgb.shape[:2]
    msg.encoding = encoding
    msg.step = rgb.shape[1] * 3
    msg.data = np.ascontiguousarray(rgb if encoding == "rgb8" else rgb[..., ::-1]).tobytes()
    return msg


