"""ROS camera_info YAML files (the format of camera_calibration_parsers), read and written.

A `CameraCalibration` holds exactly what a sensor_msgs/CameraInfo holds about the lens (no pose);
`to_camera(T_cw)` turns it into a posed `PinholeCamera`. Message conversion lives in
odd_one_out_ros.ros.conversions so that this module does not need ROS.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from ..fileio import read_yaml, write_text_atomic
from .camera import DISTORTION_MODELS, PinholeCamera, check_intrinsics
from .transforms import Rigid

__all__ = ["CameraCalibration", "CalibrationFileError", "read_camera_info_yaml", "write_camera_info_yaml"]


class CalibrationFileError(ValueError):
    """A camera_info file that cannot be read or is not a valid calibration; names the file."""


@dataclass
class CameraCalibration:
    """Intrinsic calibration of one camera, as in sensor_msgs/CameraInfo (docs/frames.md).

    K (3, 3); D distortion coefficients (n,); R (3, 3) rectification; P (3, 4) projection.
    """

    width: int
    height: int
    K: np.ndarray
    D: np.ndarray = field(default_factory=lambda: np.zeros(5))
    distortion_model: str = "plumb_bob"
    R: np.ndarray = field(default_factory=lambda: np.eye(3))
    P: np.ndarray | None = None
    camera_name: str = "camera"

    def __post_init__(self):
        self.K = check_intrinsics(self.K, self.width, self.height, what=f"camera {self.camera_name!r}")
        self.width, self.height = int(self.width), int(self.height)
        self.D = np.asarray(self.D, dtype=np.float64).reshape(-1)
        if self.distortion_model not in DISTORTION_MODELS:
            raise ValueError(f"camera {self.camera_name!r}: unsupported distortion model "
                             f"{self.distortion_model!r}; supported: {sorted(DISTORTION_MODELS)}")
        self.R = np.asarray(self.R, dtype=np.float64).reshape(3, 3)
        if self.P is None:
            self.P = np.concatenate([self.K, np.zeros((3, 1))], axis=1)
        self.P = np.asarray(self.P, dtype=np.float64).reshape(3, 4)
        self.to_camera()  # validates the distortion coefficients against the model

    def to_camera(self, T_cw: Rigid | np.ndarray | None = None) -> PinholeCamera:
        """A posed camera (identity pose if T_cw is None)."""
        T = Rigid.identity() if T_cw is None else T_cw if isinstance(T_cw, Rigid) else Rigid.from_matrix(T_cw)
        return PinholeCamera(K=self.K, width=self.width, height=self.height, T_cw=T,
                             dist=self.D, distortion_model=self.distortion_model)

    @staticmethod
    def from_camera(cam: PinholeCamera, camera_name: str = "camera") -> "CameraCalibration":
        n = {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}[cam.distortion_model]
        D = np.zeros(n)
        D[:cam.dist.size] = cam.dist
        return CameraCalibration(cam.width, cam.height, cam.K, D, cam.distortion_model, camera_name=camera_name)

    def to_yaml_dict(self) -> dict:
        def mat(a: np.ndarray) -> dict:
            a = np.atleast_2d(a)
            return {"rows": int(a.shape[0]), "cols": int(a.shape[1]), "data": [float(x) for x in a.ravel()]}

        return {
            "image_width": self.width,
            "image_height": self.height,
            "camera_name": self.camera_name,
            "camera_matrix": mat(self.K),
            "distortion_model": self.distortion_model,
            "distortion_coefficients": mat(self.D.reshape(1, -1)),
            "rectification_matrix": mat(self.R),
            "projection_matrix": mat(self.P),
        }

    @staticmethod
    def from_yaml_dict(d, source: str = "<dict>") -> "CameraCalibration":
        if not isinstance(d, dict):
            raise CalibrationFileError(f"{source}: expected a camera_info mapping, got {type(d).__name__}")

        def need(key):
            if key not in d:
                raise CalibrationFileError(f"{source}: missing key {key!r}")
            return d[key]

        def mat(key, shape=None, required=True):
            if key not in d and not required:
                return None
            m = need(key)
            try:
                rows, cols, data = int(m["rows"]), int(m["cols"]), [float(x) for x in m["data"]]
            except (TypeError, KeyError, ValueError) as e:
                raise CalibrationFileError(f"{source}: {key} must have rows, cols and numeric data ({e})") from None
            if rows * cols != len(data):
                raise CalibrationFileError(f"{source}: {key} is {rows}x{cols} but has {len(data)} values")
            if shape is not None and (rows, cols) != shape:
                raise CalibrationFileError(f"{source}: {key} must be {shape[0]}x{shape[1]}, got {rows}x{cols}")
            return np.array(data).reshape(rows, cols)

        try:
            width, height = int(need("image_width")), int(need("image_height"))
        except (TypeError, ValueError):
            raise CalibrationFileError(f"{source}: image_width and image_height must be integers") from None
        D = mat("distortion_coefficients", required=False)
        R = mat("rectification_matrix", (3, 3), required=False)
        try:
            return CameraCalibration(
                width=width, height=height, K=mat("camera_matrix", (3, 3)),
                D=np.zeros(0) if D is None else D.ravel(),
                distortion_model=str(d.get("distortion_model", "plumb_bob")),
                R=np.eye(3) if R is None else R,
                P=mat("projection_matrix", (3, 4), required=False),
                camera_name=str(d.get("camera_name", "camera")))
        except ValueError as e:
            raise CalibrationFileError(f"{source}: {e}") from None


def read_camera_info_yaml(path: str | os.PathLike) -> CameraCalibration:
    """Read a camera_calibration_parsers YAML; CalibrationFileError names the file on any problem."""
    d = read_yaml(path, CalibrationFileError, "camera_info file")
    return CameraCalibration.from_yaml_dict(d, source=str(path))


def write_camera_info_yaml(calib: CameraCalibration, path: str | os.PathLike, force: bool = False) -> Path:
    """Write a camera_info YAML; refuses to overwrite an existing file unless force=True."""
    path = Path(path)
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass force=True (--force) to overwrite")
    # atomic: a crash never leaves a half-written calibration
    return write_text_atomic(path, yaml.safe_dump(calib.to_yaml_dict(), sort_keys=False, default_flow_style=None))
