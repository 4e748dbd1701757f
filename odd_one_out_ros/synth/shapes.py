"""Procedural shapes made of parts: toy-like categories and CAD-like mechanical parts.

A Shape is a list of Parts (closed triangle meshes that may overlap, each with a material index)
in the shape's own frame: z up, resting on z = 0, centred on x = y = 0, metres. Parts marked
`movable` are the ones anomalies may move, turn, remove or recolour (handles, wheels, ears, bosses).
Every builder takes a numpy Generator and returns a new random instance of its category.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import trimesh

from .materials import Material, random_material


@dataclass
class Part:
    mesh: trimesh.Trimesh
    material: int = 0
    name: str = "body"
    movable: bool = False


@dataclass
class Shape:
    parts: list[Part]
    category: str
    materials: list[Material] = field(default_factory=list)
    shape_id: str = ""
    params: dict = field(default_factory=dict)

    def copy(self) -> "Shape":
        return replace(self, parts=[replace(p, mesh=p.mesh.copy()) for p in self.parts],
                       materials=list(self.materials), params=dict(self.params))

    def mesh(self) -> trimesh.Trimesh:
        """All parts concatenated (overlaps kept; fine for rendering and bounds)."""
        return trimesh.util.concatenate([p.mesh for p in self.parts])

    @property
    def bounds(self) -> np.ndarray:
        return self.mesh().bounds

    def normalized(self, max_extent: float) -> "Shape":
        """Scaled so its largest extent is max_extent, resting on z = 0, centred in x and y."""
        lo, hi = self.bounds
        s = max_extent / float(np.max(hi - lo))
        T = np.eye(4)
        T[:3, :3] *= s
        T[:3, 3] = -s * np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
        out = self.copy()
        for p in out.parts:
            p.mesh.apply_transform(T)
        return out


# ----------------------------------------------------------------------------- primitives
def _at(mesh: trimesh.Trimesh, xyz=(0, 0, 0), rot=None) -> trimesh.Trimesh:
    if rot is not None:
        mesh.apply_transform(rot)
    mesh.apply_translation(xyz)
    return mesh


def box(ext, xyz=(0, 0, 0), rot=None):
    return _at(trimesh.creation.box(extents=ext), xyz, rot)


def cyl(r, h, xyz=(0, 0, 0), rot=None, sections=32):
    return _at(trimesh.creation.cylinder(radius=r, height=h, sections=sections), xyz, rot)


def cone(r, h, xyz=(0, 0, 0), rot=None, sections=32):
    return _at(trimesh.creation.cone(radius=r, height=h, sections=sections), xyz, rot)


def sphere(r, xyz=(0, 0, 0), scale=(1, 1, 1)):
    m = trimesh.creation.icosphere(subdivisions=3, radius=r)
    m.apply_scale(scale) if np.ndim(scale) == 0 else m.apply_transform(np.diag([*scale, 1.0]))
    return _at(m, xyz)


def torus(R, r, xyz=(0, 0, 0), rot=None):
    return _at(trimesh.creation.torus(major_radius=R, minor_radius=r, major_sections=40, minor_sections=16), xyz, rot)


def revolve(profile, sections=48):
    """Closed solid of revolution of a (r, z) profile running from the axis, out and back to the axis."""
    return trimesh.creation.revolve(np.asarray(profile, dtype=np.float64), sections=sections)


def rot_x(a):
    return trimesh.transformations.rotation_matrix(a, [1, 0, 0])


def rot_y(a):
    return trimesh.transformations.rotation_matrix(a, [0, 1, 0])


def rot_z(a):
    return trimesh.transformations.rotation_matrix(a, [0, 0, 1])


def U(rng, a, b):
    return float(rng.uniform(a, b))


# ----------------------------------------------------------------------------- toys: revolved
def _vessel_profile(rng, h, r_base, r_mid, r_top, wall, closed_top=False, neck=None):
    """(r, z) profile of a hollow vessel (outer wall up, inner wall down) or a solid one."""
    outer = [(0, 0), (r_base, 0), (r_mid, h * 0.5)]
    if neck:
        outer += [(neck, h * 0.8)]
    outer += [(r_top, h)]
    if closed_top:
        return outer + [(0, h)]
    inner = [(max(r_top - wall, 0.001), h)]
    if neck:  # the inner wall follows the neck too (without it the inner wall crossed the outer one there)
        inner += [(max(neck - wall, 0.001), h * 0.8)]
    inner += [(max(r_mid - wall, 0.001), h * 0.5), (max(r_base - wall, 0.001), wall), (0, wall)]
    return outer + inner


def cup(rng):
    h, r = U(rng, 0.08, 0.12), U(rng, 0.035, 0.05)
    body = revolve(_vessel_profile(rng, h, r * 0.85, r * 0.95, r, 0.006))
    handle = torus(h * 0.28, 0.007, (r * 1.05, 0, h * 0.5), rot_x(np.pi / 2))
    return [Part(body, 0, "body"), Part(handle, 1 if rng.random() < 0.5 else 0, "handle", True)]


def mug(rng):
    h, r = U(rng, 0.09, 0.12), U(rng, 0.04, 0.05)
    body = revolve(_vessel_profile(rng, h, r, r, r, 0.008))
    handle = box([0.012, 0.012, h * 0.6], (r + 0.03, 0, h * 0.5))
    arm1 = box([0.035, 0.012, 0.012], (r + 0.014, 0, h * 0.78))
    arm2 = box([0.035, 0.012, 0.012], (r + 0.014, 0, h * 0.22))
    return [Part(body, 0, "body"), Part(trimesh.util.concatenate([handle, arm1, arm2]), 1, "handle", True)]


def glass(rng):
    h, r = U(rng, 0.1, 0.16), U(rng, 0.03, 0.045)
    prof = [(0, 0), (r * 0.9, 0), (r * 0.9, 0.008), (0.006, 0.012), (0.005, h * 0.45), (r * 0.4, h * 0.5),
            (r, h * 0.75), (r * 0.95, h), (r * 0.95 - 0.004, h), (r - 0.004, h * 0.75), (0, h * 0.55)]
    return [Part(revolve(prof), 0, "body")]


def bottle(rng):
    h, r = U(rng, 0.15, 0.22), U(rng, 0.03, 0.045)
    body = revolve([(0, 0), (r, 0), (r, h * 0.6), (r * 0.35, h * 0.8), (r * 0.3, h * 0.95), (0, h * 0.95)])
    cap = cyl(r * 0.35, h * 0.08, (0, 0, h * 0.97))
    return [Part(body, 0, "body"), Part(cap, 1, "cap", True)]


def bowl(rng):
    h, r = U(rng, 0.04, 0.07), U(rng, 0.06, 0.09)
    prof = [(0, 0), (r * 0.5, 0), (r, h), (r - 0.006, h), (r * 0.5 - 0.006, 0.006), (0, 0.006)]
    return [Part(revolve(prof), 0, "body")]


def vase(rng):
    h, r = U(rng, 0.14, 0.22), U(rng, 0.035, 0.06)
    prof = _vessel_profile(rng, h, r * 0.6, r * U(rng, 1.0, 1.4), r * 0.7, 0.006, neck=r * 0.45)
    return [Part(revolve(prof), 0, "body")]


def plate(rng):
    r = U(rng, 0.08, 0.11)
    prof = [(0, 0), (r * 0.7, 0), (r, 0.018), (r, 0.022), (r - 0.01, 0.022), (r * 0.7 - 0.004, 0.006), (0, 0.006)]
    return [Part(revolve(prof, 64), 0, "body")]


def pawn(rng):
    h, r = U(rng, 0.1, 0.15), U(rng, 0.03, 0.04)
    body = revolve([(0, 0), (r, 0), (r, h * 0.1), (r * 0.6, h * 0.18), (r * 0.35, h * 0.6), (r * 0.55, h * 0.65),
                    (r * 0.3, h * 0.7), (0, h * 0.7)])
    head = sphere(r * 0.55, (0, 0, h * 0.7 + r * 0.45))
    return [Part(body, 0, "body"), Part(head, 0, "head", True)]


def mushroom(rng):
    h, r = U(rng, 0.08, 0.13), U(rng, 0.05, 0.08)
    stem = cyl(r * 0.3, h * 0.7, (0, 0, h * 0.35))
    cap = revolve([(0, h * 0.6), (r, h * 0.62), (r * 0.8, h * 0.85), (0, h)])
    return [Part(stem, 0, "stem"), Part(cap, 1, "cap", True)]


def spinning_top(rng):
    h, r = U(rng, 0.08, 0.12), U(rng, 0.04, 0.06)
    body = revolve([(0, 0), (r, h * 0.45), (r * 0.9, h * 0.6), (0, h * 0.62)])
    stick = cyl(0.006, h * 0.4, (0, 0, h * 0.8))
    return [Part(body, 0, "body"), Part(stick, 1, "stick", True)]


def lamp(rng):
    h, r = U(rng, 0.16, 0.24), U(rng, 0.05, 0.07)
    base = cyl(r * 0.7, 0.015, (0, 0, 0.0075))
    pole = cyl(0.006, h * 0.7, (0, 0, h * 0.35))
    shade = revolve([(0, h * 0.62), (r * 0.5, h * 0.62), (r, h * 0.95), (r - 0.004, h * 0.95),
                     (r * 0.5 - 0.004, h * 0.65), (0, h * 0.65)])
    return [Part(base, 0, "base"), Part(pole, 0, "pole"), Part(shade, 1, "shade", True)]


# ----------------------------------------------------------------------------- toys: composites
def _quadruped(rng, long_neck=False, woolly=False):
    L, W, H = U(rng, 0.12, 0.18), U(rng, 0.05, 0.08), U(rng, 0.05, 0.08)
    leg = U(rng, 0.04, 0.07)
    body = sphere(1.0, (0, 0, leg + H / 2), (L / 2, W / 2, H / 2)) if not woolly else \
        trimesh.util.concatenate([sphere(H * 0.35, (x, y, leg + H / 2 + z)) for x in (-L / 4, 0, L / 4)
                                  for y in (-W / 5, W / 5) for z in (0, H * 0.15)])
    parts = [Part(body, 0, "body")]
    r_leg = min(W, L) * 0.12
    for i, (x, y) in enumerate([(L * 0.3, W * 0.3), (L * 0.3, -W * 0.3), (-L * 0.3, W * 0.3), (-L * 0.3, -W * 0.3)]):
        parts.append(Part(cyl(r_leg, leg + H * 0.3, (x, y, (leg + H * 0.3) / 2)), 1 if woolly else 0, f"leg{i}", True))
    neck_h = H * (1.2 if long_neck else 0.4)
    head = sphere(1.0, (L * 0.55, 0, leg + H * 0.7 + neck_h), (H * 0.45, W * 0.35, H * 0.35))
    parts.append(Part(head, 1 if woolly else 0, "head", True))
    if long_neck:
        parts.append(Part(cyl(W * 0.15, neck_h + H * 0.3, (L * 0.45, 0, leg + H * 0.6 + neck_h / 2), rot_y(0.35)), 0,
                          "neck", True))
    for s in (-1, 1):
        ear = cone(H * 0.1, H * 0.25, (L * 0.55, s * W * 0.22, leg + H * 0.95 + neck_h))
        parts.append(Part(ear, 1, f"ear{s}", True))
    parts.append(Part(cyl(H * 0.05, L * 0.3, (-L * 0.62, 0, leg + H * 0.7), rot_y(-0.8)), 1, "tail", True))
    return parts


def dog(rng):
    return _quadruped(rng)


def sheep(rng):
    return _quadruped(rng, woolly=True)


def giraffe(rng):
    return _quadruped(rng, long_neck=True)


def penguin(rng):
    h, r = U(rng, 0.12, 0.17), U(rng, 0.035, 0.05)
    body = sphere(1.0, (0, 0, h * 0.4), (r, r * 0.9, h * 0.4))
    belly = sphere(1.0, (r * 0.25, 0, h * 0.38), (r * 0.8, r * 0.75, h * 0.33))
    head = sphere(r * 0.7, (0, 0, h * 0.85))
    beak = cone(r * 0.2, r * 0.5, (r * 0.6, 0, h * 0.85), rot_y(np.pi / 2))
    wings = [Part(sphere(1.0, (0, s * r * 0.95, h * 0.45), (r * 0.4, r * 0.12, h * 0.25)), 0, f"wing{s}", True)
             for s in (-1, 1)]
    feet = Part(box([r * 0.6, r * 1.0, 0.01], (r * 0.3, 0, 0.005)), 2, "feet", True)
    return [Part(body, 0, "body"), Part(belly, 1, "belly"), Part(head, 0, "head", True), Part(beak, 2, "beak", True),
            *wings, feet]


def bird(rng):
    L, r = U(rng, 0.1, 0.16), U(rng, 0.03, 0.045)
    leg = U(rng, 0.02, 0.04)
    body = sphere(1.0, (0, 0, leg + r), (L / 2, r, r))
    head = sphere(r * 0.7, (L * 0.45, 0, leg + r * 1.8))
    beak = cone(r * 0.25, r * 0.7, (L * 0.45 + r * 0.6, 0, leg + r * 1.8), rot_y(np.pi / 2))
    tail = box([L * 0.35, r * 0.9, 0.008], (-L * 0.55, 0, leg + r * 1.2), rot_y(-0.4))
    legs = [Part(cyl(0.004, leg + r * 0.5, (0, s * r * 0.4, (leg + r * 0.5) / 2)), 2, f"leg{s}", True) for s in (-1, 1)]
    wings = [Part(sphere(1.0, (-L * 0.05, s * r, leg + r * 1.2), (L * 0.35, r * 0.15, r * 0.5)), 1, f"wing{s}", True)
             for s in (-1, 1)]
    return [Part(body, 0, "body"), Part(head, 0, "head", True), Part(beak, 2, "beak", True),
            Part(tail, 1, "tail", True),
            *legs, *wings]


def snowman(rng):
    r1 = U(rng, 0.04, 0.055)
    r2, r3 = r1 * U(rng, 0.65, 0.8), r1 * U(rng, 0.45, 0.6)
    z1, z2 = r1, 2 * r1 + r2 * 0.8
    z3 = z2 + r2 + r3 * 0.8
    hat = trimesh.util.concatenate([cyl(r3 * 0.9, 0.006, (0, 0, z3 + r3 * 0.8)),
                                    cyl(r3 * 0.6, r3 * 0.9, (0, 0, z3 + r3 * 1.2))])
    nose = cone(r3 * 0.18, r3 * 0.9, (r3 * 0.85, 0, z3), rot_y(np.pi / 2))
    arms = [Part(cyl(0.004, r1 * 1.4, (0, s * (r2 + r1 * 0.5), z2), rot_x(s * 1.1)), 2, f"arm{s}", True)
            for s in (-1, 1)]
    return [Part(sphere(r1, (0, 0, z1)), 0, "base"), Part(sphere(r2, (0, 0, z2)), 0, "middle"),
            Part(sphere(r3, (0, 0, z3)), 0, "head", True), Part(hat, 1, "hat", True), Part(nose, 2, "nose", True),
            *arms]


def car(rng, truck=False):
    L, W, H = U(rng, 0.14, 0.2), U(rng, 0.06, 0.09), U(rng, 0.03, 0.045)
    rw = H * 0.55
    body = box([L, W, H], (0, 0, rw + H / 2 - rw * 0.3))
    if truck:
        cab = box([L * 0.3, W * 0.95, H * 0.9], (L * 0.33, 0, rw + H * 1.25 - rw * 0.3))
        cargo = box([L * 0.6, W, H * 0.8], (-L * 0.18, 0, rw + H * 1.2 - rw * 0.3))
        extra = [Part(cab, 1, "cab", True), Part(cargo, 0, "cargo", True)]
    else:
        extra = [Part(box([L * 0.5, W * 0.85, H * 0.7], (-L * 0.05, 0, rw + H * 1.15 - rw * 0.3)), 1, "cabin", True)]
    wheels = [Part(cyl(rw, W * 0.18, (x, y, rw), rot_x(np.pi / 2), 24), 2, f"wheel{i}", True)
              for i, (x, y) in enumerate([(L * 0.32, W / 2), (L * 0.32, -W / 2), (-L * 0.32, W / 2),
                                          (-L * 0.32, -W / 2)])]
    return [Part(body, 0, "body"), *extra, *wheels]


def truck(rng):
    return car(rng, truck=True)


def train(rng):
    L, r = U(rng, 0.15, 0.2), U(rng, 0.025, 0.035)
    rw = r * 0.7
    base = box([L, r * 2.2, r * 0.5], (0, 0, rw + r * 0.25))
    boiler = cyl(r, L * 0.6, (L * 0.15, 0, rw + r * 0.5 + r), rot_y(np.pi / 2))
    cab = box([L * 0.3, r * 2.2, r * 2.6], (-L * 0.33, 0, rw + r * 0.5 + r * 1.3))
    chimney = cyl(r * 0.35, r * 1.2, (L * 0.33, 0, rw + r * 2.4 + r * 0.5))
    wheels = [Part(cyl(rw, r * 0.3, (x, y, rw), rot_x(np.pi / 2), 24), 2, f"wheel{i}", True)
              for i, (x, y) in enumerate([(L * s, t * r * 1.1) for s in (0.35, 0.05, -0.3) for t in (1, -1)])]
    return [Part(base, 2, "base"), Part(boiler, 0, "boiler"), Part(cab, 1, "cab", True),
            Part(chimney, 2, "chimney", True), *wheels]


def airplane(rng):
    L, r = U(rng, 0.16, 0.22), U(rng, 0.012, 0.02)
    fus = cyl(r, L, (0, 0, r * 2), rot_y(np.pi / 2))
    nose = cone(r, r * 2.5, (L / 2, 0, r * 2), rot_y(np.pi / 2))
    wing = box([L * 0.22, L * U(rng, 0.7, 1.0), r * 0.4], (0, 0, r * 2))
    tailw = box([L * 0.1, L * 0.35, r * 0.3], (-L * 0.45, 0, r * 2))
    fin = box([L * 0.12, r * 0.3, L * 0.15], (-L * 0.45, 0, r * 2 + L * 0.075))
    return [Part(fus, 0, "fuselage"), Part(nose, 1, "nose", True), Part(wing, 1, "wing", True),
            Part(tailw, 1, "tailplane", True), Part(fin, 2, "fin", True)]


def boat(rng):
    L, W = U(rng, 0.15, 0.2), U(rng, 0.05, 0.07)
    hull = trimesh.convex.convex_hull(np.array([[-L / 2, -W / 2, 0.03], [-L / 2, W / 2, 0.03], [L / 2, 0, 0.035],
                                                [-L * 0.45, -W * 0.3, 0], [-L * 0.45, W * 0.3, 0], [L * 0.3, 0, 0]]))
    mast = cyl(0.004, L * 0.6, (0, 0, 0.03 + L * 0.3))
    sail = trimesh.convex.convex_hull(np.array([[0.005, -0.002, 0.04], [0.005, 0.002, 0.04],
                                                [0.005, 0, 0.03 + L * 0.55],
                                                [-L * 0.3, -0.002, 0.045], [-L * 0.3, 0.002, 0.045]]))
    return [Part(hull, 0, "hull"), Part(mast, 2, "mast", True), Part(sail, 1, "sail", True)]


def rocket(rng):
    h, r = U(rng, 0.15, 0.22), U(rng, 0.018, 0.028)
    body = cyl(r, h * 0.65, (0, 0, h * 0.1 + h * 0.325))
    nose = cone(r, h * 0.25, (0, 0, h * 0.75))
    fins = [Part(box([r * 1.6, 0.005, h * 0.2], (np.cos(a) * r * 1.2, np.sin(a) * r * 1.2, h * 0.12), rot_z(a)), 1,
                 f"fin{i}", True) for i, a in enumerate(np.linspace(0, 2 * np.pi, 3, endpoint=False))]
    return [Part(body, 0, "body"), Part(nose, 1, "nose", True), *fins]


def robot(rng):
    h = U(rng, 0.14, 0.2)
    w = h * U(rng, 0.35, 0.45)
    legs = [Part(box([w * 0.3, w * 0.3, h * 0.35], (0, s * w * 0.25, h * 0.175)), 1, f"leg{s}", True) for s in (-1, 1)]
    torso = box([w * 0.6, w, h * 0.35], (0, 0, h * 0.35 + h * 0.175))
    head = box([w * 0.5, w * 0.6, h * 0.2], (0, 0, h * 0.7 + h * 0.1))
    arms = [Part(box([w * 0.2, w * 0.2, h * 0.32], (0, s * (w * 0.6), h * 0.5)), 1, f"arm{s}", True) for s in (-1, 1)]
    antenna = cyl(0.003, h * 0.1, (0, 0, h * 0.9 + h * 0.05))
    eye = box([0.004, w * 0.4, h * 0.05], (w * 0.25, 0, h * 0.82))
    return [Part(torso, 0, "torso"), Part(head, 0, "head", True), *legs, *arms, Part(antenna, 2, "antenna", True),
            Part(eye, 2, "visor", True)]


def chair(rng):
    s, h = U(rng, 0.08, 0.12), U(rng, 0.07, 0.1)
    seat = box([s, s, 0.012], (0, 0, h))
    legs = [Part(box([0.01, 0.01, h], (x * s * 0.42, y * s * 0.42, h / 2)), 0, f"leg{i}", True)
            for i, (x, y) in enumerate([(1, 1), (1, -1), (-1, 1), (-1, -1)])]
    back = box([0.012, s, h * U(rng, 0.8, 1.2)], (-s * 0.45, 0, h + h * 0.5))
    return [Part(seat, 1, "seat"), *legs, Part(back, 1, "back", True)]


def table(rng):
    L, W, h = U(rng, 0.14, 0.2), U(rng, 0.08, 0.12), U(rng, 0.07, 0.1)
    top = box([L, W, 0.012], (0, 0, h))
    legs = [Part(cyl(0.006, h, (x * L * 0.42, y * W * 0.4, h / 2)), 1, f"leg{i}", True)
            for i, (x, y) in enumerate([(1, 1), (1, -1), (-1, 1), (-1, -1)])]
    return [Part(top, 0, "top"), *legs]


def house(rng):
    L, W, H = U(rng, 0.1, 0.15), U(rng, 0.08, 0.12), U(rng, 0.06, 0.09)
    walls = box([L, W, H], (0, 0, H / 2))
    roof = trimesh.convex.convex_hull(np.array([[-L * 0.55, -W * 0.55, H], [L * 0.55, -W * 0.55, H],
                                                [-L * 0.55, W * 0.55, H], [L * 0.55, W * 0.55, H],
                                                [-L * 0.55, 0, H + W * 0.45], [L * 0.55, 0, H + W * 0.45]]))
    chimney = box([0.015, 0.015, W * 0.4], (L * 0.25, W * 0.2, H + W * 0.3))
    door = box([0.004, W * 0.25, H * 0.5], (L / 2, 0, H * 0.25))
    return [Part(walls, 0, "walls"), Part(roof, 1, "roof", True), Part(chimney, 1, "chimney", True),
            Part(door, 2, "door", True)]


def key(rng):
    L = U(rng, 0.1, 0.14)
    t = 0.008
    ring = torus(L * 0.14, 0.008, (-L * 0.4, 0, t), None)
    shaft = box([L * 0.7, 0.012, t * 1.6], (L * 0.1, 0, t))
    teeth = [Part(box([0.008, U(rng, 0.01, 0.02), t * 1.6], (L * (0.3 + 0.06 * i), -0.012, t)), 0, f"tooth{i}", True)
             for i in range(int(rng.integers(2, 5)))]
    return [Part(ring, 0, "ring", True), Part(shaft, 0, "shaft"), *teeth]


def hammer(rng):
    L = U(rng, 0.14, 0.2)
    handle = cyl(0.008, L, (0, 0, 0.008), rot_y(np.pi / 2))
    head = box([0.025, L * 0.35, 0.03], (L * 0.45, 0, 0.015))
    return [Part(handle, 1, "handle"), Part(head, 0, "head", True)]


def dumbbell(rng):
    L, r = U(rng, 0.12, 0.17), U(rng, 0.025, 0.035)
    bar = cyl(0.007, L, (0, 0, r), rot_y(np.pi / 2))
    weights = [Part(cyl(r, L * 0.15, (s * L * 0.4, 0, r), rot_y(np.pi / 2)), 0, f"weight{s}", True) for s in (-1, 1)]
    return [Part(bar, 1, "bar"), *weights]


def tree(rng):
    h = U(rng, 0.15, 0.22)
    r = h * U(rng, 0.25, 0.35)
    trunk = cyl(r * 0.15, h * 0.3, (0, 0, h * 0.15))
    layers = [Part(cone(r * (1 - 0.25 * i), h * 0.35, (0, 0, h * (0.25 + 0.2 * i))), 1, f"foliage{i}", i > 0)
              for i in range(3)]
    return [Part(trunk, 0, "trunk"), *layers]


def teapot(rng):
    h, r = U(rng, 0.08, 0.11), U(rng, 0.05, 0.065)
    body = revolve([(0, 0), (r * 0.7, 0), (r, h * 0.45), (r * 0.6, h), (0, h)])
    lid = sphere(r * 0.25, (0, 0, h))
    spout = cyl(0.008, r * 0.9, (r * 1.05, 0, h * 0.55), rot_y(0.9))
    handle = torus(h * 0.28, 0.007, (-r * 0.95, 0, h * 0.5), rot_x(np.pi / 2))
    return [Part(body, 0, "body"), Part(lid, 1, "lid", True), Part(spout, 0, "spout", True),
            Part(handle, 0, "handle", True)]


TOY_CATEGORIES = {f.__name__: f for f in (
    cup, mug, glass, bottle, bowl, vase, plate, pawn, mushroom, spinning_top, lamp, teapot,  # revolved
    dog, sheep, giraffe, penguin, bird, snowman, car, truck, train, airplane, boat, rocket, robot,  # composites
    chair, table, house, key, hammer, dumbbell, tree)}
# categories held out for the unseen-category test split (as the paper's ToysAD-8K: cup, glass, key, mug,
# penguin, plate, robot, sheep, train, ... are unseen there too)
UNSEEN_TOY_CATEGORIES = ("cup", "glass", "key", "mug", "penguin", "plate", "robot", "sheep", "train")


def make_toy(category: str, rng: np.random.Generator) -> Shape:
    if category not in TOY_CATEGORIES:
        raise ValueError(f"unknown toy category {category!r}")
    parts = TOY_CATEGORIES[category](rng)
    n_mat = max(p.material for p in parts) + 1
    return Shape(parts, category, [random_material(rng) for _ in range(n_mat)])
