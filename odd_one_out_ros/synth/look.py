"""How a generated scene looks beyond its geometry and materials: shading normals, light, finish and the camera.

`Look()` is the generator's classic look (normals smoothed over every edge, linear colour, hard shadows, no camera
effects): scenes rendered before `look` existed, and the shipped model's training data. `random_look(rng, kind)`
draws the realistic look per scene (issue 36): normals split at edges sharper than a crease angle (machined and
moulded parts show flat faces and crisp edges), display gamma and exposure, soft shadows from a sun of some size,
light bounced from the floor, a finish shared by the scene's objects (matte plastic, painted, metal reflecting its
surroundings), and the camera: vignetting, lens blur, sensor noise. Pure numpy + OpenCV.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

LOOKS = ("classic", "real")
FINISHES = ("plastic", "painted", "metal")

__all__ = ["Look", "LOOKS", "FINISHES", "random_look", "camera_effects"]


@dataclass(frozen=True)
class Look:
    """One scene's look. crease_deg: shading normals are smoothed only across edges whose faces meet at less than
    this (180: every edge); gamma: display gamma, colour = linear ** (1 / gamma) (1: linear); exposure: a factor on
    the light; sun_radius_deg: the sun's angular radius (soft shadow edges; 0: hard); bounce: light from the floor
    onto surfaces facing down, a share of the sun; finish: of the objects, plastic (as the materials say), painted
    (matte, faint highlight) or metal (reflects its surroundings, highlights in its own colour); metallic: metal's
    share of reflection (0..1); vignette: darkening at the corners (0..1); blur_px: lens blur sigma (px); noise:
    sensor noise sigma in 8-bit levels (larger in bright pixels); seed: of the per-view noise (with the camera's
    pose). The defaults are the classic look."""

    # surfaces and light
    crease_deg: float = 180.0
    gamma: float = 1.0
    exposure: float = 1.0
    sun_radius_deg: float = 0.0
    bounce: float = 0.0
    # the objects' finish
    finish: str = "plastic"
    metallic: float = 0.0
    # the camera
    vignette: float = 0.0
    blur_px: float = 0.0
    noise: float = 0.0
    seed: int = 0

    def __post_init__(self):
        if self.finish not in FINISHES:
            raise ValueError(f"finish must be one of {FINISHES}, got {self.finish!r}")
        if not (0 < self.crease_deg <= 180 and self.gamma > 0 and self.exposure > 0):
            raise ValueError(f"bad look: crease_deg {self.crease_deg}, gamma {self.gamma}, exposure {self.exposure}")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def classic(self) -> bool:
        return self == Look(seed=self.seed)


def random_look(rng: np.random.Generator, kind: str = "toys") -> Look:
    """The realistic look of one scene, drawn from `rng` (parts are metal more often than toys)."""
    p_metal = 0.45 if kind == "parts" else 0.15
    finish = "metal" if rng.random() < p_metal else str(rng.choice(["plastic", "painted"]))
    return Look(crease_deg=float(rng.uniform(20, 45)), gamma=float(rng.uniform(1.8, 2.4)),
                exposure=float(rng.uniform(0.8, 1.25)), sun_radius_deg=float(rng.uniform(0.5, 4.0)),
                bounce=float(rng.uniform(0.05, 0.3)), finish=finish,
                metallic=float(rng.uniform(0.4, 0.85)) if finish == "metal" else 0.0,
                vignette=float(rng.uniform(0.0, 0.35)), blur_px=float(rng.choice([0.0, rng.uniform(0.3, 1.0)])),
                noise=float(rng.uniform(0.5, 4.0)), seed=int(rng.integers(1 << 30)))


def camera_effects(linear: np.ndarray, look: Look, view_seed: int) -> np.ndarray:
    """Linear colour (H, W, 3) float in [0, ~1] -> the camera's 8-bit image (H, W, 3) uint8: exposure, vignetting,
    gamma, blur, noise (in that order; noise after gamma, as a sensor's read-out noise in the encoded image)."""
    img = linear * look.exposure
    H, W = img.shape[:2]
    if look.vignette > 0:
        yy, xx = np.mgrid[0:H, 0:W]
        r2 = ((xx - (W - 1) / 2) ** 2 + (yy - (H - 1) / 2) ** 2) / ((W / 2) ** 2 + (H / 2) ** 2)
        img = img * (1 - look.vignette * r2)[..., None]
    img = np.clip(img, 0, 1) ** (1 / look.gamma)
    if look.blur_px > 0:
        img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), look.blur_px)
    out = img * 255
    if look.noise > 0:
        rng = np.random.default_rng([look.seed, view_seed])
        sigma = look.noise * np.sqrt(0.25 + 0.75 * np.clip(img, 0, 1))  # brighter pixels carry more shot noise
        out = out + rng.normal(size=out.shape) * sigma
    return (np.clip(out, 0, 255) + 0.5).astype(np.uint8)
