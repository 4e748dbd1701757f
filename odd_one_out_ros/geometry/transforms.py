"""Rigid transforms: 4x4 matrices, quaternions (x, y, z, w), rotation vectors.

Frames and conventions: docs/frames.md. Rotation maths is delegated to
scipy.spatial.transform.Rotation; this module only fixes conventions and validates input.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

__all__ = [
    "Rigid",
    "check_rotation",
    "look_at",
    "quat_to_matrix",
    "matrix_to_quat",
    "rotvec_to_matrix",
    "matrix_to_rotvec",
    "yaw_to_matrix",
    "pose_to_dict",
]


def check_rotation(R: np.ndarray, atol: float = 1e-4, name: str = "rotation") -> np.ndarray:
    """Validate a 3x3 rotation matrix (orthonormal, det +1) and return it as float64."""
    R = np.asarray(R, dtype=np.float64)
    if R.shape != (3, 3):
        raise ValueError(f"{name} must be 3x3, got shape {R.shape}")
    if not np.all(np.isfinite(R)):
        raise ValueError(f"{name} has non-finite entries")
    if not np.allclose(R @ R.T, np.eye(3), atol=atol) or np.linalg.det(R) < 0:
        raise ValueError(f"{name} is not a proper rotation (R R^T != I or det < 0): {R.tolist()}")
    return R


def quat_to_matrix(q_xyzw) -> np.ndarray:
    """Quaternion (x, y, z, w), any norm > 0, -> 3x3 rotation matrix."""
    q = np.asarray(q_xyzw, dtype=np.float64)
    if q.shape != (4,) or not np.all(np.isfinite(q)) or np.linalg.norm(q) < 1e-12:
        raise ValueError(f"quaternion must be 4 finite numbers (x, y, z, w), not all zero: {q}")
    return Rotation.from_quat(q).as_matrix()


def matrix_to_quat(R) -> np.ndarray:
    """3x3 rotation -> unit quaternion (x, y, z, w) with w >= 0."""
    q = Rotation.from_matrix(check_rotation(R)).as_quat()
    return q if q[3] >= 0 else -q


def rotvec_to_matrix(rvec) -> np.ndarray:
    """Rotation vector (axis * angle, as cv2.Rodrigues) -> 3x3 rotation."""
    return Rotation.from_rotvec(np.asarray(rvec, dtype=np.float64).reshape(3)).as_matrix()


def matrix_to_rotvec(R) -> np.ndarray:
    """3x3 rotation -> rotation vector (3,)."""
    return Rotation.from_matrix(check_rotation(R)).as_rotvec()


def yaw_to_matrix(yaw: float) -> np.ndarray:
    """Rotation about world +z by `yaw` radians (counter-clockwise seen from above)."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class Rigid:
    """A rigid transform x_dst = R @ x_src + t, named by the frames it maps between.

    Example: `T_cw = Rigid(R, t)` maps world points into the camera frame (docs/frames.md).
    """

    R: np.ndarray  # (3, 3)
    t: np.ndarray  # (3,)

    def __post_init__(self):
        object.__setattr__(self, "R", check_rotation(self.R))
        t = np.asarray(self.t, dtype=np.float64).reshape(-1)
        if t.shape != (3,) or not np.all(np.isfinite(t)):
            raise ValueError(f"translation must be 3 finite numbers, got {t}")
        object.__setattr__(self, "t", t)

    @staticmethod
    def identity() -> "Rigid":
        return Rigid(np.eye(3), np.zeros(3))

    @staticmethod
    def from_matrix(T) -> "Rigid":
        """From a 4x4 (or 3x4) homogeneous matrix."""
        T = np.asarray(T, dtype=np.float64)
        if T.shape not in ((4, 4), (3, 4)):
            raise ValueError(f"transform matrix must be 4x4 or 3x4, got shape {T.shape}")
        if T.shape == (4, 4) and not np.allclose(T[3], [0, 0, 0, 1], atol=1e-6):
            raise ValueError(f"last row of a 4x4 transform must be [0, 0, 0, 1], got {T[3]}")
        return Rigid(T[:3, :3], T[:3, 3])

    @staticmethod
    def from_quat(q_xyzw, t) -> "Rigid":
        return Rigid(quat_to_matrix(q_xyzw), t)

    @staticmethod
    def from_rotvec(rvec, t) -> "Rigid":
        return Rigid(rotvec_to_matrix(rvec), t)

    def as_matrix(self) -> np.ndarray:
        """(4, 4) homogeneous matrix."""
        T = np.eye(4)
        T[:3, :3] = self.R
        T[:3, 3] = self.t
        return T

    def as_quat(self) -> np.ndarray:
        """(x, y, z, w)."""
        return matrix_to_quat(self.R)

    def as_rotvec(self) -> np.ndarray:
        return matrix_to_rotvec(self.R)

    def inverse(self) -> "Rigid":
        return Rigid(self.R.T, -self.R.T @ self.t)

    def __matmul__(self, other: "Rigid") -> "Rigid":
        """Composition: (A @ B)(x) = A(B(x))."""
        return Rigid(self.R @ other.R, self.R @ other.t + self.t)

    def apply(self, points) -> np.ndarray:
        """Transform points (..., 3) -> (..., 3)."""
        p = np.asarray(points, dtype=np.float64)
        return p @ self.R.T + self.t


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> Rigid:
    """World-to-camera transform of a camera at `eye` looking at `target` (OpenCV optical frame).

    The image's "up" (-y of the camera) is as close to `up` as possible.
    """
    eye = np.asarray(eye, dtype=np.float64)
    z = np.asarray(target, dtype=np.float64) - eye
    if np.linalg.norm(z) < 1e-12:
        raise ValueError("look_at: eye and target coincide")
    z /= np.linalg.norm(z)
    x = np.cross(z, np.asarray(up, dtype=np.float64))
    if np.linalg.norm(x) < 1e-9:
        raise ValueError("look_at: viewing direction is parallel to `up`")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R_cw = np.stack([x, y, z])  # rows are the camera axes in world coordinates
    return Rigid(R_cw, -R_cw @ eye)


def pose_to_dict(T_cw: Rigid, matrix_key: str = "matrix") -> dict:
    """A world-to-camera transform as plain floats for a YAML or JSON file: the 4x4 matrix (under `matrix_key`),
    the translation, the quaternion (x, y, z, w) and the camera's position in the world."""
    return {matrix_key: T_cw.as_matrix().tolist(), "translation": T_cw.t.tolist(),
            "quaternion_xyzw": T_cw.as_quat().tolist(), "camera_position": T_cw.inverse().t.tolist()}
