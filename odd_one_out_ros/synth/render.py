"""CPU rendering of generated scenes with Open3D's RaycastingScene and our own shading.

Per view: RGB (anti-aliased by adaptive supersampling of edge pixels), z-depth and instance ids at
the pixel centres (docs/frames.md). The camera must have no lens distortion.
Shading: interpolated vertex normals, procedural albedo (materials.py)
evaluated in each object's own frame, a sun with hard shadows (shadow rays), sky ambient light,
Blinn-Phong highlights; rays that hit nothing see a vertical background gradient. A `Look` (look.py) other
than the classic one adds soft shadows (a sun of some size), light bounced from the floor, the objects' finish
(metal reflects the sky and floor) and the camera's effects (exposure, vignetting, gamma, blur, noise).
Instance ids: -1 background, 0 floor, k + 1 object k.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import open3d as o3d

from ..geometry import PinholeCamera
from .look import Look, camera_effects
from .materials import Material, shade_pattern


@dataclass
class RenderMesh:
    vertices: np.ndarray  # (V, 3) world
    faces: np.ndarray  # (F, 3)
    normals: np.ndarray  # (V, 3) world vertex normals
    material: Material
    instance: int  # 0 floor, k + 1 object k
    world_to_local: np.ndarray  # (4, 4): texture coordinates are object-local
    decal: tuple | None = None
    """floor decal: (image (H, W, 3) float RGB, (x0, y0, x1, y1) world extent, alpha (H, W) bool)"""


@dataclass
class Lighting:
    sun_dir: np.ndarray  # (3,) unit, towards the sun
    sun: float = 0.8
    ambient: float = 0.35
    background_top: tuple = (0.8, 0.85, 0.9)
    background_bottom: tuple = (0.5, 0.5, 0.55)


class Renderer:
    """All meshes go into one triangle soup (one Open3D geometry) with per-face mesh indices, so that
    shading is vectorised over all hits instead of looping over parts."""

    def __init__(self, meshes: list[RenderMesh], lighting: Lighting, look: Look | None = None):
        self.meshes, self.light, self.look = meshes, lighting, look or Look()
        self._rng = np.random.default_rng(self.look.seed)  # soft-shadow samples (classic: unused)
        floor = meshes[0].material if meshes and meshes[0].instance == 0 else None
        mean = np.add(floor.color, floor.color2) / 2 if floor is not None else np.full(3, 0.5)
        self.floor_albedo = mean.astype(np.float32) ** np.float32(self.look.gamma)  # bounced light's colour (linear)
        offsets = np.cumsum([0] + [len(m.vertices) for m in meshes])
        self.vertices = np.concatenate([m.vertices for m in meshes]).astype(np.float64)
        self.normals = np.concatenate([m.normals for m in meshes]).astype(np.float32)  # float32: shading speed
        self.faces = np.concatenate([m.faces + o for m, o in zip(meshes, offsets)]).astype(np.int64)
        self.face_mesh = np.concatenate([np.full(len(m.faces), i) for i, m in enumerate(meshes)])
        self.instances = np.array([m.instance for m in meshes], np.int32)
        self.w2l = np.stack([m.world_to_local for m in meshes])
        self.materials: list[Material] = []
        mat_index = []
        for m in meshes:
            if m.material not in self.materials:
                self.materials.append(m.material)
            mat_index.append(self.materials.index(m.material))
        self.mesh_material = np.array(mat_index)
        self._bake_floor()
        self.scene = o3d.t.geometry.RaycastingScene()
        self.scene.add_triangles(o3d.core.Tensor(self.vertices.astype(np.float32)),
                                 o3d.core.Tensor(self.faces.astype(np.uint32)))

    # the floor's (noise-based, expensive) texture is baked once per scene: +-1 m at 3.9 mm per texel,
    # then +-6 m (the whole floor) at 31 mm per texel, fine for the far floor's large pixels
    FLOOR_BAKE = ((1.0, 512), (6.0, 384))

    def _bake_floor(self) -> None:
        """Evaluate the floor's texture once per scene on grids; views look it up."""
        self.floor_tex = []
        if not self.meshes or self.meshes[0].instance != 0:
            return
        for half, n in self.FLOOR_BAKE:
            c = (np.arange(n) + 0.5) / n * 2 * half - half
            xx, yy = np.meshgrid(c, c, indexing="xy")  # row = y index, col = x index
            pts = np.stack([xx.ravel(), yy.ravel(), np.zeros(n * n)], axis=1)
            self.floor_tex.append((half, n, shade_pattern(self.meshes[0].material, pts).reshape(n, n, 3)))

    def _cast(self, origins: np.ndarray, dirs: np.ndarray) -> dict:
        rays = np.concatenate([origins, dirs], axis=1).astype(np.float32)
        ans = self.scene.cast_rays(o3d.core.Tensor(rays))
        return {k: v.numpy() for k, v in ans.items()}

    def _background(self, d: np.ndarray) -> np.ndarray:
        up = np.clip(d[:, 2] * 2 + 0.5, 0, 1)[:, None]  # vertical gradient by ray elevation
        bg = np.asarray(self.light.background_bottom) * (1 - up) + np.asarray(self.light.background_top) * up
        return bg if self.look.classic else bg ** self.look.gamma  # (colours are given as displayed: linearised)

    def _colour(self, origin: np.ndarray, d: np.ndarray, ans: dict | None = None) -> tuple[np.ndarray, dict]:
        """Shaded colour (N, 3) of rays from `origin` along unit dirs d (N, 3)."""
        d = d.astype(np.float32)
        o = np.broadcast_to(np.asarray(origin, np.float32), d.shape)
        ans = self._cast(o, d) if ans is None else ans
        t = ans["t_hit"]
        hit = np.isfinite(t)
        color = self._background(d)
        if hit.any():
            color[hit] = self._shade(o[hit] + t[hit, None] * d[hit], d[hit], ans["primitive_ids"][hit],
                                     ans["primitive_uvs"][hit])
        return color, ans

    def render(self, cam: PinholeCamera, supersample: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One view: RGB (H, W, 3) uint8, z-depth (H, W) float32 (0 = no hit), instance ids (H, W) int32.

        Anti-aliasing is adaptive: pixels on a silhouette or depth edge (a different mesh or a depth
        jump next to them) are re-rendered with supersample^2 sub-pixel rays and averaged.
        """
        H, W = cam.height, cam.width
        origin, dirs = cam.pixel_rays()
        d = dirs.reshape(-1, 3)
        color, ans = self._colour(origin, d)
        hit = np.isfinite(ans["t_hit"])
        mesh = np.full(len(d), -1, np.int64)
        mesh[hit] = self.face_mesh[ans["primitive_ids"][hit]]
        inst = np.full(len(d), -1, np.int32)
        inst[hit] = self.instances[mesh[hit]]
        depth = np.zeros(len(d), np.float32)
        depth[hit] = ans["t_hit"][hit] * (d[hit] @ cam.T_cw.R[2])  # ray length -> camera z
        img = color.reshape(H, W, 3)
        ss = max(1, int(supersample))
        if ss > 1:
            m, z = mesh.reshape(H, W), depth.reshape(H, W)
            edge = np.zeros((H, W), bool)
            for a, b in (((slice(1, None), slice(None)), (slice(None, -1), slice(None))),
                         ((slice(None), slice(1, None)), (slice(None), slice(None, -1)))):
                e = (m[a] != m[b]) | (np.abs(z[a] - z[b]) > 0.03 * np.maximum(z[a], z[b]))
                edge[a] |= e
                edge[b] |= e
            rows, cols = np.nonzero(edge)
            if len(rows):
                offs = (np.arange(ss) + 0.5) / ss - 0.5
                ou, ov = np.meshgrid(offs, offs)
                u = (cols[:, None] + ou.ravel()[None]).ravel()
                v = (rows[:, None] + ov.ravel()[None]).ravel()
                Kinv = np.linalg.inv(cam.K)
                dc = np.stack([u, v, np.ones_like(u)], axis=1) @ Kinv.T
                dw = dc @ cam.T_cw.R
                dw /= np.linalg.norm(dw, axis=1, keepdims=True)
                sub, _ = self._colour(origin, dw)
                img[rows, cols] = sub.reshape(len(rows), ss * ss, 3).mean(axis=1)
        if self.look.classic:
            rgb = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
        else:  # the camera: per-view noise seeded by the look and the camera's pose
            rgb = camera_effects(img, self.look, zlib.crc32(np.round(cam.T_cw.as_matrix(), 6).tobytes()))
        return rgb, depth.reshape(H, W), inst.reshape(H, W)

    def albedo_at(self, p: np.ndarray, prims: np.ndarray) -> np.ndarray:
        """Procedural albedo (N, 3) at world points p (N, 3) on faces prims (N,)."""
        mesh = self.face_mesh[prims]
        T = self.w2l[mesh]  # (N, 4, 4)
        local = np.einsum("nij,nj->ni", T[:, :3, :3], p) + T[:, :3, 3]
        albedo = np.zeros_like(p)
        mat = self.mesh_material[mesh]
        baked = np.zeros(len(p), bool)
        for half, n, tex in self.floor_tex:
            sel = (mesh == 0) & ~baked & (np.abs(p[:, 0]) < half) & (np.abs(p[:, 1]) < half)
            col = ((p[sel, 0] + half) / (2 * half) * n).astype(int).clip(0, n - 1)
            row = ((p[sel, 1] + half) / (2 * half) * n).astype(int).clip(0, n - 1)
            albedo[sel] = tex[row, col]
            baked |= sel
        for j, m in enumerate(self.materials):
            sel = (mat == j) & ~baked
            if sel.any():
                albedo[sel] = shade_pattern(m, local[sel])
        floor = self.meshes[0]
        if floor.decal is not None:
            img, (x0, y0, x1, y1), alpha = floor.decal
            inside = np.flatnonzero((mesh == 0) & (p[:, 0] >= x0) & (p[:, 0] < x1) & (p[:, 1] >= y0) & (p[:, 1] < y1))
            if len(inside):
                h, w = img.shape[:2]
                col = ((p[inside, 0] - x0) / (x1 - x0) * w).astype(int).clip(0, w - 1)
                row = ((y1 - p[inside, 1]) / (y1 - y0) * h).astype(int).clip(0, h - 1)  # image rows run along -y
                keep = alpha[row, col]
                albedo[inside[keep]] = img[row[keep], col[keep]]
        return albedo

    def _shade(self, p, d, prims, uvs) -> np.ndarray:
        tri = self.faces[prims]
        u, v = uvs[:, 0:1], uvs[:, 1:2]
        n = self.normals[tri[:, 0]] * (1 - u - v) + self.normals[tri[:, 1]] * u + self.normals[tri[:, 2]] * v
        n /= np.maximum(np.sqrt(np.einsum("ij,ij->i", n, n)), 1e-9)[:, None]
        n *= np.where(np.einsum("ij,ij->i", n, d) > 0, -1.0, 1.0).astype(np.float32)[:, None]  # face the camera
        albedo = self.albedo_at(p, prims).astype(np.float32)
        if not self.look.classic:  # material colours are given as displayed: linear for the light, gamma at the end
            albedo = albedo ** self.look.gamma
        mat = self.mesh_material[self.face_mesh[prims]]
        spec = np.array([m.specular for m in self.materials])[mat]
        shin = np.array([m.shininess for m in self.materials])[mat]
        L = self.light.sun_dir.astype(np.float32)
        ndl = np.clip(n @ L, 0, None)
        lit = ndl > 0
        vis = np.zeros(len(p))
        look = self.look
        if lit.any():
            Ls = np.broadcast_to(L, (int(lit.sum()), 3))
            if look.sun_radius_deg > 0:  # a sun of some size: each shadow ray to a random point of its disc
                Ls = self._sun_samples(L, len(Ls), np.radians(look.sun_radius_deg))
            sh = self._cast(p[lit] + n[lit] * 1e-3, Ls)
            vis[lit] = ~np.isfinite(sh["t_hit"])
        h = L[None] - d
        h /= np.maximum(np.sqrt(np.einsum("ij,ij->i", h, h)), 1e-9)[:, None]
        highlight = spec * np.clip(np.einsum("ij,ij->i", n, h), 0, None) ** shin * vis * self.light.sun
        sky = 0.75 + 0.25 * n[:, 2]  # hemisphere ambient: more light from above
        light = self.light.ambient * sky + self.light.sun * ndl * vis
        if look.classic:
            return albedo * light[:, None] + highlight[:, None]
        # light bounced from the floor reaches what faces down; the objects' finish
        bounce = look.bounce * self.light.sun * L[2] * np.clip(-n[:, 2], 0, None)
        colour = albedo * light[:, None] + bounce[:, None] * albedo * self.floor_albedo[None]
        obj = self.instances[self.face_mesh[prims]] > 0
        if look.finish == "painted":
            return np.where(obj[:, None], colour + 0.3 * highlight[:, None], colour + highlight[:, None])
        if look.finish == "metal" and obj.any():
            r = d[obj] - 2 * np.einsum("ij,ij->i", d[obj], n[obj])[:, None] * n[obj]  # mirror direction
            env = np.where(r[:, 2:3] > 0, self._background(r),
                           self.floor_albedo[None] * (self.light.ambient + self.light.sun * L[2]))
            m = look.metallic
            colour[obj] = (1 - m) * colour[obj] + m * albedo[obj] * env + 2.5 * highlight[obj, None] * albedo[obj]
            colour[~obj] += highlight[~obj, None]
            return colour
        return colour + highlight[:, None]

    def _sun_samples(self, L: np.ndarray, n: int, radius: float) -> np.ndarray:
        """n unit directions uniformly over the sun's disc of angular `radius` around L (3,)."""
        a = np.cross(L, [1.0, 0.0, 0.0] if abs(L[0]) < 0.9 else [0.0, 1.0, 0.0])
        a /= np.linalg.norm(a)
        b = np.cross(L, a)
        rr = np.tan(radius) * np.sqrt(self._rng.random(n))
        phi = 2 * np.pi * self._rng.random(n)
        dirs = L[None] + (rr * np.cos(phi))[:, None] * a[None] + (rr * np.sin(phi))[:, None] * b[None]
        return (dirs / np.linalg.norm(dirs, axis=1, keepdims=True)).astype(np.float32)
