"""A second, photoreal rendering of generated scenes (issue 36): the same geometry, cameras and materials handed to
Blender's Cycles path tracer (benchmarks/cycles_render.py runs under a Python that has the `bpy` wheel), so the
generator's look can be checked against a renderer it was not trained on. Only the RGB differs: masks, depth,
boxes and labels stay the generator's.

export_for_cycles(scene, path) writes one .npz: per mesh its world vertices, faces, shading normals (split at
edges sharper than 30 degrees) and per-vertex colours (the procedural albedo at the vertex), its material's
specular and shininess; the floor's baked texture (+-1 m) and mean colour; the sun, sky and background; the cameras
(K, T_cw, size). Pure: numpy, no bpy.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .render import Renderer
from .scene import Scene, scene_meshes

__all__ = ["export_for_cycles", "CREASE_DEG"]

CREASE_DEG = 30.0  # the path tracer's shading normals: smooth only across flatter edges, as a CAD export would be


def export_for_cycles(scene: Scene, path: str | Path) -> Path:
    """The scene as benchmarks/cycles_render.py reads it (one .npz). Returns the path."""
    meshes = scene_meshes(scene.objects, scene.floor, scene.board, crease_deg=CREASE_DEG)
    r = Renderer(meshes, scene.lighting)  # (its albedo lookup: the floor's bake and every material's pattern)
    out: dict[str, np.ndarray] = {}
    face0 = np.cumsum([0] + [len(m.faces) for m in meshes])
    objects = [i for i, m in enumerate(meshes) if m.instance > 0]
    for k, i in enumerate(objects):
        m = meshes[i]
        prims = np.zeros(len(m.vertices), np.int64)  # one face of each vertex: where its albedo is read
        prims[m.faces.ravel()] = face0[i] + np.repeat(np.arange(len(m.faces)), 3)
        out[f"mesh{k}_vertices"] = m.vertices.astype(np.float32)
        out[f"mesh{k}_faces"] = m.faces.astype(np.int32)
        out[f"mesh{k}_normals"] = m.normals.astype(np.float32)
        out[f"mesh{k}_colors"] = np.clip(r.albedo_at(m.vertices, prims), 0, 1).astype(np.float32)
        out[f"mesh{k}_material"] = np.array([m.material.specular, m.material.shininess], np.float32)
    if r.floor_tex:
        half, _, tex = r.floor_tex[0]
        out["floor_texture"] = np.clip(tex, 0, 1).astype(np.float32)
        out["floor_half"] = np.array(half, np.float32)
    light = scene.lighting
    out.update(
        n_meshes=np.array(len(objects)), floor_color=r.floor_albedo.astype(np.float32),
        sun_dir=np.asarray(light.sun_dir, np.float32), sun=np.array(light.sun, np.float32),
        ambient=np.array(light.ambient, np.float32),
        background=np.array([light.background_bottom, light.background_top], np.float32),
        K=np.stack([c.K for c in scene.cameras]).astype(np.float64),
        T_cw=np.stack([c.T_cw.as_matrix() for c in scene.cameras]).astype(np.float64),
        size=np.array([scene.cameras[0].width, scene.cameras[0].height]))
    path = Path(path)
    np.savez_compressed(path, **out)
    return path
