"""A posed view: one image with the calibrated camera that took it; and reading one from the fields of ROS
messages (sensor_msgs/Image, CameraInfo, geometry_msgs/PoseStamped), which needs no message classes. Pure: no
ROS imports (the messages are read by their fields; ros/conversions.py makes messages). Frames: docs/frames.md.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .geometry import CameraCalibration, PinholeCamera, Rigid


@dataclass(frozen=True)
class PosedView:
    """image: (H, W, 3) uint8 RGB; camera: intrinsics + world-to-camera pose (docs/frames.md);
    stamp: seconds; source: camera name or file it came from."""

    image: np.ndarray
    camera: PinholeCamera
    stamp: float = 0.0
    source: str = ""

    def __post_init__(self):
        img = self.image
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"{self.source}: image must be (H, W, 3) uint8 RGB, got {img.shape} {img.dtype}")
        if img.shape[:2] != (self.camera.height, self.camera.width):
            raise ValueError(f"{self.source}: image is {img.shape[1]}x{img.shape[0]} but its camera_info says "
                             f"{self.camera.width}x{self.camera.height}")


class ViewError(ValueError):
    """An image, CameraInfo or pose that cannot make a view; `kind` is "image", "content" (an image without a scene:
    content_problem), "camera_info" or "pose"."""

    WHAT = {"content": "image content"}
    """how a message names what was unusable, where not the kind's own name (underscores as spaces)"""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind

    @property
    def what(self) -> str:
        return self.WHAT.get(self.kind, self.kind.replace("_", " "))


def camera_info_to_calibration(msg, source: str = "camera_info") -> CameraCalibration:
    """CameraInfo -> calibration of the *published image* (binning and ROI applied, as image_geometry).

    Raises ValueError naming `source` for an uncalibrated (all-zero K) or malformed message, or a distortion no lens
    can have (PinholeCamera.distortion_problem).
    """
    K = np.array(msg.k, dtype=np.float64).reshape(3, 3)
    if not np.any(K):
        raise ValueError(f"{source}: K is all zeros (camera not calibrated)")
    P = np.array(msg.p, dtype=np.float64).reshape(3, 4)
    bx, by = max(int(msg.binning_x), 1), max(int(msg.binning_y), 1)
    width, height = int(msg.width), int(msg.height)
    roi = msg.roi
    if roi.width or roi.height or roi.x_offset or roi.y_offset:
        K[0, 2] -= roi.x_offset
        K[1, 2] -= roi.y_offset
        P[0, 2] -= roi.x_offset
        P[1, 2] -= roi.y_offset
        width, height = int(roi.width) or width, int(roi.height) or height
    if bx > 1 or by > 1:
        S = np.diag([1.0 / bx, 1.0 / by, 1.0])
        K, P = S @ K, S @ P
        width, height = width // bx, height // by
    try:
        calib = CameraCalibration(width=width, height=height, K=K, D=np.array(msg.d, dtype=np.float64),
                                  distortion_model=msg.distortion_model or "plumb_bob",
                                  R=np.array(msg.r, dtype=np.float64).reshape(3, 3) if any(msg.r) else np.eye(3),
                                  P=P if np.any(P) else None, camera_name=msg.header.frame_id or "camera")
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from None
    problem = _distortion_problem(calib.K.tobytes(), calib.D.tobytes(), calib.distortion_model, width, height)
    if problem:  # e.g. D = [1e6, -1e6, 1e3, -1e3, 1e9]: no lens does that
        raise ValueError(f"{source}: not a lens calibration: {problem} (D = {calib.D.tolist()})")
    return calib


@functools.lru_cache(maxsize=64)  # a camera sends the same CameraInfo with every image: checked once
def _distortion_problem(K: bytes, D: bytes, model: str, width: int, height: int) -> str | None:
    cam = PinholeCamera(K=np.frombuffer(K).reshape(3, 3), width=width, height=height, T_cw=Rigid.identity(),
                        dist=np.frombuffer(D), distortion_model=model)
    return cam.distortion_problem()


def camera_info_to_camera(msg, T_cw: Rigid | None = None, source: str = "camera_info") -> PinholeCamera:
    """CameraInfo (+ world-to-camera pose) -> PinholeCamera for the published image."""
    return camera_info_to_calibration(msg, source).to_camera(T_cw)


