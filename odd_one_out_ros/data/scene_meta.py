"""Reading the metadata of a scene in the official ToysAD-8K layout (docs/frames.md).

Layout: RGB/NNNN.png, depth_png/, segmentations/<object>/<object>_NNNN.png, binary_labels/,
scene3d.metadata.json (objects with rotation_matrix, rotation_euler, bbox [[cx,cy,cz],[sx,sy,sz]];
camera.K and camera.poses[i].rotation = 4x4 world-to-camera, OpenCV frame).
An object is anomalous when it has an explicit `label` field equal to 1 (our generator writes it)
or, in official scenes, when the file name of its .blend holds '-' (e.g. banana_028-crack-001).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..geometry import Box3D, PinholeCamera, Rigid

__all__ = ["SceneObject", "SceneMeta", "read_scene_meta", "SceneFormatError", "box_to_box", "quarter_turn"]


class SceneFormatError(ValueError):
    """A scene folder that does not follow the official layout; the message names the file."""


@dataclass(frozen=True)
class SceneObject:
    name: str           # folder name under segmentations/, e.g. "object.001"
    box: Box3D          # world frame
    anomalous: bool
    anomaly_type: str   # "" for normal objects, e.g. "crack"
    category: str       # e.g. "banana", "" when unknown
    pose: Rigid | None = None  # the shape's own frame -> world (rotation_matrix without its scale); None: not given
    scale: float = 1.0  # of the shape's own frame in the world (rotation_matrix = pose with its rotation x scale)

    def shape_to_world(self) -> np.ndarray | None:
        """(4, 4) the shape's own frame -> world, scale included (the layout's rotation_matrix), or None. Two copies
        of one shape correspond through it: a point x of copy a is copy b's shape_to_world() @ inv(a's) @ x."""
        if self.pose is None:
            return None
        T = self.pose.as_matrix()
        T[:3, :3] *= self.scale
        return T


def box_to_box(a: SceneObject, b: SceneObject) -> np.ndarray | None:
    """(4, 4) the map from copy a's box frame (origin at the box centre, axes turned by its yaw) to copy b's that their
    poses give (the same point of the shape in both: rotation x scale ratio, then a shift); None without poses."""
    Ma, Mb = a.shape_to_world(), b.shape_to_world()
    if Ma is None or Mb is None:
        return None
    box_a, box_b = (Rigid(o.box.rotation, o.box.center).as_matrix() for o in (a, b))  # box frame -> world
    return np.linalg.inv(box_b) @ Mb @ np.linalg.inv(Ma) @ box_a


def nearest_turn(T: np.ndarray, turns: np.ndarray) -> tuple[int, float]:
    """(index, angle in degrees) of the rotation among turns (R, 3, 3) nearest to the rotation of a box-to-box map T
    (4, 4) (box_to_box; its scale divided out)."""
    A = T[:3, :3] / np.cbrt(np.linalg.det(T[:3, :3]))
    cos = np.clip((np.einsum("rij,ij->r", turns, A) - 1) / 2, -1.0, 1.0)  # (trace(M^T A) - 1) / 2 per turn
    k = int(np.argmax(cos))
    return k, float(np.degrees(np.arccos(cos[k])))


def quarter_turn(T: np.ndarray, tol_deg: float = 10.0) -> int | None:
    """k when the rotation of a box-to-box map T (4, 4) (box_to_box; its scale divided out) is within tol_deg of a
    turn by k x 90 degrees about the boxes' z (k = 0..3: the turns the comparison tries), else None (the copies rest
    on different faces, or are turned otherwise)."""
    c, s = np.round(np.cos(np.arange(4) * np.pi / 2)), np.round(np.sin(np.arange(4) * np.pi / 2))
    z, o = np.zeros(4), np.ones(4)
    turns = np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], 1)  # (4, 3, 3)
    k, angle = nearest_turn(T, turns)
    return k if angle <= tol_deg else None


@dataclass(frozen=True)
class SceneMeta:
    root: Path
    cameras: list[PinholeCamera]  # one per view, index = view number
    objects: list[SceneObject]

    def rgb_path(self, view: int) -> Path:
        return self.root / "RGB" / f"{view:04d}.png"

    def mask_path(self, obj: SceneObject, view: int) -> Path:
        return self.root / "segmentations" / obj.name / f"{obj.name}_{view:04d}.png"

    def posed_views(self, views: list[int]):
        """PosedViews (RGB image + camera) of the given view indices; SceneFormatError for a bad image."""
        from ..fileio import read_rgb
        from ..views import PosedView

        out = []
        for v in views:
            if not 0 <= v < len(self.cameras):
                raise SceneFormatError(f"{self.root}: no view {v} (the scene has {len(self.cameras)})")
            out.append(PosedView(read_rgb(self.rgb_path(v), SceneFormatError), self.cameras[v], float(v), f"view{v}"))
        return out

    def even_views(self, n: int) -> list[int]:
        """n view indices spread evenly around the scene."""
        k = len(self.cameras)
        return sorted({int(round(i * k / n)) % k for i in range(n)})


def _pose(matrix) -> tuple[Rigid | None, float]:
    """rotation_matrix (4x4, or 3x3: no translation) -> (the rotation and translation as a Rigid, its uniform scale);
    (None, 1.0) when absent. ValueError for a matrix that is no scaled rotation."""
    if matrix is None:
        return None, 1.0
    M = np.asarray(matrix, dtype=np.float64)
    if M.shape not in ((4, 4), (3, 3)) or not np.all(np.isfinite(M)):
        raise ValueError(f"rotation_matrix must be a finite 4x4 or 3x3 matrix, got shape {M.shape}")
    A = M[:3, :3]
    scale = float(np.cbrt(np.linalg.det(A)))
    if scale <= 1e-9 or not np.allclose(A.T @ A, scale ** 2 * np.eye(3), atol=1e-4 * max(1.0, scale ** 2)):
        raise ValueError("rotation_matrix is not a rotation times a uniform scale")
    t = M[:3, 3] if M.shape == (4, 4) else np.zeros(3)
    return Rigid(A / scale, t), scale


def _object_from_json(o: dict, source: str) -> SceneObject:
    try:
        (cx, cy, cz), (sx, sy, sz) = o["bbox"]  # extents along the object's own x, y, z (docs/frames.md)
        pose, scale = _pose(o.get("rotation_matrix"))
        if "bbox_yaw" in o:  # (the generator's synth/2: the box's yaw apart from the shape's full pose)
            yaw = float(o["bbox_yaw"])
        elif pose is not None:  # official scenes and synth/1: objects turned about z only, the box with them
            yaw = float(np.arctan2(pose.R[1, 0], pose.R[0, 0]))
        else:
            yaw = float(o.get("rotation_euler", [0, 0, 0])[2])
        stem = Path(str(o.get("path", ""))).stem  # banana_028-crack-001
        parts = stem.split("-")
        if "label" in o:
            anomalous = int(o["label"]) == 1
        else:
            anomalous = len(parts) > 1
        anomaly_type = str(o.get("anomaly_type", parts[1] if anomalous and len(parts) > 1 else ""))
        category = str(o.get("category", re.sub(r"_\d+$", "", parts[0])))
        return SceneObject(str(o["name"]), Box3D((cx, cy, cz), (sx, sy, sz), yaw), anomalous, anomaly_type, category,
                           pose, scale)
    except (KeyError, TypeError, ValueError) as e:
        raise SceneFormatError(f"{source}: bad object entry {o.get('name', '?')!r}: {e!r}") from None


def read_scene_meta(root: str | Path) -> SceneMeta:
    """Read scene3d.metadata.json of one scene folder and the RGB image size."""
    root = Path(root)
    meta_path = root / "scene3d.metadata.json"
    try:
        meta = json.loads(meta_path.read_text())
    except OSError as e:
        raise SceneFormatError(f"{meta_path}: cannot read ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise SceneFormatError(f"{meta_path}: not valid JSON ({e})") from None
    try:
        K = np.array(meta["camera"]["K"], dtype=np.float64)
        poses = [np.array(p["rotation"], dtype=np.float64) for p in meta["camera"]["poses"]]
    except (KeyError, TypeError, ValueError) as e:
        raise SceneFormatError(f"{meta_path}: camera.K / camera.poses[].rotation missing or malformed "
                               f"({e!r})") from None
    width, height = _image_size(root / "RGB" / "0000.png", default=(int(round(2 * K[0, 2])), int(round(2 * K[1, 2]))))
    try:
        cameras = [PinholeCamera(K, width, height, Rigid.from_matrix(T)) for T in poses]
    except ValueError as e:
        raise SceneFormatError(f"{meta_path}: {e}") from None
    objects = [_object_from_json(o, str(meta_path)) for o in meta.get("objects", [])]
    return SceneMeta(root, cameras, objects)


def _image_size(path: Path, default: tuple[int, int]) -> tuple[int, int]:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) if path.exists() else None
    return (img.shape[1], img.shape[0]) if img is not None else default


def object_pixel_sizes(meta: SceneMeta) -> list[float]:
    """Per object of a scene: the median over its views of the largest side (px) of its mask's bounding box
    (views where the object is hidden are left out; 0 when it is hidden in every view)."""
    from ..fileio import read_mask

    out = []
    for o in meta.objects:
        sides = []
        for v, cam in enumerate(meta.cameras):
            ys, xs = np.nonzero(read_mask(meta.mask_path(o, v), (cam.height, cam.width)))
            if len(xs):
                sides.append(max(np.ptp(xs), np.ptp(ys)) + 1)
        out.append(float(np.median(sides)) if sides else 0.0)
    return out
