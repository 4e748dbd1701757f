"""Anomaly operators on Shapes, with the quality checks of the paper's appendix A.1.

Each operator returns a new Shape or raises Rejected (the caller draws another anomaly). Shapes
are in their own frame (docs of shapes.py); `size` is the shape's largest extent. Geometric edits use
manifold3d (booleans keep meshes watertight; `warp` deforms refined meshes without tearing them).
Checks here: a fracture removes 10-90 % of the volume, a crack 1-25 %, a moved or turned part stays
attached (manifold3d min_gap), a missing part is at least 1 % of the volume. Whether the change is
visible from at least one camera is checked by the scene builder, which renders both versions.
"""
from __future__ import annotations

import manifold3d as mf
import numpy as np

from .materials import different_material
from .parts import build_part, perturb, to_manifold, to_trimesh
from .shapes import Shape

GEOMETRIC = ("crack", "fracture", "bump", "bend", "twist")
PART_LEVEL = ("translated_part", "rotated_part", "missing_part", "material")
ANOMALY_TYPES = GEOMETRIC + PART_LEVEL + ("similar_shape",)


class Rejected(Exception):
    """This anomaly could not be made on this shape (try another)."""


def _size(shape: Shape) -> float:
    lo, hi = shape.bounds
    return float(np.max(hi - lo))


def _union(shape: Shape) -> mf.Manifold:
    return mf.Manifold.batch_boolean([to_manifold(p.mesh) for p in shape.parts], mf.OpType.Add)


def _main_part(shape: Shape) -> int:
    fixed = [i for i, p in enumerate(shape.parts) if not p.movable] or list(range(len(shape.parts)))
    return max(fixed, key=lambda i: shape.parts[i].mesh.volume)


def _slab(size: float, width: float, depth: float) -> mf.Manifold:
    """A thin box: `width` thick along x, 4*size along y, from z = -depth to z = 4*size (m)."""
    return mf.Manifold.cube([width, 4 * size, 4 * size + depth]).translate([-width / 2, -2 * size, -depth])


def _orient(m: mf.Manifold, normal: np.ndarray, point: np.ndarray) -> mf.Manifold:
    """Rotate a tool built around +z (cutting towards -z) so +z points along `normal`, then move to `point`."""
    z = np.array([0.0, 0.0, 1.0])
    n = normal / np.linalg.norm(normal)
    v = np.cross(z, n)
    c = float(z @ n)
    if np.linalg.norm(v) < 1e-9:
        R = np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    else:
        vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
        R = np.eye(3) + vx + vx @ vx * (1 / (1 + c))
    return m.transform(np.concatenate([R, point[:, None]], axis=1).tolist())


def crack(shape: Shape, rng: np.random.Generator) -> Shape:
    """A jagged groove, 5-8 % of the size wide (>= 2-3 px at 256 px), cut 35-65 % into the main part."""
    out = shape.copy()
    i = _main_part(out)
    part = to_manifold(out.parts[i].mesh)
    size = _size(shape)
    lo, hi = np.asarray(part.bounding_box()[:3]), np.asarray(part.bounding_box()[3:])
    center = (lo + hi) / 2
    # a horizontal entry direction: the crack runs down from the side surface
    a = rng.uniform(0, 2 * np.pi)
    normal = np.array([np.cos(a), np.sin(a), rng.uniform(-0.3, 0.6)])
    width, depth = rng.uniform(0.05, 0.08) * size, rng.uniform(0.35, 0.65) * float(np.max(hi - lo))
    # zigzag: 3 slabs with different tilts, joined
    tool = mf.Manifold.batch_boolean(
        [_slab(size, width, depth).rotate([float(rng.uniform(-25, 25)), float(rng.uniform(-15, 15)), 0])
         .translate([float(rng.uniform(-1, 1) * width), 0, 0]) for _ in range(3)], mf.OpType.Add)
    surface = center + normal / np.linalg.norm(normal) * float(np.max(hi - lo)) / 2
    cut = part - _orient(tool, normal, surface)
    removed = 1 - cut.volume() / part.volume()
    if not 0.01 <= removed <= 0.25 or cut.is_empty():
        raise Rejected(f"crack removed {removed:.0%}")
    out.parts[i].mesh = to_trimesh(cut)
    return out


