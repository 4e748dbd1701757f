"""Camera calibration and AprilTag poses. Pure: no ROS imports. Frames: docs/frames.md; usage: docs/calibration.md.

board: the tag board (YAML, corners, printable image); detect: tag detection (pupil-apriltags);
pose: board and tag poses from one image; intrinsics: cv2.calibrateCamera from chessboard or board
images; rig: fixed-rig extrinsics and the rig YAML; render: synthetic views with exact ground truth.
"""
from .board import BoardFileError, TagBoard, TagPlacement, board_image, load_board
from .detect import ImageReadError, TagDetection, detect_tags, read_gray
from .intrinsics import CalibrationError, IntrinsicsResult, board_views, calibrate_views, chessboard_views
from .pose import BoardPose, PoseError, TagPose, estimate_board_pose, estimate_tag_poses
from .rig import CameraExtrinsics, RigFileError, calibrate_extrinsics, read_rig_yaml, write_rig_yaml

__all__ = ["BoardFileError", "TagBoard", "TagPlacement", "board_image", "load_board", "ImageReadError",
           "TagDetection", "detect_tags", "read_gray", "CalibrationError", "IntrinsicsResult", "board_views",
           "calibrate_views", "chessboard_views", "BoardPose", "PoseError", "TagPose", "estimate_board_pose",
           "estimate_tag_poses", "CameraExtrinsics", "RigFileError", "calibrate_extrinsics", "read_rig_yaml",
           "write_rig_yaml"]
