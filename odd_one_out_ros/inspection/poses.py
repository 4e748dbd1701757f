"""Where each view's camera pose comes from (the detector's `pose_source` parameter), and the view built from
one image, its CameraInfo and that pose. Pure: no ROS imports (messages are read by their fields).

- `static`: a fixed rig calibrated once (`odd-one-out calibrate rig` -> rig YAML, docs/calibration.md).
- `apriltag`: the AprilTag board lying on the tray is in view; the pose comes from each image
  (odd_one_out_ros.calibration). Images whose board pose has an RMS reprojection error over
  `max_error_px`, or fewer than `min_tags` tags, are rejected (PoseError).
- `topic`: a pose per image from elsewhere (e.g. an arm's forward kinematics: the camera optical
  frame's pose in the world frame, i.e. camera-to-world).

All return the world-to-camera transform T_cw (docs/frames.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ..calibration.board import TagBoard, load_board
from ..calibration.detect import detect_tags
from ..calibration.pose import PoseError, estimate_board_pose
from ..calibration.rig import read_rig_yaml
from ..geometry import PinholeCamera, Rigid
from ..views import PosedView, ViewError, camera_info_to_calibration, image_to_rgb, pose_to_rigid, stamp_seconds

POSE_SOURCES = ("static", "apriltag", "topic")

__all__ = ["POSE_SOURCES", "PoseError", "PoseResolver", "BuiltView"]


@dataclass
class BuiltView:
    """One image made a posed view: the view, details of its pose for the report (apriltag: reprojection error,
    tags) and the pose message it was made with (pose_source topic; None for static and apriltag, whose pose is
    the view's: view.camera.T_cw)."""

    view: PosedView
    extra: dict = field(default_factory=dict)
    pose: object | None = None


@dataclass
class PoseResolver:
    source: str
    rig: dict[str, Rigid] | None = None
    board: TagBoard | None = None
    max_error_px: float = 2.0
    min_tags: int = 2
    frame_id: str = ""  # topic: the world frame poses must be given in ("" = any)

    def __post_init__(self):
        if self.source not in POSE_SOURCES:
            raise ValueError(f"pose source must be one of {', '.join(POSE_SOURCES)}; got {self.source!r}")
        if self.source == "static" and not self.rig:
            raise ValueError("pose source 'static' needs a rig file with cameras")
        if self.source == "apriltag" and self.board is None:
            raise ValueError("pose source 'apriltag' needs a board file")

    @staticmethod
    def create(source: str, rig_file: str = "", board_file: str = "", max_error_px: float = 2.0,
               min_tags: int = 2, frame_id: str = "") -> "PoseResolver":
        """Reads only what `source` needs; files that cannot be read raise ValueError naming them."""
        rig = board = None
        if source == "static":
            rig = {name: T for name, (T, _) in read_rig_yaml(rig_file).items()}
        elif source == "apriltag":
            board = load_board(board_file)
        return PoseResolver(source, rig, board, max_error_px, min_tags, frame_id)

    def check_cameras(self, cameras: list[str]) -> None:
        if self.source == "static":
            missing = [c for c in cameras if c not in self.rig]
            if missing:
                raise ValueError(f"cameras {missing} are not in the rig file (it has {sorted(self.rig)})")

    def resolve(self, camera_name: str, rgb: np.ndarray | None, intrinsics: PinholeCamera | None,
                pose=None) -> tuple[Rigid, dict]:
        """T_cw of one view and details for the report; raises PoseError when there is no usable pose (ViewError
        "pose" for a malformed pose message).

        rgb: (H, W, 3) uint8 (apriltag); intrinsics: the view's camera, its pose ignored (apriltag);
        pose: the image's geometry_msgs/PoseStamped, camera-to-world in frame_id (topic).
        """
        if self.source == "static":
            if camera_name not in self.rig:
                raise PoseError(f"camera {camera_name!r} is not in the rig file")
            return self.rig[camera_name], {}
        if self.source == "topic":
            if pose is None:
                raise PoseError(f"no pose message for this image of {camera_name}")
            frame = pose.header.frame_id
            if frame and self.frame_id and frame != self.frame_id:
                raise PoseError(f"pose is in frame {frame!r}, not {self.frame_id!r} "
                                "(no tf here: publish poses in the world frame)")
            try:
                return pose_to_rigid(pose.pose).inverse(), {}
            except ValueError as e:
                raise ViewError("pose", f"{camera_name}: {e}") from None
        gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
        bp = estimate_board_pose(detect_tags(gray, self.board.family), self.board, intrinsics,
                                 max_error_px=self.max_error_px, min_tags=self.min_tags)
        return bp.T_cw, {"reprojection_error_px": round(bp.reprojection_error_px, 4), "tags": list(bp.tag_ids)}

    def build_view(self, camera_name: str, image, info, pose=None) -> BuiltView:
        """sensor_msgs/Image + CameraInfo (+ the PoseStamped of pose source topic) -> the posed view, each message
        converted once. Raises PoseError (no usable pose) or ViewError (kind "image", "camera_info" or "pose")."""
        if self.source == "topic":  # the pose message first: a pose in another frame is named before all else
            T_cw, extra = self.resolve(camera_name, None, None, pose)
        try:
            rgb = image_to_rgb(image)
        except ValueError as e:
            raise ViewError("image", f"{camera_name}: {e}") from None
        try:
            calib = camera_info_to_calibration(info, source=f"{camera_name}/camera_info")
        except ValueError as e:
            raise ViewError("camera_info", str(e)) from None
        if self.source != "topic":
            T_cw, extra = self.resolve(camera_name, rgb, calib.to_camera() if self.source == "apriltag" else None)
        try:
            view = PosedView(rgb, calib.to_camera(T_cw), stamp_seconds(image), camera_name)
        except ValueError as e:  # a size that is not the image's
            raise ViewError("camera_info", str(e)) from None
        return BuiltView(view, extra, pose if self.source == "topic" else None)
