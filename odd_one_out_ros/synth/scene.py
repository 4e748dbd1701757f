"""Scene composition: N copies of one shape on a floor, a strict minority of them anomalous, 20 cameras.

Placement: random yaw, a stable resting pose (toys stand upright; mechanical and user parts take one
of their most likely resting poses from trimesh), one scale per scene (+-3 % per object), no
collisions (convex outlines seen from above, min_gap apart). Anomalies: at most (N - 1) // 2 objects,
none in `p_clean` of the scenes; each anomaly must be visible: rendered alone in its final pose, the
anomalous object must differ from the normal one (silhouette, depth > 5 mm, or albedo) in >= `min_visible_px` pixels of
a 64 x 64 view from at least one camera, otherwise another anomaly is drawn.
Frames: docs/frames.md (world z up, floor z = 0, boxes = centre, extents, yaw).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely
import trimesh

from ..geometry import Box3D, PinholeCamera, look_at
from ..geometry.transforms import yaw_to_matrix
from . import anomalies
from .look import LOOKS, Look, random_look
from .materials import Material, random_floor
from .parts import make_part
from .render import Lighting, Renderer, RenderMesh
from .shapes import TOY_CATEGORIES, UNSEEN_TOY_CATEGORIES, Part, Shape, make_toy

TOY_ANOMALIES = anomalies.GEOMETRIC + anomalies.PART_LEVEL
PART_ANOMALIES = anomalies.ANOMALY_TYPES


@dataclass
class GeneratorConfig:
    kind: str = "toys"
    """"toys", "parts" or "custom" (meshes from `shapes_dir`)"""
    views: int = 20
    size: int = 256
    objects: tuple[int, int] = (3, 12)
    """inclusive range of objects per scene"""
    apriltag_board: bool = False
    board_file: str = ""
    """board YAML for apriltag_board ("" = the shipped calibration/tray_board_12tags.yaml)"""
    shapes_dir: str = ""
    supersample: int = 2
    area_radius: float = 0.38
    """objects are placed inside this disc (m); fits the cpu model's 0.96 m grid"""
    object_size: tuple[float, float] = (0.2, 0.3)
    """largest extent of an object (m), before crowding shrinks it"""
    crowd_objects: float = 8.0
    """scenes with more objects than this scale them by sqrt(crowd_objects / n) (then by 0.9 per failed packing)"""
    p_clean: float = 0.15
    """fraction of scenes without any anomaly"""
    min_gap: float = 0.03
    """smallest distance between two objects seen from above (convex outlines, m): 1.5 voxels of the cpu grid"""
    min_visible_px: int = 6
    camera_distance: tuple[float, float] = (0.58, 0.78)
    camera_elevation_deg: tuple[float, float] = (20.0, 60.0)
    board_camera_distance: tuple[float, float] = (0.85, 1.15)
    """camera distance with apriltag_board: the tags lie on a 1 m square around the tray and must be in view"""
    focal: float = 0.8333
    """focal length / image width (ToysAD: 213.33 / 256)"""
    anomaly_types: tuple[str, ...] = ()
    """draw anomalies only of these types (e.g. the structural translated_part, rotated_part, missing_part for a
    development set); () = every type the kind has"""
    look: str = "classic"
    """classic (the shipped model's training data) or real (look.random_look per scene: crease-angle normals, gamma,
    soft shadows, bounce light, finishes, camera effects)"""


@dataclass
class PlacedObject:
    """One object the generator put in a scene: its mesh, pose and labels (what the scene's metadata records;
    read back as data.scene_meta.SceneObject)."""

    name: str
    shape: Shape  # in the object's local frame (box centre at the origin, z up)
    yaw: float
    location: np.ndarray  # (3,) world position of the local origin = box centre
    box: Box3D
    anomalous: bool
    anomaly_type: str
    category: str
    shape_id: str
    shape_to_local: np.ndarray = field(default_factory=lambda: np.eye(4))
    """(4, 4) the shape's own frame (the unit-size shape every copy of the scene is made from) -> the object's local
    frame: resting pose times scale, then the shift that centres the box; copies relate through it"""

    def local_to_world(self) -> np.ndarray:
        T = np.eye(4)
        T[:3, :3] = yaw_to_matrix(self.yaw)
        T[:3, 3] = self.location
        return T

    def shape_to_world(self) -> np.ndarray:
        """(4, 4) the shape's own frame -> world: yaw x resting pose x scale (the official layout's
        rotation_matrix, Blender's matrix_world)."""
        return self.local_to_world() @ self.shape_to_local


