"""Torch dataset over scenes in the official ToysAD-8K layout (ours and the authors').

Each item: `n_input` input views and `n_target` disjoint render-target views of one scene, their
cameras, object masks, the objects' boxes and labels; with augmentation (the paper's): a random
rotation about the world z axis, an xy shift and a mirror flip, applied consistently to cameras,
images and boxes (docs/frames.md). A flip mirrors the world in y and every image left-right, so
world-to-camera rotations stay proper rotations: R' = F R M, t' = F t, with M = diag(1, -1, 1)
and F = diag(-1, 1, 1), and cx' = W - 1 - cx.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ..fileio import read_mask, read_rgb
from ..geometry import Box3D, PinholeCamera, Rigid, boxes_to_tensor, yaw_to_matrix
from .hull import voxel_hull
from .scene_meta import SceneFormatError, SceneMeta, read_scene_meta


@dataclass
class DatasetConfig:
    n_input: int = 5
    n_target: int = 5
    image_size: int = 256
    augment: bool = True
    rotation_deg: float = 150.0
    """z rotation drawn from +- this"""
    shift: float = 0.05
    """xy shift drawn from +- this (m); the reference code uses 0.2 m on its 3.84 m grid"""
    flip: bool = True
    occupancy_grid: tuple | None = None
    """(shape (X, Y, Z), voxel_size, origin (x, y, z)) of a voxel grid: items then carry "occupancy" (Z, Y, X),
    the fraction of each voxel inside the objects' visual hull from all views of the scene (data/hull.py)"""
    hull_mask_size: int = 256
    """the hull is carved from the object masks reduced so their longer side has at most this many pixels (a
    reduced pixel is object when any of its pixels is: the hull stays a superset)"""
    hull_dilate_px: int = 1
    """object masks grow by this many pixels first (anti-aliased silhouettes, rounding)"""


def scene_dirs(root: str | Path, split: str | None = None) -> list[Path]:
    """Scene folders of a dataset root (with splits.json), a folder of scenes, or one scene folder."""
    root = Path(root)
    if (root / "scene3d.metadata.json").is_file():
        return [root]
    splits = root / "splits.json"
    if splits.is_file():
        table = json.loads(splits.read_text())
        names = table.get(split, []) if split else sorted(n for v in table.values() for n in v)
        if split and split not in table:
            raise ValueError(f"{splits}: no split {split!r} (has {sorted(table)})")
        base = root / "scenes" if (root / "scenes").is_dir() else root
        return [base / n for n in names]
    dirs = sorted(p.parent for p in root.glob("*/scene3d.metadata.json")) or \
        sorted(p.parent for p in root.glob("scenes/*/scene3d.metadata.json"))
    if not dirs:
        raise ValueError(f"{root}: no scenes (no scene3d.metadata.json below it)")
    if split:  # no split file (e.g. a generation still running): our scenes record their split
        dirs = [d for d in dirs
                if json.loads((d / "scene3d.metadata.json").read_text()).get("generator", {}).get("split") == split]
    return dirs


def augment_world(cameras: list[PinholeCamera], boxes: list[Box3D], theta: float, shift: np.ndarray, flip: bool
                  ) -> tuple[list[PinholeCamera], list[Box3D]]:
    """Apply (optional flip, then rotation theta about z and an xy shift) to cameras and boxes.

    With flip, the images must be mirrored left-right (np.flip(image, axis=1)).
    """
    A = Rigid(yaw_to_matrix(theta), np.array([shift[0], shift[1], 0.0]))
    out_cams, out_boxes = [], []
    for cam in cameras:
        R, t, K = cam.T_cw.R, cam.T_cw.t, cam.K.copy()
        if flip:
            F, M = np.diag([-1.0, 1, 1]), np.diag([1.0, -1, 1])
            R, t = F @ R @ M, F @ t
            K[0, 2] = cam.width - 1 - K[0, 2]
        out_cams.append(PinholeCamera(K, cam.width, cam.height, Rigid(R, t) @ A.inverse()))
    for b in boxes:
        center, yaw = b.center.copy(), b.yaw
        if flip:
            center[1], yaw = -center[1], -yaw
        out_boxes.append(Box3D(A.apply(center), b.size, yaw + theta))
    return out_cams, out_boxes