def fracture(shape: Shape, rng: np.random.Generator) -> Shape:
    """The object broken along a jagged surface: 10-90 % of its volume removed (appendix A.1)."""
    out = shape.copy()
    total = _union(shape).volume()
    size = _size(shape)
    lo, hi = shape.bounds
    point = lo + (hi - lo) * rng.uniform(0.3, 0.7, 3)
    n0 = rng.normal(size=3)
    n0[2] = abs(n0[2]) * 0.5
    n0 /= np.linalg.norm(n0)
    # the kept side is the intersection of 3 half-spaces with nearby normals: a jagged break
    keep = None
    for _ in range(3):
        n = n0 + rng.normal(scale=0.25, size=3)
        half = mf.Manifold.cube([8 * size, 8 * size, 8 * size]).translate([-4 * size, -4 * size, -8 * size])
        half = _orient(half, n, point + rng.normal(scale=0.03 * size, size=3))
        keep = half if keep is None else keep ^ half
    new_parts = []
    for p in out.parts:
        m = to_manifold(p.mesh) ^ keep
        if not m.is_empty() and m.volume() > 1e-9:
            p.mesh = to_trimesh(m)
            new_parts.append(p)
    if not new_parts:
        raise Rejected("fracture removed everything")
    out.parts = new_parts
    removed = 1 - _union(out).volume() / total
    if not 0.10 <= removed <= 0.90:
        raise Rejected(f"fracture removed {removed:.0%} (needs 10-90 %)")
    return out


def _warp(shape: Shape, fn, indices=None) -> Shape:
    out = shape.copy()
    size = _size(shape)
    for i, p in enumerate(out.parts):
        if indices is not None and i not in indices:
            continue
        m = to_manifold(p.mesh).refine_to_length(size / 30)
        moved = m.warp_batch(lambda v: np.ascontiguousarray(fn(np.array(v, dtype=np.float64)), np.float32))
        out.parts[i].mesh = to_trimesh(moved)
    return out


def bump(shape: Shape, rng: np.random.Generator) -> Shape:
    """A smooth bump (7 in 10: 8-15 % of the size high) or dent (0.6 x that deep: 4.8-9 %) on the main part, radius
    12-25 %."""
    i = _main_part(shape)
    mesh = shape.parts[i].mesh
    size = _size(shape)
    c = np.array(mesh.vertices[rng.integers(len(mesh.vertices))])  # plain arrays: nanobind refuses subclasses
    centroid = np.array(mesh.centroid)
    amp = rng.uniform(0.08, 0.15) * size * (1 if rng.random() < 0.7 else -0.6)
    sigma = rng.uniform(0.12, 0.25) * size

    def fn(v):
        d = v - centroid
        d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
        w = np.exp(-np.sum((v - c) ** 2, axis=1) / (2 * sigma ** 2))
        return v + amp * w[:, None] * d
    return _rest(_warp(shape, fn, {i}))


REST_SHIFT = "rest_shift"
"""params key: the translation (3,) an operator applied to the whole shape (_rest), so that the scene knows where
the unchanged rest of an anomalous copy lies (its pose in the metadata)"""


def _rest(shape: Shape) -> Shape:
    """Move the shape back onto z = 0 (deformations may lift or sink it); the move is added to params[REST_SHIFT]."""
    z0 = shape.bounds[0][2]
    for p in shape.parts:
        p.mesh.apply_translation([0, 0, -z0])
    shape.params[REST_SHIFT] = np.asarray(shape.params.get(REST_SHIFT, np.zeros(3))) + [0, 0, -z0]
    return shape


def bend(shape: Shape, rng: np.random.Generator) -> Shape:
    """Bend the whole object along its longest horizontal axis by 25-55 degrees end to end."""
    lo, hi = shape.bounds
    ext = hi - lo
    axis = 0 if ext[0] >= ext[1] else 1
    L = float(max(ext[0], ext[1]))
    total = np.radians(rng.uniform(25, 55)) * (1 if rng.random() < 0.5 else -1)
    R = L / total
    mid = (lo + hi) / 2

    def fn(v):
        x = v[:, axis] - mid[axis]
        z = v[:, 2] - lo[2]
        th = x / R
        out = v.copy()
        out[:, axis] = mid[axis] + (R - z) * np.sin(th)
        out[:, 2] = lo[2] + R - (R - z) * np.cos(th)
        return out
    return _rest(_warp(shape, fn))


def twist(shape: Shape, rng: np.random.Generator) -> Shape:
    """Twist the object about the vertical axis through its centre by 35-90 degrees bottom to top."""
    lo, hi = shape.bounds
    alpha = np.radians(rng.uniform(35, 90)) * (1 if rng.random() < 0.5 else -1)
    cx, cy = (lo[:2] + hi[:2]) / 2
    H = float(hi[2] - lo[2])

    def fn(v):
        a = alpha * (v[:, 2] - lo[2]) / H
        x, y = v[:, 0] - cx, v[:, 1] - cy
        out = v.copy()
        out[:, 0] = cx + x * np.cos(a) - y * np.sin(a)
        out[:, 1] = cy + x * np.sin(a) + y * np.cos(a)
        return out
    return _warp(shape, fn)


def _movable(shape: Shape, rng: np.random.Generator) -> int:
    cand = [i for i, p in enumerate(shape.parts) if p.movable]
    if not cand or len(shape.parts) < 2:
        raise Rejected("no movable part")
    return int(rng.choice(cand))