def pose_to_rigid(pose) -> Rigid:
    """geometry_msgs/Pose (pose of frame B in frame A) -> Rigid mapping B coordinates into A.

    Raises ValueError for a non-finite pose or a quaternion that is not of unit length (|q|^2 off 1 by more than
    0.01, tf2's limit): a pose that was never normalised is a producer's bug, not something to guess at."""
    q, p = pose.orientation, pose.position
    xyzw = np.array([q.x, q.y, q.z, q.w], dtype=np.float64)
    xyz = np.array([p.x, p.y, p.z], dtype=np.float64)
    if not (np.isfinite(xyzw).all() and np.isfinite(xyz).all()):
        raise ValueError(f"pose is not finite: position {xyz.tolist()}, orientation {xyzw.tolist()}")
    n2 = float(xyzw @ xyzw)
    if abs(n2 - 1.0) > 0.01:
        raise ValueError(f"pose orientation {xyzw.tolist()} is not a unit quaternion (norm {np.sqrt(n2):.4g})")
    return Rigid.from_quat(xyzw / np.sqrt(n2), xyz)


# --- sensor_msgs/Image <-> numpy (cv_bridge is not obtainable from PyPI; this is the small part we need)
IMAGE_ENCODINGS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}


def image_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8) -> (H, W, 3) uint8 RGB copy.

    Raises ValueError with the reason for any other encoding or an inconsistent message.
    """
    enc = msg.encoding.lower()
    if enc not in IMAGE_ENCODINGS:
        raise ValueError(f"unsupported image encoding {msg.encoding!r}; supported: {sorted(IMAGE_ENCODINGS)}")
    ch = IMAGE_ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0 or step < w * ch:
        raise ValueError(f"bad image geometry: {w}x{h}, step {step} for {enc}")
    if len(msg.data) != step * h:
        raise ValueError(f"image data has {len(msg.data)} bytes, expected {step * h} ({w}x{h}, step {step})")
    data = msg.data  # array.array('B') when received; bytes or a list when built by hand
    buf = np.array(data, dtype=np.uint8) if isinstance(data, list) else np.frombuffer(data, dtype=np.uint8)
    img = buf.reshape(h, step)[:, :w * ch].reshape(h, w, ch)
    if enc == "mono8":
        return np.repeat(img, 3, axis=2)
    if enc in ("bgr8", "bgra8"):
        img = img[..., 2::-1]
    return np.ascontiguousarray(img[..., :3])


CONTENT_LIMITS = {"dark": 20, "bright": 235, "flat_spread": 4}
"""content_problem: 8-bit levels of a black image (99 % of pixels darker), a saturated one (99 % brighter) and the
least spread of levels (1st to 99th percentile) of an image that shows something, not a flat one (a cap, a dead
sensor); a plain belt with a few small parts on it is not flat"""


def content_problem(rgb: np.ndarray) -> str:
    """Why an (H, W, 3) uint8 image shows no scene (black, saturated or flat), or '' when it may. Read on about 400
    values spread over the image in plain Python (about 0.05 ms): numpy calls on it would each give up the GIL and
    wait up to the interpreter's switch interval to get it back while the model runs in another thread."""
    flat = rgb.reshape(-1)
    sample = sorted(flat[:: max(1, len(flat) // 400) | 1].tolist())  # (an odd step: every channel is read)
    k = len(sample) // 100  # the 1st and 99th percentiles
    lo, hi = sample[k], sample[-1 - k]
    if hi < CONTENT_LIMITS["dark"]:
        return f"black (99 % of pixels below level {CONTENT_LIMITS['dark']} of 255)"
    if lo > CONTENT_LIMITS["bright"]:
        return f"saturated (99 % of pixels above level {CONTENT_LIMITS['bright']} of 255)"
    if hi - lo < CONTENT_LIMITS["flat_spread"]:
        return f"flat (levels {lo}-{hi} over 98 % of pixels: nothing in view)"
    return ""


def stamp_seconds(msg) -> float:
    """header.stamp of a message in seconds."""
    return msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec


def posed_view(image, info, pose, source: str = "", rgb: np.ndarray | None = None) -> PosedView:
    """Image + CameraInfo + geometry_msgs/PoseStamped (the camera optical frame's pose in the world,
    i.e. camera-to-world) -> PosedView. The one conversion the detector and `odd-one-out replay` share,
    so a replayed inspection sees bit-identical inputs. Raises ViewError (a ValueError) naming `source`
    and saying which of the three messages is unusable. rgb: image_to_rgb(image) when the caller has it already."""
    try:
        rgb = image_to_rgb(image) if rgb is None else rgb
    except ValueError as e:
        raise ViewError("image", f"{source}: {e}") from None
    try:
        T_cw = pose_to_rigid(pose.pose).inverse()
    except ValueError as e:
        raise ViewError("pose", f"{source}: {e}") from None
    try:
        return PosedView(rgb, camera_info_to_camera(info, T_cw, source=f"{source}/camera_info"),
                         stamp_seconds(image), source)
    except ValueError as e:  # K all zeros, or a size that is not the image's
        raise ViewError("camera_info", str(e)) from None
