"""Where each view's camera pose comes from (the detector's `pose_source` parameter), and the view built from
one image, its CameraInfo and that pose. Pure: no ROS imports (messages are read by their fields).

- `static`: a fixed rig calibrated once (`odd-one-out calibrate rig` -> rig YAML, docs/calibration.md). With a
  board to check against (`check_board`), a view whose board tags are in view must agree with the rig file within
  `tolerance` (metres, degrees): a camera knocked off its calibration, or two swapped cables, is a PoseError
  naming how far off it is (no tags in view: not checked); each camera once per `check_period` seconds.
- `apriltag`: the AprilTag board lying on the tray is in view; the pose comes from each image
  (odd_one_out_ros.calibration). Images whose board pose has an RMS reprojection error over
  `max_error_px`, or fewer than `min_tags` tags, are rejected (PoseError).
- `topic`: a pose per image from elsewhere (e.g. an arm's forward kinematics: the camera optical
  frame's pose in the world frame, i.e. camera-to-world).

All return the world-to-camera transform T_cw (docs/frames.md).
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..calibration.board import TagBoard, load_board
from ..calibration.detect import detect_tags
from ..calibration.pose import PoseError, estimate_board_pose
from ..calibration.rig import read_rig_yaml
from ..geometry import PinholeCamera, Rigid
from ..views import (
    PosedView,
    ViewError,
    camera_info_to_calibration,
    content_problem,
    image_to_rgb,
    pose_to_rigid,
    stamp_seconds,
)

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
    check_board: TagBoard | None = None  # static: check each view's rig pose against this board's tags in view
    tolerance: tuple[float, float] = (0.02, 2.0)  # static with check_board: metres, degrees
    check_period: float = 0.0  # static with check_board: seconds between two checks of one camera (0: every view)
    _checked: dict = field(default_factory=dict, repr=False)  # camera -> (monotonic time, details or PoseError)
    _due: set = field(default_factory=set, repr=False)  # cameras whose check runs in the background now
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _pool: ThreadPoolExecutor | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.source not in POSE_SOURCES:
            raise ValueError(f"pose source must be one of {', '.join(POSE_SOURCES)}; got {self.source!r}")
        if self.source == "static" and not self.rig:
            raise ValueError("pose source 'static' needs a rig file with cameras")
        if self.source == "apriltag" and self.board is None:
            raise ValueError("pose source 'apriltag' needs a board file")

    @staticmethod
    def create(source: str, rig_file: str = "", board_file: str = "", max_error_px: float = 2.0,
               min_tags: int = 2, frame_id: str = "", check_rig: tuple[float, float] | None = None,
               check_period: float = 0.0) -> "PoseResolver":
        """Reads only what `source` needs; files that cannot be read raise ValueError naming them. check_rig:
        static poses are checked against the board's tags in view, within (metres, degrees), each camera once per
        check_period seconds (0: every view)."""
        rig = board = check = None
        if source == "static":
            rig = {name: T for name, (T, _) in read_rig_yaml(rig_file).items()}
            check = load_board(board_file) if check_rig else None
        elif source == "apriltag":
            board = load_board(board_file)
        return PoseResolver(source, rig, board, max_error_px, min_tags, frame_id, check, check_rig or (0.02, 2.0),
                            check_period)

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
            if self.check_board is None or rgb is None:
                return self.rig[camera_name], {}
            return self.rig[camera_name], self._check_rig(camera_name, rgb, intrinsics)
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
        bp = self._board_pose(self.board, rgb, intrinsics)
        return bp.T_cw, {"reprojection_error_px": round(bp.reprojection_error_px, 4), "tags": list(bp.tag_ids)}

    def _board_pose(self, board: TagBoard, rgb: np.ndarray, intrinsics: PinholeCamera):
        gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
        return estimate_board_pose(detect_tags(gray, board.family), board, intrinsics,
                                   max_error_px=self.max_error_px, min_tags=self.min_tags)

    def _check_rig(self, camera_name: str, rgb: np.ndarray, intrinsics: PinholeCamera) -> dict:
        """The rig file's pose of one view against the board's tags in it: the report's details, or PoseError when
        they disagree by more than `tolerance`. A camera's first view is checked before it is used (and every view
        with check_period 0); later, once check_period has passed, a view is checked in the background (a tag
        detection takes 3-20 ms: no set waits for it) and its outcome counts from the next view on. Until then the
        last outcome stands: a camera found off stays out until a check finds it right."""
        now = time.monotonic()
        with self._lock:
            last = self._checked.get(camera_name)
            later = last is not None and self.check_period > 0
            due = last is None or (now - last[0] >= self.check_period and camera_name not in self._due)
            if due and later:
                self._due.add(camera_name)
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(1, thread_name_prefix="rig-check")
                self._pool.submit(self._check, camera_name, rgb.copy(), intrinsics, now)
        if due and not later:
            last = self._check(camera_name, rgb, intrinsics, now)
        if isinstance(last[1], PoseError):
            raise last[1]
        return last[1]

    def _check(self, camera_name: str, rgb: np.ndarray, intrinsics: PinholeCamera, at: float) -> tuple:
        try:
            outcome = self._check_now(camera_name, rgb, intrinsics)
        except PoseError as e:
            outcome = e
        except Exception as e:  # a bug in a background check must not stop later ones: the camera is not trusted
            outcome = PoseError(f"rig check failed: {type(e).__name__}: {e}")
        with self._lock:
            self._checked[camera_name] = (at, outcome)
            self._due.discard(camera_name)
        return at, outcome

    def _check_now(self, camera_name: str, rgb: np.ndarray, intrinsics: PinholeCamera) -> dict:
        try:
            seen = self._board_pose(self.check_board, rgb, intrinsics).T_cw
        except PoseError:  # too few tags in view (or a poor fit): nothing to check against
            return {"rig_check": "no board in view"}
        rel = self.rig[camera_name] @ seen.inverse()  # the rig camera's frame from the seen one's
        off_m = float(np.linalg.norm(self.rig[camera_name].inverse().t - seen.inverse().t))
        off_deg = float(np.degrees(np.linalg.norm(rel.as_rotvec())))
        max_m, max_deg = self.tolerance
        if off_m > max_m or off_deg > max_deg:
            raise PoseError(f"its pose in the rig file is {off_m * 100:.1f} cm / {off_deg:.1f} deg from where the "
                            f"board's tags put it (rig_tolerance {max_m * 100:g} cm / {max_deg:g} deg): the camera "
                            "moved or its cable is on another camera's port; recalibrate (odd-one-out calibrate rig)")
        return {"rig_check_cm": round(off_m * 100, 2), "rig_check_deg": round(off_deg, 2)}

    def build_view(self, camera_name: str, image, info, pose=None) -> BuiltView:
        """sensor_msgs/Image + CameraInfo (+ the PoseStamped of pose source topic) -> the posed view, each message
        converted once. Raises PoseError (no usable pose) or ViewError (kind "image", "content", "camera_info" or
        "pose"); an image without a scene is told before its pose is looked for (a black image: "content", not "no
        tags")."""
        if self.source == "topic":  # the pose message first: a pose in another frame is named before all else
            T_cw, extra = self.resolve(camera_name, None, None, pose)
        try:
            rgb = image_to_rgb(image)
        except ValueError as e:
            raise ViewError("image", f"{camera_name}: {e}") from None
        why = content_problem(rgb)
        if why:
            raise ViewError("content", f"{camera_name}: {why}")
        try:
            calib = camera_info_to_calibration(info, source=f"{camera_name}/camera_info")
        except ValueError as e:
            raise ViewError("camera_info", str(e)) from None
        if self.source != "topic":
            needs = self.source == "apriltag" or self.check_board is not None
            T_cw, extra = self.resolve(camera_name, rgb, calib.to_camera() if needs else None)
        try:
            view = PosedView(rgb, calib.to_camera(T_cw), stamp_seconds(image), camera_name)
        except ValueError as e:  # a size that is not the image's
            raise ViewError("camera_info", str(e)) from None
        return BuiltView(view, extra, pose if self.source == "topic" else None)
