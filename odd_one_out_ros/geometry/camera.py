"""Pinhole camera with optional lens distortion, world-to-camera extrinsics (OpenCV frame).

Frames, pixel-centre convention and units: docs/frames.md.
Distortion models are those of sensor_msgs/CameraInfo: "plumb_bob" (k1 k2 p1 p2 k3),
"rational_polynomial" (k1 k2 p1 p2 k3 k4 k5 k6) and "equidistant" (fisheye, k1 k2 k3 k4).
Forward projection is written out (it is also needed in torch by the model); the inverse of the
distortion uses OpenCV's iterative undistortion.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from .transforms import Rigid

__all__ = ["PinholeCamera", "DISTORTION_MODELS", "check_intrinsics", "scale_intrinsics"]

# model name -> allowed numbers of coefficients
DISTORTION_MODELS = {"plumb_bob": (0, 4, 5), "rational_polynomial": (0, 4, 5, 8), "equidistant": (0, 4)}


def check_intrinsics(K, width: int, height: int, what: str = "camera") -> np.ndarray:
    """Validate K (3x3, fx, fy > 0, finite, last row 0 0 1) and the image size; return K float64."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"{what}: K must be 3x3, got shape {K.shape}")
    if not np.all(np.isfinite(K)):
        raise ValueError(f"{what}: K has non-finite entries: {K.tolist()}")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"{what}: K has fx={K[0, 0]}, fy={K[1, 1]}; both must be > 0 "
                         "(an all-zero K means the camera is not calibrated)")
    if not np.allclose(K[2], [0.0, 0.0, 1.0]) or K[1, 0] != 0:
        raise ValueError(f"{what}: K must look like [[fx, s, cx], [0, fy, cy], [0, 0, 1]], got {K.tolist()}")
    if int(width) <= 0 or int(height) <= 0:
        raise ValueError(f"{what}: image size must be positive, got {width}x{height}")
    return K


def scale_intrinsics(K, sx: float, sy: float):
    """K (..., 3, 3) for an image resized by (sx, sy), pixel centres kept consistent (docs/frames.md): a new
    numpy float64 array, or for a torch tensor a tensor of its dtype and device (the model's batched K)."""
    K = K.clone() if hasattr(K, "clone") else np.array(K, dtype=np.float64)
    K[..., 0, 0] *= sx
    K[..., 0, 1] *= sx
    K[..., 1, 1] *= sy
    K[..., 0, 2] = (K[..., 0, 2] + 0.5) * sx - 0.5
    K[..., 1, 2] = (K[..., 1, 2] + 0.5) * sy - 0.5
    return K


