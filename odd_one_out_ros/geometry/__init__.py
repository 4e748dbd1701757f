"""Geometry core: cameras, rigid transforms, 3D boxes, camera_info files. Pure: no ROS imports.

Frames and units: docs/frames.md.
"""
from .boxes import Box3D, boxes_from_tensor, boxes_to_tensor, greedy_match, iou_3d, iou_matrix, match_truth
from .camera import DISTORTION_MODELS, PinholeCamera, scale_intrinsics
from .camera_info import CalibrationFileError, CameraCalibration, read_camera_info_yaml, write_camera_info_yaml
from .transforms import Rigid, look_at, matrix_to_quat, pose_to_dict, quat_to_matrix, yaw_to_matrix

__all__ = ["Box3D", "boxes_from_tensor", "boxes_to_tensor", "greedy_match", "iou_3d", "iou_matrix", "match_truth",
           "DISTORTION_MODELS", "PinholeCamera", "scale_intrinsics", "CalibrationFileError",
           "CameraCalibration", "read_camera_info_yaml", "write_camera_info_yaml", "Rigid", "look_at",
           "matrix_to_quat", "pose_to_dict", "quat_to_matrix", "yaw_to_matrix"]