@dataclass
class Scene:
    objects: list[PlacedObject]
    cameras: list[PinholeCamera]
    floor: Material
    lighting: Lighting
    board: dict | None = None  # {"image": (H, W, 3) float, "extent": (x0, y0, x1, y1), "yaml": dict}
    info: dict = field(default_factory=dict)
    look: Look = field(default_factory=Look)


# ----------------------------------------------------------------------------- shapes
def load_user_shapes(directory: str | Path) -> list[tuple[str, Shape]]:
    """Meshes (.obj/.stl/.ply/.off) of a folder as shapes; each connected component is a part.

    Raises ValueError naming the folder or the file for an empty folder or an unreadable mesh.
    """
    d = Path(directory)
    if not d.is_dir():
        raise ValueError(f"{d}: --shapes must be a folder of meshes")
    files = sorted(p for p in d.iterdir() if p.suffix.lower() in (".obj", ".stl", ".ply", ".off"))
    if not files:
        raise ValueError(f"{d}: no .obj/.stl/.ply/.off meshes in this folder")
    shapes = []
    for f in files:
        try:
            mesh = trimesh.load(f, force="mesh", process=True)
        except Exception as e:  # trimesh raises many types for bad files
            raise ValueError(f"{f}: cannot read mesh ({type(e).__name__}: {e})") from None
        if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0 or not np.all(np.isfinite(mesh.vertices)):
            raise ValueError(f"{f}: not a triangle mesh with faces")
        comps = sorted(mesh.split(only_watertight=False), key=lambda m: -m.area)
        parts = [Part(c, 0, f"part{i}", movable=i > 0) for i, c in enumerate(comps[:12])]
        from .materials import random_material

        rng = np.random.default_rng(zlib.crc32(f.name.encode()))  # stable across processes, unlike hash()
        shapes.append((f.stem, Shape(parts, f"user/{f.stem}", [random_material(rng)], shape_id=f.name)))
    return shapes


def load_floor_board(path: str | Path = "", px_per_metre: float = 1000.0) -> dict:
    """An AprilTag board as a floor decal: {"image": (H, W, 3) float in [0, 1], "alpha": (H, W) bool
    (the tags and their white quiet zone), "extent": (x0, y0, x1, y1) world metres, "yaml": dict}.

    The board frame is the world frame (docs/frames.md), so the decal is centred on the origin.
    """
    import cv2
    import yaml

    from ..calibration.board import board_image, load_board
    from ..resources import share_dir

    path = Path(path) if path else share_dir() / "calibration" / "tray_board_12tags.yaml"
    board = load_board(path)
    img = board_image(board, px_per_metre)
    h, w = img.shape
    alpha = np.zeros((h, w), np.uint8)
    for t in board.tags:  # the black square plus a white quiet zone of one bit cell (8 cells per square)
        quiet = t.corners()[:, :2] * 1.0
        quiet = (quiet - [t.x, t.y]) * 1.25 + [t.x, t.y]
        px = np.stack([(quiet[:, 0] + board.sheet_size[0] / 2) * px_per_metre,
                       (board.sheet_size[1] / 2 - quiet[:, 1]) * px_per_metre], axis=1)
        cv2.fillConvexPoly(alpha, np.round(px).astype(np.int32), 1)
    W, H = board.sheet_size
    return {"image": np.repeat(img[..., None], 3, axis=2).astype(np.float64) / 255.0, "alpha": alpha.astype(bool),
            "extent": (-W / 2, -H / 2, W / 2, H / 2), "yaml": {"file": path.name, **yaml.safe_load(path.read_text())}}


def stable_rotations(shape: Shape) -> tuple[list[np.ndarray], np.ndarray]:
    """The 3 likeliest resting orientations (4, 4) of a shape and their probabilities (trimesh's
    stable poses of its convex hull); the identity when trimesh finds none."""
    try:
        transforms, probs = trimesh.poses.compute_stable_poses(shape.mesh().convex_hull, n_samples=1)
    except Exception:
        return [np.eye(4)], np.ones(1)
    if len(probs) == 0:
        return [np.eye(4)], np.ones(1)
    top = np.argsort(-probs)[:3]
    rots = []
    for i in top:
        T = transforms[i].copy()
        T[:3, 3] = 0
        rots.append(T)
    return rots, probs[top] / probs[top].sum()


