"""Procedural materials: a colour pattern evaluated at 3D points (object-local or world), no UVs needed.

Patterns: solid, stripes, checker, spots, noise (value noise), wood, marble, tiles. Colours are RGB in
[0, 1]. Everything is deterministic given the Material's fields.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

PATTERNS = ("solid", "stripes", "checker", "spots", "noise")
FLOOR_PATTERNS = ("wood", "marble", "tiles", "concrete", "checker")


@dataclass(frozen=True)
class Material:
    color: tuple[float, float, float]
    pattern: str = "solid"
    color2: tuple[float, float, float] = (1.0, 1.0, 1.0)
    scale: float = 0.03
    """pattern period (m)"""
    direction: tuple[float, float, float] = (0.0, 0.0, 1.0)
    specular: float = 0.2
    shininess: float = 20.0
    seed: int = 0
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict:
        return {"color": list(self.color), "pattern": self.pattern, "color2": list(self.color2), "scale": self.scale,
                "direction": list(self.direction), "specular": self.specular, "shininess": self.shininess,
                "seed": self.seed}


def random_color(rng: np.random.Generator, saturated: bool = True) -> tuple[float, float, float]:
    """A random colour through HSV (saturated toy colours or muted ones)."""
    import colorsys

    h = rng.random()
    s = rng.uniform(0.5, 0.95) if saturated else rng.uniform(0.05, 0.4)
    v = rng.uniform(0.55, 0.95) if saturated else rng.uniform(0.35, 0.9)
    return tuple(float(c) for c in colorsys.hsv_to_rgb(h, s, v))


def random_material(rng: np.random.Generator, patterned: float = 0.35) -> Material:
    pattern = "solid" if rng.random() > patterned else str(rng.choice(PATTERNS[1:]))
    d = rng.normal(size=3)
    return Material(color=random_color(rng), pattern=pattern, color2=random_color(rng),
                    scale=float(rng.uniform(0.015, 0.05)), direction=tuple(float(x) for x in d / np.linalg.norm(d)),
                    specular=float(rng.uniform(0.05, 0.5)), shininess=float(rng.uniform(8, 60)),
                    seed=int(rng.integers(1 << 30)))


def different_material(m: Material, rng: np.random.Generator) -> Material:
    """A clearly different material (material-mismatch anomaly): another hue, or another pattern."""
    import colorsys

    h, s, v = colorsys.rgb_to_hsv(*m.color)
    h2 = (h + rng.uniform(0.25, 0.75)) % 1.0
    color = tuple(float(c) for c in colorsys.hsv_to_rgb(h2, max(s, 0.5), max(v, 0.55)))
    if rng.random() < 0.3:
        pattern = str(rng.choice([p for p in PATTERNS if p != m.pattern]))
        return replace(m, pattern=pattern, color=color, color2=random_color(rng))
    return replace(m, color=color)


def random_floor(rng: np.random.Generator) -> Material:
    pattern = str(rng.choice(FLOOR_PATTERNS))
    base = random_color(rng, saturated=False)
    other = tuple(float(np.clip(c * rng.uniform(0.5, 0.85), 0, 1)) for c in base)
    return Material(color=base, pattern=pattern, color2=other, scale=float(rng.uniform(0.05, 0.25)),
                    direction=(float(np.cos(a := rng.uniform(0, np.pi))), float(np.sin(a)), 0.0),
                    specular=float(rng.uniform(0.0, 0.3)), shininess=float(rng.uniform(5, 40)),
                    seed=int(rng.integers(1 << 30)))


def _hash3(ix, iy, iz, seed):
    """Deterministic pseudo-random values in [0, 1) for integer lattice points (own hash: vectorised)."""
    h = (ix * 73856093) ^ (iy * 19349663) ^ (iz * 83492791) ^ (seed * 2654435761)
    h = (h ^ (h >> 13)) * 1274126177
    return ((h ^ (h >> 16)) & 0xFFFFFF) / float(0x1000000)


def value_noise(p: np.ndarray, scale: float, seed: int, octaves: int = 3) -> np.ndarray:
    """Smooth value noise in [0, 1] at points p (N, 3) with feature size `scale` (m)."""
    out = np.zeros(len(p))
    amp, total = 1.0, 0.0
    for o in range(octaves):
        q = p / (scale / 2 ** o)
        i = np.floor(q).astype(np.int64)
        f = q - i
        f = f * f * (3 - 2 * f)
        acc = np.zeros(len(p))
        for dx in (0, 1):
            for dy in (0, 1):
                for dz in (0, 1):
                    w = ((f[:, 0] if dx else 1 - f[:, 0]) * (f[:, 1] if dy else 1 - f[:, 1])
                         * (f[:, 2] if dz else 1 - f[:, 2]))
                    acc += w * _hash3(i[:, 0] + dx, i[:, 1] + dy, i[:, 2] + dz, seed + o)
        out += amp * acc
        total += amp
        amp *= 0.5
    return out / total


def shade_pattern(m: Material, p: np.ndarray) -> np.ndarray:
    """Albedo (N, 3) of material m at points p (N, 3)."""
    c1, c2 = np.asarray(m.color), np.asarray(m.color2)
    d = np.asarray(m.direction)
    if m.pattern == "solid":
        t = np.zeros(len(p))
    elif m.pattern == "stripes":
        t = (np.sin(2 * np.pi * (p @ d) / m.scale) > 0).astype(np.float64)
    elif m.pattern == "checker":
        t = (np.floor(p / m.scale).astype(np.int64).sum(axis=1) % 2).astype(np.float64)
    elif m.pattern == "spots":
        q = p / m.scale
        t = (np.linalg.norm(q - np.round(q), axis=1) < 0.3).astype(np.float64)
    elif m.pattern == "noise":
        t = value_noise(p, m.scale, m.seed)
    elif m.pattern == "wood":
        n = value_noise(p * np.array([1.0, 1.0, 0.2]), m.scale * 2, m.seed)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * ((p @ d) / m.scale * 3 + 4 * n))
    elif m.pattern == "marble":
        n = value_noise(p, m.scale, m.seed, octaves=4)
        t = np.abs(np.sin(2 * np.pi * ((p @ d) / m.scale + 3 * n))) ** 0.3
    elif m.pattern == "tiles":
        q = p[:, :2] / m.scale
        f = q - np.floor(q)
        grout = (np.minimum(f, 1 - f).min(axis=1) < 0.04)
        t = 0.15 * value_noise(p, m.scale / 3, m.seed) + grout * 0.85
    elif m.pattern == "concrete":
        t = value_noise(p, m.scale / 4, m.seed, octaves=4)
    else:
        raise ValueError(f"unknown pattern {m.pattern!r}")
    return c1[None] * (1 - t[:, None]) + c2[None] * t[:, None]