@dataclass(frozen=True)
class PinholeCamera:
    """A calibrated, posed camera.

    K: (3, 3) intrinsics; width, height: image size in pixels;
    T_cw: world-to-camera transform; dist: distortion coefficients (OpenCV order, may be empty);
    distortion_model: one of DISTORTION_MODELS.
    """

    K: np.ndarray
    width: int
    height: int
    T_cw: Rigid = field(default_factory=Rigid.identity)
    dist: np.ndarray = field(default_factory=lambda: np.zeros(0))
    distortion_model: str = "plumb_bob"

    def __post_init__(self):
        object.__setattr__(self, "K", check_intrinsics(self.K, self.width, self.height))
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        if not isinstance(self.T_cw, Rigid):
            object.__setattr__(self, "T_cw", Rigid.from_matrix(self.T_cw))
        if self.distortion_model not in DISTORTION_MODELS:
            raise ValueError(f"unsupported distortion model {self.distortion_model!r}; "
                             f"supported: {sorted(DISTORTION_MODELS)}")
        d = np.asarray(self.dist, dtype=np.float64).reshape(-1)
        if np.all(d == 0):
            d = np.zeros(0)
        if d.size not in DISTORTION_MODELS[self.distortion_model] and d.size:
            raise ValueError(f"{self.distortion_model} takes {DISTORTION_MODELS[self.distortion_model]} "
                             f"coefficients, got {d.size}")
        if not np.all(np.isfinite(d)):
            raise ValueError(f"distortion coefficients must be finite, got {d}")
        object.__setattr__(self, "dist", d)

    # ----------------------------------------------------------------- properties
    @property
    def fx(self) -> float:
        return float(self.K[0, 0])

    @property
    def fy(self) -> float:
        return float(self.K[1, 1])

    @property
    def cx(self) -> float:
        return float(self.K[0, 2])

    @property
    def cy(self) -> float:
        return float(self.K[1, 2])

    @property
    def has_distortion(self) -> bool:
        return self.dist.size > 0

    @property
    def center(self) -> np.ndarray:
        """Camera centre in the world frame, (3,)."""
        return -self.T_cw.R.T @ self.T_cw.t

    @property
    def T_wc(self) -> Rigid:
        """Camera-to-world transform."""
        return self.T_cw.inverse()

    def with_pose(self, T_cw) -> "PinholeCamera":
        return replace(self, T_cw=T_cw if isinstance(T_cw, Rigid) else Rigid.from_matrix(T_cw))

    def resized(self, width: int, height: int) -> "PinholeCamera":
        """Same camera for an image resized to width x height (pixel centres kept consistent)."""
        K = scale_intrinsics(self.K, width / self.width, height / self.height)
        return replace(self, K=K, width=width, height=height)

    # ----------------------------------------------------------------- distortion
    def distort(self, xy: np.ndarray) -> np.ndarray:
        """Normalised undistorted image coordinates (N, 2) -> distorted (N, 2)."""
        xy = np.asarray(xy, dtype=np.float64)
        if not self.has_distortion:
            return xy
        d = self.dist
        x, y = xy[:, 0], xy[:, 1]
        r2 = x * x + y * y
        if self.distortion_model == "equidistant":
            k1, k2, k3, k4 = d
            r = np.sqrt(r2)
            theta = np.arctan(r)
            t2 = theta * theta
            theta_d = theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))
            scale = np.where(r > 1e-12, theta_d / np.maximum(r, 1e-12), 1.0)
            return xy * scale[:, None]
        d = np.concatenate([d, np.zeros(8 - d.size)])
        k1, k2, p1, p2, k3, k4, k5, k6 = d
        radial = (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
        xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        return np.stack([xd, yd], axis=1)

    def undistort_pixels(self, uv: np.ndarray) -> np.ndarray:
        """Pixels (N, 2) -> normalised undistorted image coordinates (N, 2) (z = 1 plane)."""
        uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
        if not self.has_distortion:
            x = (uv[:, 0] - self.cx - self.K[0, 1] * (uv[:, 1] - self.cy) / self.fy) / self.fx
            y = (uv[:, 1] - self.cy) / self.fy
            return np.stack([x, y], axis=1)
        pts = uv.reshape(-1, 1, 2)
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)
        if self.distortion_model == "equidistant":
            out = cv2.fisheye.undistortPoints(pts, self.K, self.dist, None, None, None, criteria)
        else:
            out = cv2.undistortPoints(pts, self.K, self.dist, None, None, None, criteria)
        return out.reshape(-1, 2)

    def distortion_problem(self, samples: int = 9) -> str | None:
        """Why this camera's distortion cannot be a real lens's over its image, or None when it can. Checked on a
        samples x samples grid of the image: undistorting then distorting gives back the pixel (within 1 px), the
        image's pinhole extent is not sent more than 3x further out or in by the distortion, and the radial
        distortion grows monotonically up to the image's largest radius (a lens does not fold the image)."""
        if not self.has_distortion or not np.any(self.dist):
            return None
        u, v = np.linspace(-0.5, self.width - 0.5, samples), np.linspace(-0.5, self.height - 0.5, samples)
        uv = np.stack(np.meshgrid(u, v), -1).reshape(-1, 2)
        with np.errstate(all="ignore"):
            xy = self.undistort_pixels(uv)
            back = self.distort(xy) @ self.K[:2, :2].T + self.K[:2, 2]
            err = float(np.abs(back - uv).max()) if np.isfinite(back).all() else np.inf
            if not err <= 1.0:
                return f"its distortion cannot be undone over the image (pixels come back up to {err:.3g} px off)"
            ideal = np.linalg.solve(self.K, np.c_[uv, np.ones(len(uv))].T).T[:, :2]  # the pinhole rays of the image
            r_ideal = np.hypot(ideal[:, 0], ideal[:, 1])
            ratio = np.hypot(*self.distort(ideal).T)[r_ideal > 1e-9] / r_ideal[r_ideal > 1e-9]
            if not (np.isfinite(ratio).all() and 1 / 3 <= ratio.min() and ratio.max() <= 3):
                return (f"its distortion moves the image's edge {np.nanmax(ratio):.3g}x outward / "
                        f"{np.nanmin(ratio):.3g}x inward (a lens: within 3x)")
            r = np.linspace(0.0, max(r_ideal.max(), np.hypot(xy[:, 0], xy[:, 1]).max()), 512)
            r_d = np.hypot(*self.distort(np.c_[r, np.zeros_like(r)]).T)
            folds = np.nonzero(np.diff(r_d) <= 0)[0]
        if folds.size:
            return f"its radial distortion folds the image over (it stops growing at radius {r[folds[0]]:.3g})"
        return None

    # ----------------------------------------------------------------- projection
    def world_to_camera(self, points_w) -> np.ndarray:
        """World points (N, 3) -> camera optical frame (N, 3)."""
        return self.T_cw.apply(np.asarray(points_w, dtype=np.float64).reshape(-1, 3))

    def project(self, points_w) -> tuple[np.ndarray, np.ndarray]:
        """World points (N, 3) -> pixels uv (N, 2) and depth z (N,).

        Points with z <= 0 (behind the camera) get uv = NaN; check `depth > 0` or `visible()`.
        """
        pc = self.world_to_camera(points_w)
        z = pc[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            xy = pc[:, :2] / z[:, None]
        xy[z <= 0] = np.nan
        return self.to_pixels(self.distort(xy)), z

    def to_pixels(self, xy) -> np.ndarray:
        """Normalised image coordinates (N, 2), already distorted (or of an ideal lens) -> pixels (N, 2): K only."""
        return np.asarray(xy, dtype=np.float64) @ self.K[:2, :2].T + self.K[:2, 2]

    def visible(self, points_w, margin: float = 0.0) -> np.ndarray:
        """(N,) bool: in front of the camera and inside the image (pixel-centre convention)."""
        uv, z = self.project(points_w)
        with np.errstate(invalid="ignore"):
            return ((z > 0) & (uv[:, 0] >= -0.5 + margin) & (uv[:, 0] <= self.width - 0.5 - margin)
                    & (uv[:, 1] >= -0.5 + margin) & (uv[:, 1] <= self.height - 0.5 - margin))

    def unproject(self, uv, depth) -> np.ndarray:
        """Pixels (N, 2) with depths z (N,) (camera z, not ray length) -> world points (N, 3)."""
        xy = self.undistort_pixels(uv)
        depth = np.asarray(depth, dtype=np.float64).reshape(-1)
        pc = np.concatenate([xy, np.ones((len(xy), 1))], axis=1) * depth[:, None]
        return self.T_wc.apply(pc)

    def pixel_rays(self, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Rays through pixel centres: origin (3,) and unit world directions (H', W', 3).

        With stride s, rays go through pixels (i*s, j*s) for i < ceil(H/s), j < ceil(W/s).
        """
        us = np.arange(0, self.width, stride, dtype=np.float64)
        vs = np.arange(0, self.height, stride, dtype=np.float64)
        if self.has_distortion:
            v, u = np.meshgrid(vs, us, indexing="ij")
            xy = self.undistort_pixels(np.stack([u.ravel(), v.ravel()], axis=1)).reshape(len(vs), len(us), 2)
        else:  # separable: no per-pixel undistortion needed
            y = (vs - self.cy) / self.fy
            x = (us[None, :] - self.cx - self.K[0, 1] * y[:, None]) / self.fx
            xy = np.stack(np.broadcast_arrays(x, np.broadcast_to(y[:, None], x.shape)), axis=-1)
        d_c = np.concatenate([xy, np.ones((*xy.shape[:2], 1))], axis=-1)
        d_w = d_c @ self.T_cw.R  # R_wc @ d_c for each pixel
        d_w /= np.linalg.norm(d_w, axis=-1, keepdims=True)
        return self.center, d_w
