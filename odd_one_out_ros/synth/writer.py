"""Write a rendered scene in the official ToysAD-8K layout (see odd_one_out_ros/data/scene_meta.py).

    RGB/NNNN.png                        colour views (8-bit RGB)
    depth_png/NNNN.png                  z-depth, uint16 millimetres, 0 = nothing hit ("depth_scale": 0.001)
    segmentations/<object>/<object>_NNNN.png   per-object masks (0 / 255), plus floor_object
    binary_labels/NNNN.png              mask of the anomalous objects (0 / 255)
    scene3d.metadata.json               objects (name, path, rotation_matrix, rotation_euler, location, scale,
                                        bbox [[cx, cy, cz], [sx, sy, sz]], bbox_yaw, label, anomaly_type, category),
                                        camera.K and camera.poses[i].rotation (4x4 world-to-camera)
Object poses as Blender's (the official layout): rotation_matrix (4x4) maps the shape's own frame (the unit-size
shape every copy of the scene is made from) to the world, resting pose, yaw and scale included (Blender's
matrix_world); rotation_euler its rotation as Blender's XYZ Euler angles (rad), location its translation, scale
its scale. The box is centred at bbox[0], extents bbox[1] along its own axes, turned by bbox_yaw about world +z
(since format synth/2; before it, rotation_matrix held only the box's yaw and location).
The folder is written under <name>.partial and renamed when complete, so an interrupted run never
leaves a scene that looks complete.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from ..fileio import atomic_path
from .scene import Scene, render_scene

FORMAT = "odd_one_out_ros/synth/2"  # synth/1: rotation_matrix = the box's yaw only, no bbox_yaw


def _png(path: Path, img: np.ndarray) -> None:
    if not cv2.imwrite(str(path), img):
        raise OSError(f"{path}: cannot write image")


def metadata(scene: Scene, seed_info: dict) -> dict:
    objects = []
    for o in scene.objects:
        T = o.shape_to_world()
        scale = float(np.cbrt(np.linalg.det(T[:3, :3])))
        path = o.shape_id if not o.anomalous else f"{o.shape_id}-{o.anomaly_type}-001"
        with warnings.catch_warnings():  # (gimbal lock, e.g. a part on its side: one of many equal answers is fine)
            warnings.simplefilter("ignore", UserWarning)
            euler = Rotation.from_matrix(T[:3, :3] / scale).as_euler("xyz").tolist()
        objects.append({"name": o.name, "path": path, "rotation_matrix": T.tolist(), "rotation_euler": euler,
                        "location": T[:3, 3].tolist(), "scale": [scale] * 3, "bbox_yaw": float(o.yaw),
                        "bbox": [o.box.center.tolist(), o.box.size.tolist()],
                        "label": int(o.anomalous), "anomaly_type": o.anomaly_type, "category": o.category})
    K = scene.cameras[0].K
    meta = {"objects": objects,
            "camera": {"K": K.tolist(), "poses": [{"rotation": c.T_cw.as_matrix().tolist()} for c in scene.cameras]},
            "scene": {"floor": scene.floor.to_dict(), "sun_dir": scene.lighting.sun_dir.tolist(),
                      "board": scene.board["yaml"] if scene.board else None},
            "depth_scale": 0.001, "generator": {"format": FORMAT, **seed_info, **scene.info}}
    return meta


def write_scene(scene: Scene, out_dir: str | Path, seed_info: dict, supersample: int = 2) -> Path:
    out = Path(out_dir)
    with atomic_path(out, ".partial") as tmp:
        _write_folder(scene, tmp, seed_info, supersample)
    return out


def _write_folder(scene: Scene, tmp: Path, seed_info: dict, supersample: int) -> None:
    for sub in ("RGB", "depth_png", "binary_labels", "segmentations/floor_object"):
        (tmp / sub).mkdir(parents=True, exist_ok=True)
    for o in scene.objects:
        (tmp / "segmentations" / o.name).mkdir(parents=True, exist_ok=True)
    anomalous = [k + 1 for k, o in enumerate(scene.objects) if o.anomalous]
    for i, rgb, depth, inst in render_scene(scene, supersample):
        name = f"{i:04d}.png"
        _png(tmp / "RGB" / name, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        _png(tmp / "depth_png" / name, np.clip(np.round(depth * 1000), 0, 65535).astype(np.uint16))
        _png(tmp / "binary_labels" / name, (np.isin(inst, anomalous) * 255).astype(np.uint8))
        _png(tmp / "segmentations" / "floor_object" / f"floor_object_{i:04d}.png", ((inst == 0) * 255).astype(np.uint8))
        for k, o in enumerate(scene.objects):
            _png(tmp / "segmentations" / o.name / f"{o.name}_{i:04d}.png", ((inst == k + 1) * 255).astype(np.uint8))
    (tmp / "scene3d.metadata.json").write_text(json.dumps(metadata(scene, seed_info), indent=1))


def is_complete(scene_dir: str | Path) -> bool:
    d = Path(scene_dir)
    return (d / "scene3d.metadata.json").is_file() and not d.with_name(d.name + ".partial").exists()