class SceneDataset(torch.utils.data.Dataset):
    """Items are dicts of tensors:
    images (V, 3, S, S) in [0, 1], K (V, 3, 3) for S x S, T_cw (V, 4, 4), masks (V, 1, S, S) (union of the
    objects), with V = n_input + n_target (inputs first); boxes (N, 7) [cx, cy, cz, sx, sy, sz, yaw];
    labels (N,) 1 = anomalous; plus "scene" (folder) and "anomaly_types" (list of str); with
    cfg.occupancy_grid also "occupancy" (Z, Y, X) in [0, 1].
    """

    def __init__(self, dirs: list[Path], cfg: DatasetConfig | None = None, seed: int = 0):
        self.dirs, self.cfg, self.seed = [Path(d) for d in dirs], cfg or DatasetConfig(), seed
        self.epoch = 0
        self._meta: dict[int, SceneMeta] = {}
        self._hull_masks: dict[int, list[tuple[np.ndarray, tuple[int, int]]]] = {}  # bit-packed, with shapes

    def __len__(self) -> int:
        return len(self.dirs)

    def set_epoch(self, epoch: int) -> None:
        """Different views and augmentations each epoch, reproducibly."""
        self.epoch = epoch

    def meta(self, i: int) -> SceneMeta:
        if i not in self._meta:
            self._meta[i] = read_scene_meta(self.dirs[i])
        return self._meta[i]

    def hull_masks(self, i: int) -> list[np.ndarray]:
        """Union object masks of every view of scene i, at most hull_mask_size (cached bit-packed: 8 KB per
        256 x 256 view)."""
        if i not in self._hull_masks:
            meta, n = self.meta(i), self.cfg.hull_mask_size
            out = []
            for v, cam in enumerate(meta.cameras):
                mask = np.zeros((cam.height, cam.width), bool)
                for o in meta.objects:
                    mask |= read_mask(meta.mask_path(o, v), mask.shape)
                if self.cfg.hull_dilate_px > 0:
                    k = 2 * self.cfg.hull_dilate_px + 1
                    mask = cv2.dilate(mask.astype(np.uint8), np.ones((k, k), np.uint8)) > 0
                scale = min(1.0, n / max(cam.width, cam.height))
                size = (max(1, round(cam.width * scale)), max(1, round(cam.height * scale)))
                small = cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0
                out.append((np.packbits(small), small.shape))
            self._hull_masks[i] = out
        return [np.unpackbits(bits, count=h * w).reshape(h, w).astype(bool) for bits, (h, w) in self._hull_masks[i]]

    def occupancy(self, i: int, theta: float, shift: np.ndarray, flip: bool) -> np.ndarray:
        """Visual-hull occupancy (Z, Y, X) of scene i on cfg.occupancy_grid in the augmented world frame."""
        shape, s, origin = self.cfg.occupancy_grid
        axes = [np.arange(n) * s + o + s / 2 for n, o in zip(shape, origin)]
        zz, yy, xx = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
        pts = np.stack([xx, yy, zz], -1)  # augmented world
        orig = (pts - np.array([shift[0], shift[1], 0.0])) @ yaw_to_matrix(theta)  # = R^T (p - shift)
        if flip:
            orig[..., 1] *= -1
        return voxel_hull(orig, s, self.meta(i).cameras, self.hull_masks(i))

    def __getitem__(self, i: int) -> dict:
        cfg = self.cfg
        meta = self.meta(i)
        rng = np.random.default_rng([self.seed, self.epoch, i])
        n_views = len(meta.cameras)
        need = cfg.n_input + cfg.n_target
        if cfg.augment:
            order = rng.permutation(n_views)
        else:  # evenly spaced inputs, the views in between as targets
            step = n_views / cfg.n_input
            inputs = [int(k * step) for k in range(cfg.n_input)]
            order = np.array(inputs + [v for v in range(n_views) if v not in inputs])
        picks = np.arange(need) % n_views  # fewer views than asked for: reuse them
        views = [int(v) for v in order[picks]]
        S = cfg.image_size
        cams, images, masks = [], [], []
        for v in views:
            cam = meta.cameras[v]
            rgb = read_rgb(meta.rgb_path(v), SceneFormatError)
            if rgb.shape[:2] != (cam.height, cam.width):
                raise SceneFormatError(f"{meta.rgb_path(v)}: image size differs from the camera's")
            mask = np.zeros(rgb.shape[:2], bool)
            for o in meta.objects:
                mask |= read_mask(meta.mask_path(o, v), rgb.shape[:2])
            images.append(cv2.resize(rgb, (S, S), interpolation=cv2.INTER_AREA))
            masks.append(cv2.resize(mask.astype(np.float32), (S, S), interpolation=cv2.INTER_AREA))
            cams.append(cam.resized(S, S))
        boxes = [o.box for o in meta.objects]
        flip, theta, shift = False, 0.0, np.zeros(2)
        if cfg.augment:
            flip = cfg.flip and rng.random() < 0.5
            theta = np.radians(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg))
            shift = rng.uniform(-cfg.shift, cfg.shift, 2)
            cams, boxes = augment_world(cams, boxes, theta, shift, flip)
            if flip:
                images = [np.ascontiguousarray(im[:, ::-1]) for im in images]
                masks = [np.ascontiguousarray(m[:, ::-1]) for m in masks]
        extra = {}
        if cfg.occupancy_grid is not None:
            extra["occupancy"] = torch.from_numpy(self.occupancy(i, theta, shift, flip))
        return {**extra,
            "images": torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div(255),
            "K": torch.tensor(np.stack([c.K for c in cams]), dtype=torch.float32),
            "T_cw": torch.tensor(np.stack([c.T_cw.as_matrix() for c in cams]), dtype=torch.float32),
            "masks": torch.from_numpy(np.stack(masks))[:, None].float(),
            "boxes": boxes_to_tensor(boxes),
            "labels": torch.tensor([int(o.anomalous) for o in meta.objects], dtype=torch.long),
            "anomaly_types": [o.anomaly_type for o in meta.objects],
            "views": views,
            "scene": str(meta.root),
        }
