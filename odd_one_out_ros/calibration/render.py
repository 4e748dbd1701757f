"""Synthetic camera views of a planar texture (a tag board, a chessboard) with exact ground truth.

The plane is the board frame's z = 0 plane (docs/frames.md). The texture is warped into the image
through the exact homography K [r1 r2 t] of the plane, rendered `supersample` times larger and
area-averaged down (anti-aliasing), then optionally distorted (cv2.remap), blurred and noised.
For tests and for checking a setup; not needed at run time.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from ..geometry import PinholeCamera
from .board import TagBoard, board_image, texture_to_board

__all__ = ["render_plane", "render_board", "chessboard_texture", "random_view"]


def chessboard_texture(cols: int, rows: int, square: float, px_per_metre: float) -> tuple[np.ndarray, np.ndarray]:
    """A chessboard with cols x rows *inner* corners, a white border of one square; (H, W) uint8 and
    the inner corners (cols * rows, 3) in the board frame, row by row from the top left as printed."""
    n = int(round(square * px_per_metre))
    if abs(n - square * px_per_metre) > 1e-6:
        raise ValueError(f"square {square} m is not a whole number of pixels at {px_per_metre} px/m")
    sq = (np.indices((rows + 1, cols + 1)).sum(axis=0) % 2 * 255).astype(np.uint8)
    img = np.pad(np.kron(sq, np.ones((n, n), np.uint8)), n, constant_values=255)
    A = texture_to_board(img.shape, px_per_metre)
    j, i = np.meshgrid(np.arange(1, cols + 1), np.arange(1, rows + 1))
    uv = np.stack([(j.ravel() + 1) * n - 0.5, (i.ravel() + 1) * n - 0.5, np.ones(j.size)], axis=1)
    xy = uv @ A.T
    return img, np.concatenate([xy[:, :2], np.zeros((j.size, 1))], axis=1)


@lru_cache(maxsize=4)
def _distortion_map(K: tuple, dist: tuple, model: str, width: int, height: int, s: int):
    """For each pixel of the supersampled distorted image, its position in the supersampled ideal
    image (map_x, map_y float32 (H*s, W*s)) and the margin (px) the ideal image needs around it."""
    cam = PinholeCamera(np.array(K).reshape(3, 3), width, height, dist=np.array(dist), distortion_model=model)
    v, u = np.mgrid[0:height * s, 0:width * s].astype(np.float64)
    uv = (np.stack([u.ravel(), v.ravel()], axis=1) + 0.5) / s - 0.5  # supersampled -> image pixels
    xy = cam.undistort_pixels(uv)
    ideal = (cam.to_pixels(xy) + 0.5) * s - 0.5
    lo, hi = ideal.min(axis=0), ideal.max(axis=0) - [width * s - 1, height * s - 1]
    margin = int(np.ceil(max(0.0, -lo.min(), hi.max()))) + 2
    ideal += margin
    return (ideal[:, 0].reshape(u.shape).astype(np.float32), ideal[:, 1].reshape(u.shape).astype(np.float32), margin)


def render_plane(texture: np.ndarray, px_per_metre: float, camera: PinholeCamera, supersample: int = 4,
                 background: int = 110, blur_sigma: float = 0.5, noise_sigma: float = 1.0,
                 rng: np.random.Generator | None = None) -> np.ndarray:
    """Image (H, W) uint8 of a texture (h, w) lying on the board plane, centred on the origin.

    camera: intrinsics, distortion and world-to-camera pose T_cw (world = board frame). The whole
    texture must be in front of the camera. blur_sigma, noise_sigma in output pixels / grey levels.
    """
    s = int(supersample)
    A = texture_to_board(texture.shape, px_per_metre)
    h_t, w_t = texture.shape[:2]
    corners = np.array([[-0.5, -0.5, 1], [w_t - 0.5, -0.5, 1], [w_t - 0.5, h_t - 0.5, 1], [-0.5, h_t - 0.5, 1]]) @ A.T
    pts_c = camera.world_to_camera(np.concatenate([corners[:, :2], np.zeros((4, 1))], axis=1))
    if np.any(pts_c[:, 2] <= 1e-6):
        raise ValueError("render_plane: part of the texture is behind the camera")
    big = camera.resized(camera.width * s, camera.height * s)
    margin, maps = 0, None
    if camera.has_distortion:
        *maps, margin = _distortion_map(tuple(camera.K.ravel()), tuple(camera.dist), camera.distortion_model,
                                        camera.width, camera.height, s)
    K = big.K.copy()
    K[:2, 2] += margin
    Rt = np.column_stack([camera.T_cw.R[:, 0], camera.T_cw.R[:, 1], camera.T_cw.t])
    H = K @ Rt @ A  # texture pixel -> (supersampled, margined) image pixel
    size = (big.width + 2 * margin, big.height + 2 * margin)
    img = cv2.warpPerspective(texture, H, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=int(background)).astype(np.float32)
    if maps is not None:
        img = cv2.remap(img, maps[0], maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    img = cv2.resize(img, (camera.width, camera.height), interpolation=cv2.INTER_AREA)
    if blur_sigma > 0:
        img = cv2.GaussianBlur(img, (0, 0), blur_sigma)
    if noise_sigma > 0:
        rng = rng if rng is not None else np.random.default_rng(0)
        img = img + rng.normal(0.0, noise_sigma, img.shape).astype(np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def render_board(board: TagBoard, camera: PinholeCamera, px_per_metre: float = 4000.0, **kwargs) -> np.ndarray:
    """render_plane of the board's printed sheet (board_image at px_per_metre)."""
    return render_plane(_board_texture(board, px_per_metre), px_per_metre, camera, **kwargs)


@lru_cache(maxsize=4)
def _board_texture(board: TagBoard, px_per_metre: float) -> np.ndarray:
    return board_image(board, px_per_metre)


def random_view(rng: np.random.Generator, distance=(0.35, 0.7), max_tilt_deg: float = 40.0,
                target_radius: float = 0.03):
    """A random world-to-camera pose looking down at the board: camera at `distance` (metres) from a
    point within `target_radius` of the origin, tilted up to `max_tilt_deg` from the board normal, with
    a random roll. Returns a geometry.Rigid."""
    from ..geometry import look_at

    tilt = np.radians(rng.uniform(0, max_tilt_deg))
    az = rng.uniform(0, 2 * np.pi)
    d = rng.uniform(*distance)
    target = np.append(rng.uniform(-target_radius, target_radius, 2), 0.0)
    eye = target + d * np.array([np.sin(tilt) * np.cos(az), np.sin(tilt) * np.sin(az), np.cos(tilt)])
    roll = rng.uniform(0, 2 * np.pi)
    up = np.array([np.cos(roll), np.sin(roll), 0.0])
    return look_at(eye, target, up=up)
