"""A simulated inspection cell: one generated scene (odd_one_out_ros.synth) seen by N fixed cameras
(`rig`) or by one camera moving on a circular orbit (`orbit`), with the ground truth. The engine of
the sim_rig node, the demo and the tests. Pure: no ROS imports.

Fixed cameras do not depend on the seed (a real rig does not move between trays): camera i sits at
azimuth azimuth0_deg + 360 i / N, elevation elevation_deg, `distance` metres (`board_distance` with
the AprilTag board, whose tags lie outside the tray) from the point (0, 0, 0.03) it looks at.
calibration/rig.yaml holds the default rig's extrinsics.
Intrinsics are those of the generator (focal = 0.8333 x width, the ToysAD-8K camera).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry import PinholeCamera, look_at

__all__ = ["SimConfig", "SimRig", "fixed_cameras", "orbit_camera", "LOOK_AT"]

LOOK_AT = (0.0, 0.0, 0.03)
MODES = ("rig", "orbit")


@dataclass
class SimConfig:
    kind: str = "toys"
    """toys or parts (odd_one_out_ros.synth)"""
    seed: int = 0
    objects: tuple[int, int] = (4, 6)
    """inclusive range of objects on the tray (0 allowed: an empty tray)"""
    category: str = ""
    """toy category ("" = random)"""
    mode: str = "rig"
    cameras: int = 5
    image_size: int = 256
    distance: float = 0.68
    """camera distance from (0, 0, 0.03) (m), framed on the tray as the generator's cameras are"""
    board_distance: float = 1.05
    """camera distance with apriltag_board: the tags lie on a 1 m square around the tray"""
    elevation_deg: float = 40.0
    azimuth0_deg: float = 18.0
    orbit_steps: int = 36
    """positions per orbit revolution (orbit mode)"""
    apriltag_board: bool = False
    board_file: str = ""

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"sim mode must be one of {MODES}, got {self.mode!r}")
        if self.kind not in ("toys", "parts"):
            raise ValueError(f"sim kind must be toys or parts, got {self.kind!r}")
        lo, hi = self.objects
        if not 0 <= lo <= hi <= 12:
            raise ValueError(f"objects must be a range [min, max] within 0..12, got {list(self.objects)}")
        if self.cameras < 1 or self.orbit_steps < 3 or self.image_size < 32:
            raise ValueError(f"bad sim sizes: cameras={self.cameras}, orbit_steps={self.orbit_steps}, "
                             f"image_size={self.image_size}")


def _camera_at(azimuth_deg: float, cfg: SimConfig) -> PinholeCamera:
    az, el = np.radians(azimuth_deg), np.radians(cfg.elevation_deg)
    distance = cfg.board_distance if cfg.apriltag_board else cfg.distance
    eye = np.array(LOOK_AT) + distance * np.array([np.cos(az) * np.cos(el), np.sin(az) * np.cos(el), np.sin(el)])
    from ..synth.scene import square_intrinsics

    return PinholeCamera(square_intrinsics(cfg.image_size), cfg.image_size, cfg.image_size, look_at(eye, LOOK_AT))


def fixed_cameras(cfg: SimConfig) -> list[PinholeCamera]:
    return [_camera_at(cfg.azimuth0_deg + 360.0 * i / cfg.cameras, cfg) for i in range(cfg.cameras)]


def orbit_camera(cfg: SimConfig, step: int) -> PinholeCamera:
    return _camera_at(cfg.azimuth0_deg + 360.0 * (step % cfg.orbit_steps) / cfg.orbit_steps, cfg)


class SimRig:
    """The scene, its renderer and the cameras. view(i) -> (rgb (S, S, 3) uint8, camera), cached.

    In rig mode i is the camera index; in orbit mode the orbit step (any integer, taken modulo orbit_steps).
    """

    def __init__(self, cfg: SimConfig):
        from ..synth.scene import GeneratorConfig, build_scene, load_floor_board, scene_renderer
        from ..synth.shapes import TOY_CATEGORIES

        self.cfg = cfg
        if cfg.category and cfg.category not in TOY_CATEGORIES:
            raise ValueError(f"unknown toy category {cfg.category!r}; known: {sorted(TOY_CATEGORIES)}")
        board = load_floor_board(cfg.board_file) if cfg.apriltag_board else None
        rng = np.random.default_rng(cfg.seed)
        n = int(rng.integers(cfg.objects[0], cfg.objects[1] + 1))
        gen = GeneratorConfig(kind=cfg.kind, views=8, size=cfg.image_size, objects=(max(n, 1), max(n, 1)),
                              apriltag_board=cfg.apriltag_board, board_file=cfg.board_file)
        self.scene = build_scene(gen, rng, [cfg.category] if cfg.category else None, board=board)
        if n == 0:  # the generator always places objects: keep its floor and light, empty the tray
            self.scene.objects = []
        self.renderer = scene_renderer(self.scene)
        self.cameras = fixed_cameras(cfg) if cfg.mode == "rig" else None
        self._cache: dict[int, tuple[np.ndarray, PinholeCamera]] = {}

    @property
    def n_views(self) -> int:
        return self.cfg.cameras if self.cfg.mode == "rig" else self.cfg.orbit_steps

    def camera(self, i: int) -> PinholeCamera:
        return self.cameras[i] if self.cfg.mode == "rig" else orbit_camera(self.cfg, i)

    def view(self, i: int) -> tuple[np.ndarray, PinholeCamera]:
        key = i if self.cfg.mode == "rig" else i % self.cfg.orbit_steps
        if key not in self._cache:
            cam = self.camera(key)
            rgb, _, _ = self.renderer.render(cam, supersample=2)
            self._cache[key] = (rgb, cam)
        return self._cache[key]

    def ground_truth(self, frame_id: str = "world") -> dict:
        s = self.scene
        return {"schema": "odd_one_out_ros/ground_truth/1", "seed": self.cfg.seed, "kind": self.cfg.kind,
                "category": s.info.get("category", ""), "frame_id": frame_id,
                "objects": [{"name": o.name, "anomalous": bool(o.anomalous), "anomaly_type": o.anomaly_type,
                             **o.box.to_dict()} for o in s.objects]}
