"""CAD-like mechanical parts from seeds (PartsAD-like, non-categorical), built with manifold3d.

Families: plate (extruded outline with holes and bosses), bracket (L profile with holes and a gusset),
flange / shaft (revolved stepped profiles with bolt holes), gear (toothed extrusion with a bore),
block (boolean combination of a block, bosses, ribs and pockets). Every shape is drawn from a
parameter vector; `perturb` draws a geometrically similar but different one (for the
"similar part" anomaly). Bosses, ribs and collars are separate, movable Parts.
"""
from __future__ import annotations

import manifold3d as mf
import numpy as np
import trimesh

from .materials import Material, random_color
from .shapes import Part, Shape


def to_trimesh(m: mf.Manifold) -> trimesh.Trimesh:
    mesh = m.to_mesh()
    return trimesh.Trimesh(np.asarray(mesh.vert_properties)[:, :3].astype(np.float64),
                           np.asarray(mesh.tri_verts).astype(np.int64), process=False)


def to_manifold(t: trimesh.Trimesh) -> mf.Manifold:
    return mf.Manifold(mf.Mesh(vert_properties=np.asarray(t.vertices, np.float32),
                               tri_verts=np.asarray(t.faces, np.uint32)))


def _cyl(r, h, xyz=(0, 0, 0), n=32):
    return mf.Manifold.cylinder(h, r, r, n).translate(list(xyz))


def _rounded_rect(L, W, r):
    return mf.CrossSection.square([L - 2 * r, W - 2 * r], center=True).offset(r, mf.JoinType.Round)


def plate(p: dict) -> list[tuple[mf.Manifold, str, bool]]:
    L, W, T = p["L"], p["W"], p["T"]
    body = _rounded_rect(L, W, min(p["corner"], W / 3)).extrude(T)
    holes = []
    for i in range(p["n_holes"]):
        x = (i - (p["n_holes"] - 1) / 2) * L / max(p["n_holes"], 1) * 0.8
        holes.append(_cyl(p["hole_r"], T * 3, (x, W * 0.25 * (1 if i % 2 else -1), -T)))
    if holes:
        body = body - mf.Manifold.batch_boolean(holes, mf.OpType.Add)
    parts = [(body, "plate", False)]
    for i in range(p["n_bosses"]):
        x = (i - (p["n_bosses"] - 1) / 2) * L / max(p["n_bosses"], 1) * 0.7
        boss = _cyl(p["boss_r"], p["boss_h"], (x, -W * 0.15 * (1 if i % 2 else -1), T * 0.5)) - \
            _cyl(p["boss_r"] * 0.45, p["boss_h"] * 3, (x, -W * 0.15 * (1 if i % 2 else -1), 0))
        parts.append((boss, f"boss{i}", True))
    return parts


def bracket(p: dict) -> list[tuple[mf.Manifold, str, bool]]:
    L, W, T, H = p["L"], p["W"], p["T"], p["H"]
    base = mf.Manifold.cube([L, W, T]).translate([-L / 2, -W / 2, 0])
    wall = mf.Manifold.cube([T, W, H]).translate([-L / 2, -W / 2, 0])
    holes = [_cyl(p["hole_r"], T * 3, (L * (0.1 + 0.3 * i), 0, -T)) for i in range(p["n_holes"])]
    holes += [_cyl(p["hole_r"], T * 3, (0, 0, 0)).rotate([0, 90, 0]).translate([-L / 2 - T, 0, H * 0.6])]
    body = (base + wall) - mf.Manifold.batch_boolean(holes, mf.OpType.Add)
    gusset = mf.CrossSection([[[0, 0], [L * p["gusset"], 0], [0, H * p["gusset"]]]]).extrude(T * 0.8)
    gusset = gusset.rotate([90, 0, 0]).translate([-L / 2 + T, T * 0.4, T])
    return [(body, "bracket", False), (gusset, "gusset", True)]


def revolved(p: dict) -> list[tuple[mf.Manifold, str, bool]]:
    steps = p["steps"]  # list of (radius, height)
    z, solids = 0.0, []
    for r, h in steps:
        solids.append(_cyl(r, h, (0, 0, z), 48))
        z += h
    body = mf.Manifold.batch_boolean(solids[:1] + solids[1:-1], mf.OpType.Add) if len(solids) > 2 else solids[0]
    bore = _cyl(p["bore"], z * 3, (0, 0, -z))
    holes = [_cyl(p["hole_r"], steps[0][1] * 3, (np.cos(a) * steps[0][0] * 0.7, np.sin(a) * steps[0][0] * 0.7,
                                                   -steps[0][1])) for a in np.linspace(0, 2 * np.pi, p["n_holes"],
                                                                                       endpoint=False)]
    body = body - mf.Manifold.batch_boolean([bore, *holes], mf.OpType.Add)
    collar = solids[-1] - bore if len(solids) > 1 else None
    parts = [(body, "hub", False)]
    if collar is not None:
        parts.append((collar, "collar", True))
    return parts