def _outline(shape: Shape) -> np.ndarray:
    """(K, 2) convex outline of a shape seen from above (its own frame), counter-clockwise."""
    xy = np.asarray(shape.mesh().vertices)[:, :2]
    return np.asarray(shapely.MultiPoint(xy).convex_hull.exterior.coords)[:-1]


def _usable(shape: Shape) -> bool:
    """A shape with faces and finite, non-degenerate bounds (anomaly operators on user meshes can return less)."""
    if not shape.parts or any(len(p.mesh.faces) == 0 for p in shape.parts):
        return False
    b = shape.bounds
    return b is not None and bool(np.all(np.isfinite(b))) and bool(np.all(b[1] - b[0] > 1e-6))


def _posed(shape: Shape, R: np.ndarray, scale: float) -> tuple[Shape, np.ndarray, np.ndarray]:
    """Rotate, scale and centre a shape: box centre at the origin; returns (shape, box size, local centre c): a point
    p of `shape` goes to scale R p - c."""
    out = shape.copy()
    T = R.copy()
    T[:3, :3] *= scale
    for p in out.parts:
        p.mesh.apply_transform(T)
    lo, hi = out.bounds
    c = (lo + hi) / 2
    for p in out.parts:
        p.mesh.apply_translation(-c)
    return out, hi - lo, c


# ----------------------------------------------------------------------------- rendering helpers
def scene_meshes(objects: list[PlacedObject], floor: Material | None, board: dict | None = None,
                 crease_deg: float = 180.0) -> list[RenderMesh]:
    """The floor (when given) and every object part as render meshes in the world frame. crease_deg < 180: shading
    normals are smoothed only across edges flatter than that (trimesh.graph.smooth_shade splits the others)."""
    meshes = []
    if floor is not None:
        s = 6.0
        v = np.array([[-s, -s, 0], [s, -s, 0], [s, s, 0], [-s, s, 0]], float)
        decal = (board["image"], tuple(board["extent"]), board["alpha"]) if board else None
        meshes.append(RenderMesh(v, np.array([[0, 1, 2], [0, 2, 3]]), np.tile([0.0, 0, 1], (4, 1)), floor, 0,
                                 np.eye(4), decal))
    for k, obj in enumerate(objects):
        T = obj.local_to_world()
        inv = np.linalg.inv(T)
        for part in obj.shape.parts:
            m = part.mesh if crease_deg >= 180 else trimesh.graph.smooth_shade(part.mesh, np.radians(crease_deg),
                                                                                 facet_minarea=None)
            verts = m.vertices @ T[:3, :3].T + T[:3, 3]
            normals = np.asarray(m.vertex_normals) @ T[:3, :3].T
            mat = obj.shape.materials[part.material]
            meshes.append(RenderMesh(verts, np.asarray(m.faces), normals, mat, k + 1, inv))
    return meshes


def _albedo_depth(renderer: Renderer, cam: PinholeCamera) -> tuple[np.ndarray, np.ndarray]:
    """Low-cost comparison render: albedo (H, W, 3) and depth (H, W) at pixel centres."""
    origin, dirs = cam.pixel_rays()
    d = dirs.reshape(-1, 3)
    ans = renderer._cast(np.broadcast_to(origin, d.shape), d)
    t = ans["t_hit"]
    hit = np.isfinite(t)
    alb = np.zeros((len(d), 3))
    if hit.any():
        alb[hit] = renderer.albedo_at(origin + t[hit, None] * d[hit], ans["primitive_ids"][hit])
    depth = np.zeros(len(d))
    depth[hit] = t[hit] * (d[hit] @ cam.T_cw.R[2])  # ray length -> camera z
    return alb.reshape(cam.height, cam.width, 3), depth.reshape(cam.height, cam.width)


def anomaly_visible_px(normal: PlacedObject, anomalous: PlacedObject, cameras: list[PinholeCamera],
                       res: int = 64) -> int:
    """Largest number of differing pixels over the cameras (64 x 64 renders of the object alone)."""
    r_n = Renderer(scene_meshes([normal], None), Lighting(np.array([0, 0, 1.0])))
    r_a = Renderer(scene_meshes([anomalous], None), Lighting(np.array([0, 0, 1.0])))
    best = 0
    for cam in cameras:
        c = cam.resized(res, res)
        an, dn = _albedo_depth(r_n, c)
        aa, da = _albedo_depth(r_a, c)
        diff = ((dn > 0) != (da > 0)) | ((dn > 0) & (da > 0) & ((np.abs(dn - da) > 0.005) |
                                                                (np.abs(an - aa).max(-1) > 0.15)))
        best = max(best, int(diff.sum()))
    return best