def _attached(shape: Shape, i: int, tol: float) -> bool:
    rest = mf.Manifold.batch_boolean([to_manifold(p.mesh) for j, p in enumerate(shape.parts) if j != i], mf.OpType.Add)
    return to_manifold(shape.parts[i].mesh).min_gap(rest, 10 * tol) <= tol


def translated_part(shape: Shape, rng: np.random.Generator) -> Shape:
    """Move one part by 10-30 % of the object size; it must stay attached (shrink the move until it is)."""
    i = _movable(shape, rng)
    size = _size(shape)
    d = rng.normal(size=3)
    d /= np.linalg.norm(d)
    dist = rng.uniform(0.1, 0.3) * size
    for _ in range(5):
        out = shape.copy()
        out.parts[i].mesh.apply_translation(d * dist)
        if _attached(out, i, 0.002 * size):
            return _rest(out)
        dist *= 0.6
    raise Rejected("moved part came loose")


def rotated_part(shape: Shape, rng: np.random.Generator) -> Shape:
    """Turn one part by 25-70 degrees about its point nearest to the rest of the object; stays attached."""
    import trimesh

    i = _movable(shape, rng)
    rest_c = np.mean([p.mesh.centroid for j, p in enumerate(shape.parts) if j != i], axis=0)
    verts = shape.parts[i].mesh.vertices
    pivot = verts[np.argmin(np.linalg.norm(verts - rest_c, axis=1))]
    axis = rng.normal(size=3)
    angle = np.radians(rng.uniform(25, 70)) * (1 if rng.random() < 0.5 else -1)
    for _ in range(4):
        out = shape.copy()
        out.parts[i].mesh.apply_transform(trimesh.transformations.rotation_matrix(angle, axis, pivot))
        if _attached(out, i, 0.002 * _size(shape)):
            return _rest(out)
        angle *= 0.7
    raise Rejected("turned part came loose")


def missing_part(shape: Shape, rng: np.random.Generator) -> Shape:
    i = _movable(shape, rng)
    if shape.parts[i].mesh.volume < 0.01 * _union(shape).volume():
        raise Rejected("part too small to be missed")
    out = shape.copy()
    del out.parts[i]
    return _rest(out)


def material(shape: Shape, rng: np.random.Generator) -> Shape:
    """A part (or the whole object) in a different colour or pattern."""
    out = shape.copy()
    if rng.random() < 0.35 or len(out.parts) == 1:
        out.materials = [different_material(m, rng) for m in out.materials]
        return out
    i = int(rng.integers(len(out.parts)))
    out.materials.append(different_material(out.materials[out.parts[i].material], rng))
    out.parts[i].material = len(out.materials) - 1
    return out


def chamfer_distance(a: Shape, b: Shape, n: int = 20000, seed: int = 0) -> float:
    """Symmetric mean nearest-surface-point distance between two shapes (m), from n samples each. Sampling adds
    about the sample spacing: with n = 1500 a part against itself scored ~2 % of its size (the similar-shape band's
    lower edge, so parts 0.7 % apart passed); with 20000 the excess is ~0.2 %."""
    import trimesh
    from scipy.spatial import cKDTree

    pa = trimesh.sample.sample_surface(a.mesh(), n, seed=seed)[0]
    pb = trimesh.sample.sample_surface(b.mesh(), n, seed=seed + 1)[0]
    return float((cKDTree(pb).query(pa)[0].mean() + cKDTree(pa).query(pb)[0].mean()) / 2)


def similar_shape(shape: Shape, rng: np.random.Generator, band: tuple[float, float] = (0.02, 0.10)) -> Shape:
    """Parts only: another part of the same family, close but different: its Chamfer distance to the
    normal shape, relative to the size, must lie in `band` (tried up to 8 times)."""
    family = shape.params.get("family")
    if family is None:
        raise Rejected("similar_shape needs a generated mechanical part")
    params = {k: v for k, v in shape.params.items() if k != "family"}
    size = _size(shape)
    for _ in range(8):
        cand = build_part(family, perturb(family, params, rng, float(rng.uniform(0.1, 0.3))), rng, shape.materials)
        cand = cand.normalized(size)
        d = chamfer_distance(shape, cand) / size
        if band[0] <= d <= band[1]:
            cand.params["chamfer_to_normal"] = d
            return cand
    raise Rejected("no similar part in the distance band")


OPERATORS = {"crack": crack, "fracture": fracture, "bump": bump, "bend": bend, "twist": twist,
             "translated_part": translated_part, "rotated_part": rotated_part, "missing_part": missing_part,
             "material": material, "similar_shape": similar_shape}


def make_anomaly(shape: Shape, kind: str, rng: np.random.Generator) -> Shape:
    if kind not in OPERATORS:
        raise ValueError(f"unknown anomaly {kind!r}; choose from {ANOMALY_TYPES}")
    return OPERATORS[kind](shape, rng)
