"""Where each view's camera pose comes from (the detector's `pose_source` parameter). Pure: no ROS imports.

- `static`: a fixed rig calibrated once (`odd-one-out calibrate rig` -> rig YAML, docs/calibration.md).
- `apriltag`: the AprilTag board lying on the tray is in view; the pose comes from each image
  (odd_one_out_ros.calibration). Images whose board pose has an RMS reprojection error over
  `max_error_px`, or fewer than `min_tags` tags, are rejected (PoseError).
- `topic`: a pose per image from elsewhere (e.g. an arm's forward kinematics: the camera optical
  frame's pose in the world frame, i.e. camera-to-world).

All return the world-to-camera transform T_cw (docs/frames.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..calibration.board import TagBoard, load_board
from ..calibration.detect import detect_tags
from ..calibration.pose import PoseError, estimate_board_pose
from ..calibration.rig import read_rig_yaml
from ..geometry import PinholeCamera, Rigid

POSE_SOURCES = ("static", "apriltag", "topic")

__all__ = ["POSE_SOURCES", "PoseError", "PoseResolver"]


@dataclass
class PoseResolver:
    source: str
    rig: dict[str, Rigid] | None = None
    board: TagBoard | None = None
    max_error_px: float = 2.0
    min_tags: int = 2

    def __post_init__(self):
        if self.source not in POSE_SOURCES:
            raise ValueError(f"pose source must be one of {', '.join(POSE_SOURCES)}; got {self.source!r}")
        if self.source == "static" and not self.rig:
            raise ValueError("pose source 'static' needs a rig file with cameras")
        if self.source == "apriltag" and self.board is None:
            raise ValueError("pose source 'apriltag' needs a board file")

    @staticmethod
    def create(source: str, rig_file: str = "", board_file: str = "", max_error_px: float = 2.0,
               min_tags: int = 2) -> "PoseResolver":
        """Reads only what `source` needs; files that cannot be read raise ValueError naming them."""
        rig = board = None
        if source == "static":
            rig = {name: T for name, (T, _) in read_rig_yaml(rig_file).items()}
        elif source == "apriltag":
            board = load_board(board_file)
        return PoseResolver(source, rig, board, max_error_px, min_tags)

    def check_cameras(self, cameras: list[str]) -> None:
        if self.source == "static":
            missing = [c for c in cameras if c not in self.rig]
            if missing:
                raise ValueError(f"cameras {missing} are not in the rig file (it has {sorted(self.rig)})")

    def resolve(self, camera_name: str, rgb: np.ndarray, intrinsics: PinholeCamera,
                T_wc: Rigid | None = None) -> tuple[Rigid, dict]:
        """T_cw of one view and details for the report; raises PoseError when there is no usable pose.

        rgb: (H, W, 3) uint8 (apriltag); intrinsics: the view's camera (its pose is ignored);
        T_wc: camera-to-world from the pose topic (topic).
        """
        if self.source == "static":
            if camera_name not in self.rig:
                raise PoseError(f"camera {camera_name!r} is not in the rig file")
            return self.rig[camera_name], {}
        if self.source == "topic":
            if T_wc is None:
                raise PoseError(f"no pose message for this image of {camera_name}")
            return T_wc.inverse(), {}
        gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
        bp = estimate_board_pose(detect_tags(gray, self.board.family), self.board, intrinsics,
                                 max_error_px=self.max_error_px, min_tags=self.min_tags)
        return bp.T_cw, {"reprojection_error_px": round(bp.reprojection_error_px, 4), "tags": list(bp.tag_ids)}