# ----------------------------------------------------------------------------- the scene
def square_intrinsics(size: int, focal: float = GeneratorConfig.focal) -> np.ndarray:
    """K (3, 3) of a size x size camera with focal length focal x size, principal point at the image centre."""
    return np.array([[focal * size, 0, size / 2 - 0.5], [0, focal * size, size / 2 - 0.5], [0, 0, 1]])


def make_cameras(cfg: GeneratorConfig, rng: np.random.Generator) -> list[PinholeCamera]:
    S = cfg.size
    K = square_intrinsics(S, cfg.focal)
    az0 = rng.uniform(0, 2 * np.pi)
    cams = []
    for i in range(cfg.views):
        az = az0 + 2 * np.pi * i / cfg.views + rng.normal(scale=0.05)
        el = np.radians(rng.uniform(*cfg.camera_elevation_deg))
        dist = rng.uniform(*(cfg.board_camera_distance if cfg.apriltag_board else cfg.camera_distance))
        eye = dist * np.array([np.cos(az) * np.cos(el), np.sin(az) * np.cos(el), np.sin(el)])
        target = np.array([*rng.normal(scale=0.04, size=2), 0.03])
        cams.append(PinholeCamera(K, S, S, look_at(eye, target)))
    return cams


def build_scene(cfg: GeneratorConfig, rng: np.random.Generator, categories: list[str] | None = None,
                user_shapes: list[tuple[str, Shape]] | None = None, board: dict | None = None) -> Scene:
    """One random scene (geometry, labels, cameras, lighting); deterministic for a given rng state."""
    n = int(rng.integers(cfg.objects[0], cfg.objects[1] + 1))
    if cfg.kind == "toys":
        category = str(rng.choice(categories or sorted(set(TOY_CATEGORIES) - set(UNSEEN_TOY_CATEGORIES))))
        inst_seed = int(rng.integers(1 << 31))
        normal = make_toy(category, np.random.default_rng(inst_seed))
        shape_id, kinds, upright = f"{category}_{inst_seed}", TOY_ANOMALIES, True
    elif cfg.kind == "parts":
        inst_seed = int(rng.integers(1 << 31))
        normal = make_part(inst_seed)
        category, shape_id, kinds, upright = normal.category, f"part_{inst_seed}", PART_ANOMALIES, False
    elif cfg.kind == "custom":
        if not user_shapes:
            raise ValueError("kind 'custom' needs user shapes (--shapes DIR)")
        name, normal = user_shapes[int(rng.integers(len(user_shapes)))]
        category, shape_id, kinds, upright = f"user/{name}", name, TOY_ANOMALIES, False
    else:
        raise ValueError(f"unknown kind {cfg.kind!r}")
    if cfg.anomaly_types:
        unknown = sorted(set(cfg.anomaly_types) - set(kinds))
        if unknown:
            raise ValueError(f"anomaly types {unknown} are not drawn for {cfg.kind}; choose from {list(kinds)}")
        kinds = tuple(cfg.anomaly_types)
    normal.shape_id = shape_id
    normal = normal.normalized(1.0)  # unit size; the scene scale comes below
    area = cfg.area_radius if board is None else min(cfg.area_radius, 0.36)  # inside the tray board's ring
    size = rng.uniform(*cfg.object_size) * min(1.0, np.sqrt(cfg.crowd_objects / n))
    n_anom = 0 if rng.random() < cfg.p_clean or n < 3 else int(rng.integers(1, (n - 1) // 2 + 1))
    labels = np.zeros(n, bool)
    labels[rng.choice(n, n_anom, replace=False)] = True
    cameras = make_cameras(cfg, rng)

    # poses and placement: random yaw and position, outlines seen from above at least min_gap apart and inside the
    # tray disc (retry with smaller objects if it is too crowded)
    rests, rest_p = ([np.eye(4)], np.ones(1)) if upright else stable_rotations(normal)
    for _attempt in range(20):
        objs, polys, ok = [], [], True
        for k in range(n):
            R = rests[int(rng.choice(len(rests), p=rest_p))]
            scale = size * rng.uniform(0.97, 1.03)
            shape, ext, c = _posed(normal, R, scale)
            to_local = np.eye(4)
            to_local[:3, :3], to_local[:3, 3] = scale * R[:3, :3], -c
            outline = _outline(shape)
            for _ in range(400):
                yaw = float(rng.uniform(-np.pi, np.pi))
                loc = np.array([*rng.uniform(-area, area, 2), ext[2] / 2])
                fp = outline @ yaw_to_matrix(yaw)[:2, :2].T + loc[:2]
                if np.hypot(fp[:, 0], fp[:, 1]).max() > area:
                    continue
                poly = shapely.Polygon(fp)
                if all(poly.distance(q) > cfg.min_gap for q in polys):
                    break
            else:
                ok = False
                break
            box = Box3D(loc, ext, yaw)
            polys.append(poly)
            objs.append(PlacedObject(f"object.{k:03d}" if k else "object", shape, yaw, loc, box,
                                    False, "", category, shape_id, to_local))
        if ok:
            break
        size *= 0.9
    else:
        raise RuntimeError("could not place the objects without collisions")

    # anomalies (strict minority), each checked for visibility
    for k in np.flatnonzero(labels):
        obj = objs[k]
        for _ in range(12):
            kind = str(rng.choice(kinds))
            try:
                # operate on the unit-size shape in the object's pose, then place it like the normal one
                an = anomalies.make_anomaly(obj.shape, kind, rng)
            except anomalies.Rejected:
                continue
            except Exception:  # e.g. a non-manifold user mesh for a boolean operator
                continue
            if not _usable(an):  # an operator left nothing (or a degenerate shape): draw another
                continue
            lo, hi = an.bounds
            c = (lo + hi) / 2
            for p in an.parts:
                p.mesh.apply_translation(-c)
            ext = hi - lo
            T = obj.local_to_world()
            # keep the anomalous object on the floor at the same spot
            loc = np.array([*(T[:3, :3] @ c + obj.location)[:2], ext[2] / 2])
            shift = np.eye(4)  # the normal's local frame -> the anomalous copy's: the operator's own move, then its
            shift[:3, 3] = an.params.pop(anomalies.REST_SHIFT, np.zeros(3)) - c  # box centred again
            cand = PlacedObject(obj.name, an, obj.yaw, loc, Box3D(loc, ext, obj.yaw), True, kind, category, shape_id,
                                shift @ obj.shape_to_local)
            if anomaly_visible_px(obj, cand, cameras) >= cfg.min_visible_px:
                objs[k] = cand
                break
    floor = random_floor(rng)
    el = np.radians(rng.uniform(35, 70))
    az = rng.uniform(0, 2 * np.pi)
    light = Lighting(np.array([np.cos(az) * np.cos(el), np.sin(az) * np.cos(el), np.sin(el)]),
                     sun=float(rng.uniform(0.6, 0.9)), ambient=float(rng.uniform(0.25, 0.45)),
                     background_top=tuple(float(x) for x in rng.uniform(0.5, 0.95, 3)),
                     background_bottom=tuple(float(x) for x in rng.uniform(0.2, 0.6, 3)))
    if cfg.look not in LOOKS:
        raise ValueError(f"look must be one of {LOOKS}, got {cfg.look!r}")
    # (drawn last, from a stream of its own: the classic look leaves every scene as it was)
    look = random_look(np.random.default_rng(rng.integers(1 << 62)), cfg.kind) if cfg.look == "real" else Look()
    info = {"category": category, "shape_id": shape_id, "kind": cfg.kind}
    if cfg.look != "classic":
        info["look"] = look.to_dict()
    return Scene(objs, cameras, floor, light, board, info, look)


def scene_renderer(scene: Scene) -> Renderer:
    """The renderer of a scene in its look."""
    return Renderer(scene_meshes(scene.objects, scene.floor, scene.board, scene.look.crease_deg), scene.lighting,
                    scene.look)


def render_scene(scene: Scene, supersample: int = 2):
    """Yields (view index, rgb (H, W, 3) uint8, depth (H, W) float32 m, instance (H, W) int32) per camera."""
    renderer = scene_renderer(scene)
    for i, cam in enumerate(scene.cameras):
        rgb, depth, inst = renderer.render(cam, supersample)
        yield i, rgb, depth, inst
