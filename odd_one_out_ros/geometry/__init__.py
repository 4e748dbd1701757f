"""Geometry core: cameras, rigid transforms, 3D boxes, camera_info files. Pure: no ROS imports.

Frames and units: docs/frames.md.
"""
from .boxes import Box3D, greedy_match, iou_3d, iou_matrix, match_truth
from .camera import DISTORTION_MODELS, PinholeCamera
from .camera_info import CalibrationFileError, CameraCalibration, read_camera_info_yaml, write_camera_info_yaml
from .transforms import Rigid, look_at, matrix_to_quat, quat_to_matrix, yaw_to_matrix

__all__ = ["Box3D", "greedy_match", "iou_3d", "iou_matrix", "match_truth", "DISTORTION_MODELS", "PinholeCamera",
           "CalibrationFileError",
           "CameraCalibration", "read_camera_info_yaml", "write_camera_info_yaml", "Rigid", "look_at",
           "matrix_to_quat", "quat_to_matrix", "yaw_to_matrix"]