def gear(p: dict) -> list[tuple[mf.Manifold, str, bool]]:
    n, R, T = p["teeth"], p["R"], p["T"]
    ang = np.linspace(0, 2 * np.pi, n * 4, endpoint=False)
    rad = np.where((np.arange(n * 4) // 2) % 2 == 0, R, R * p["root"])
    outline = mf.CrossSection([np.stack([rad * np.cos(ang), rad * np.sin(ang)], 1).tolist()])
    body = outline.extrude(T) - _cyl(p["bore"], T * 3, (0, 0, -T))
    if p["spokes"]:
        cut = [_cyl(R * 0.16, T * 3, (np.cos(a) * R * 0.5, np.sin(a) * R * 0.5, -T))
               for a in np.linspace(0, 2 * np.pi, p["spokes"], endpoint=False)]
        body = body - mf.Manifold.batch_boolean(cut, mf.OpType.Add)
    hub = _cyl(p["bore"] * 1.8, T * p["hub_h"], (0, 0, T * 0.5)) - _cyl(p["bore"], T * 5, (0, 0, -T))
    return [(body, "gear", False), (hub, "hub", True)]


def block(p: dict) -> list[tuple[mf.Manifold, str, bool]]:
    L, W, H = p["L"], p["W"], p["H"]
    body = mf.Manifold.cube([L, W, H]).translate([-L / 2, -W / 2, 0])
    pocket = mf.Manifold.cube([L * p["pocket"], W * 0.5, H]).translate([-L * p["pocket"] / 2, -W * 0.25, H * 0.5])
    chamfer = mf.Manifold.cube([L, W, H]).rotate([45, 0, 0]).translate([-L / 2, W / 2, H * p["chamfer"]])
    body = body - pocket - chamfer - _cyl(p["hole_r"], H * 3, (L * 0.35, 0, -H))
    parts = [(body, "block", False)]
    rib = mf.Manifold.cube([L * 0.8, T := min(W, H) * 0.15, H * 0.5]).translate([-L * 0.4, -W / 2 - T, 0])
    parts.append((rib, "rib", True))
    boss = _cyl(p["boss_r"], H * 0.4, (-L * 0.32, 0, H))
    parts.append((boss, "boss", True))
    return parts


FAMILIES = {"plate": plate, "bracket": bracket, "revolved": revolved, "gear": gear, "block": block}


def sample_params(family: str, rng: np.random.Generator) -> dict:
    U = lambda a, b: float(rng.uniform(a, b))  # noqa: E731
    if family == "plate":
        return dict(L=U(0.12, 0.2), W=U(0.06, 0.12), T=U(0.01, 0.025), corner=U(0.002, 0.03),
                    n_holes=int(rng.integers(0, 4)), hole_r=U(0.006, 0.012), n_bosses=int(rng.integers(1, 3)),
                    boss_r=U(0.01, 0.018), boss_h=U(0.02, 0.05))
    if family == "bracket":
        return dict(L=U(0.1, 0.16), W=U(0.05, 0.09), T=U(0.01, 0.02), H=U(0.06, 0.12), n_holes=int(rng.integers(1, 4)),
                    hole_r=U(0.005, 0.01), gusset=U(0.3, 0.6))
    if family == "revolved":
        n = int(rng.integers(2, 5))
        steps = [(U(0.04, 0.07), U(0.012, 0.03))] + [(U(0.015, 0.045), U(0.015, 0.05)) for _ in range(n - 1)]
        return dict(steps=steps, bore=U(0.004, 0.01), hole_r=U(0.003, 0.006), n_holes=int(rng.integers(0, 7)))
    if family == "gear":
        return dict(teeth=int(rng.integers(8, 24)), R=U(0.05, 0.09), root=U(0.78, 0.9), T=U(0.012, 0.03),
                    bore=U(0.006, 0.015), spokes=int(rng.choice([0, 0, 3, 4, 5, 6])), hub_h=U(1.4, 2.5))
    if family == "block":
        return dict(L=U(0.1, 0.16), W=U(0.06, 0.1), H=U(0.04, 0.08), pocket=U(0.2, 0.5), chamfer=U(0.6, 1.2),
                    hole_r=U(0.005, 0.012), boss_r=U(0.01, 0.02))
    raise ValueError(f"unknown part family {family!r}")


def perturb(family: str, params: dict, rng: np.random.Generator, amount: float) -> dict:
    """A similar part: every continuous parameter scaled by 1 +- amount; integer counts may change by 1."""
    def jitter(v):
        if isinstance(v, bool):
            return v
        if isinstance(v, int):
            return max(0, v + int(rng.integers(-1, 2))) if rng.random() < amount * 3 else v
        if isinstance(v, float):
            return v * float(1 + rng.uniform(-amount, amount))
        if isinstance(v, list):
            return [jitter(x) for x in v]
        if isinstance(v, tuple):
            return tuple(jitter(x) for x in v)
        return v
    out = {k: jitter(v) for k, v in params.items()}
    if family == "gear":
        out["teeth"] = max(6, out["teeth"])
    return out


def build_part(family: str, params: dict, rng: np.random.Generator, materials: list[Material] | None = None) -> Shape:
    solids = FAMILIES[family](params)
    parts = []
    for solid, name, movable in solids:
        if solid.is_empty():
            continue
        parts.append(Part(to_trimesh(solid), 1 if movable and len(solids) > 1 and rng.random() < 0.3 else 0, name,
                          movable))
    if materials is None:  # metals and plastics: muted colours, stronger highlights
        base = Material(color=random_color(rng, saturated=rng.random() < 0.4), specular=float(rng.uniform(0.3, 0.8)),
                        shininess=float(rng.uniform(20, 80)))
        materials = [base, Material(color=random_color(rng, saturated=rng.random() < 0.4), specular=base.specular,
                                    shininess=base.shininess)]
    return Shape(parts, f"part/{family}", materials, params={"family": family, **params})


def make_part(seed: int) -> Shape:
    """The mechanical part of a seed (thousands of distinct shapes: one per seed)."""
    rng = np.random.default_rng(seed)
    family = str(rng.choice(list(FAMILIES)))
    return build_part(family, sample_params(family, rng), rng)
