"""Generate a benchmark: many scenes in the official layout, a split file, resumable and parallel.

    DIR/generator.json             the GeneratorConfig and seed (a rerun must use the same)
    DIR/splits.json                {"train": [...], "seen-test": [...], "unseen-test": [...]} (toys) or
                                   {"train": [...], "test": [...]} (parts, user shapes): scene folder names
    DIR/scenes/<kind>-<seed>-<NNNNN>/   one scene each (writer.py)
Scene i depends only on (seed, i): scenes can be made in any order, by any number of workers, and a
rerun keeps the complete scenes already there.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..fileio import write_text_atomic
from .scene import GeneratorConfig, Scene, build_scene, load_floor_board, load_user_shapes
from .shapes import TOY_CATEGORIES, UNSEEN_TOY_CATEGORIES
from .writer import is_complete, write_scene

TOY_SPLITS = {"train": 0.7, "seen-test": 0.15, "unseen-test": 0.15}
OTHER_SPLITS = {"train": 0.8, "test": 0.2}


def split_of(kind: str, index: int, seed: int, split: str) -> str:
    """The split of scene `index`: fixed by --split, or drawn from (seed, index) with the fractions above."""
    table = TOY_SPLITS if kind == "toys" else OTHER_SPLITS
    if split != "all":
        if split not in table:
            raise ValueError(f"split {split!r} does not exist for {kind}: choose from {sorted(table)} or all")
        return split
    u = np.random.default_rng([seed, index, 7919]).random()
    acc = 0.0
    for name, frac in table.items():
        acc += frac
        if u < acc:
            return name
    return name


def categories_for(split: str) -> list[str]:
    seen = sorted(set(TOY_CATEGORIES) - set(UNSEEN_TOY_CATEGORIES))
    return list(UNSEEN_TOY_CATEGORIES) if split == "unseen-test" else seen


def scene_name(kind: str, seed: int, index: int) -> str:
    return f"{kind}-{seed}-{index:05d}"


def make_one(args: tuple) -> tuple[str, str, bool]:
    """Worker: build and write scene `index` unless it is complete. Returns (name, split, made)."""
    cfg_dict, seed, index, split, out = args
    cfg = GeneratorConfig(**cfg_dict)
    name = scene_name(cfg.kind, seed, index)
    sp = split_of(cfg.kind, index, seed, split)
    path = Path(out) / "scenes" / name
    if is_complete(path):
        return name, sp, False
    scene = rebuild_scene(cfg, seed, index, sp)
    write_scene(scene, path, {"seed": seed, "index": index, "split": sp}, cfg.supersample)
    return name, sp, True


def rebuild_scene(cfg: GeneratorConfig, seed: int, index: int, split: str) -> Scene:
    """Scene `index` of a generate() run with this config and seed, its split as drawn (the scene's metadata
    `generator` block records seed, index and split): the same objects, poses, materials and cameras."""
    rng = np.random.default_rng([seed, index])
    user = load_user_shapes(cfg.shapes_dir) if cfg.kind == "custom" else None
    board = _board(cfg.board_file) if cfg.apriltag_board else None
    return build_scene(cfg, rng, categories_for(split) if cfg.kind == "toys" else None, user, board)


def rebuild_scene_dir(scene_dir: str | Path) -> Scene:
    """The Scene of a scene folder written by generate() (its dataset's generator.json and the scene's `generator`
    block): meshes and poses for measurements the metadata does not hold."""
    scene_dir = Path(scene_dir)
    settings = json.loads((scene_dir.parent.parent / "generator.json").read_text())
    info = json.loads((scene_dir / "scene3d.metadata.json").read_text())["generator"]
    cfg = GeneratorConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings["config"].items()})
    return rebuild_scene(cfg, info["seed"], info["index"], info["split"])


_BOARDS: dict[str, dict] = {}


def _board(path: str) -> dict:
    """The floor decal of a board file, once per process."""
    if path not in _BOARDS:
        _BOARDS[path] = load_floor_board(path)
    return _BOARDS[path]


def generate(cfg: GeneratorConfig, scenes: int, out: str | Path, seed: int, split: str = "all", workers: int = 1,
             progress: bool = True) -> dict:
    """Make scenes 0..scenes-1 (keeping complete ones); returns the split dict written to splits.json."""
    out = Path(out)
    (out / "scenes").mkdir(parents=True, exist_ok=True)
    if cfg.kind == "custom":
        load_user_shapes(cfg.shapes_dir)  # fail early, naming the bad file
    if cfg.apriltag_board:
        _board(cfg.board_file)
    # settings at their defaults from before they existed are left out (as folders made before)
    config = {k: v for k, v in asdict(cfg).items() if (k, v) not in (("look", "classic"), ("anomaly_types", ()))}
    settings = {"config": config, "seed": seed}
    gen_file = out / "generator.json"
    if gen_file.exists():
        old = json.loads(gen_file.read_text())
        if old != json.loads(json.dumps(settings)):
            raise ValueError(f"{out} holds scenes made with other settings ({gen_file}); use another --out")
    else:
        gen_file.write_text(json.dumps(settings, indent=1))
    jobs = [(asdict(cfg), seed, i, split, str(out)) for i in range(scenes)]
    results = []
    if workers > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers, initializer=_single_thread) as pool:
            it = pool.imap_unordered(make_one, jobs)
            results = list(_progress(it, len(jobs), progress))
    else:
        results = list(_progress(map(make_one, jobs), len(jobs), progress))
    splits_file = out / "splits.json"
    splits = json.loads(splits_file.read_text()) if splits_file.exists() else {}
    for name, sp, _ in results:
        for v in splits.values():
            if name in v:
                v.remove(name)
        splits.setdefault(sp, []).append(name)
    splits = {k: sorted(v) for k, v in splits.items()}
    write_text_atomic(splits_file, json.dumps(splits, indent=1))
    return splits


def _single_thread():
    os.environ["OMP_NUM_THREADS"] = "1"


def _progress(it, total, enabled):
    if not enabled:
        return it
    from tqdm import tqdm

    return tqdm(it, total=total, unit="scene", desc="generate")
