"""The benchmark generator (shapes, anomalies, scenes, rendering, layout) and the dataset loader."""
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import trimesh

from odd_one_out_ros.data.dataset import DatasetConfig, SceneDataset, augment_world, scene_dirs
from odd_one_out_ros.data.scene_meta import object_pixel_sizes, read_scene_meta
from odd_one_out_ros.fileio import read_mask
from odd_one_out_ros.resources import SAMPLE_SCENE
from odd_one_out_ros.synth import anomalies
from odd_one_out_ros.synth.generate import generate
from odd_one_out_ros.synth.parts import make_part
from odd_one_out_ros.synth.scene import GeneratorConfig, build_scene, load_user_shapes
from odd_one_out_ros.synth.shapes import TOY_CATEGORIES, UNSEEN_TOY_CATEGORIES, make_toy

BIN = Path(sys.executable).parent
SMALL = dict(views=6, size=96, objects=(3, 5))


def test_there_are_enough_categories_and_distinct_parts():
    assert len(TOY_CATEGORIES) >= 24
    assert 0 < len(UNSEEN_TOY_CATEGORIES) < len(TOY_CATEGORIES) // 2
    for c in TOY_CATEGORIES:
        s = make_toy(c, np.random.default_rng(1)).normalized(0.2)
        assert all(p.mesh.is_watertight for p in s.parts), c
        lo, hi = s.bounds
        assert np.isclose((hi - lo).max(), 0.2) and abs(lo[2]) < 1e-9
    # instances of a category differ; parts differ by seed
    a, b = make_toy("cup", np.random.default_rng(1)), make_toy("cup", np.random.default_rng(2))
    assert not np.allclose(a.bounds, b.bounds)
    vols = {round(make_part(s).mesh().volume, 9) for s in range(40)}
    assert len(vols) == 40


def test_every_anomaly_type_is_produced_and_keeps_meshes_watertight():
    rng = np.random.default_rng(0)
    made = {}
    for trial in range(80):
        kind = anomalies.ANOMALY_TYPES[trial % len(anomalies.ANOMALY_TYPES)]
        if kind in made:
            continue
        shape = make_part(trial).normalized(0.15) if kind == "similar_shape" or trial % 2 else \
            make_toy(sorted(TOY_CATEGORIES)[trial % len(TOY_CATEGORIES)], rng).normalized(0.2)
        try:
            out = anomalies.make_anomaly(shape, kind, rng)
        except anomalies.Rejected:
            continue
        made[kind] = (shape, out)
    assert set(made) == set(anomalies.ANOMALY_TYPES)
    for kind, (normal, out) in made.items():
        assert all(p.mesh.is_watertight for p in out.parts), kind
        if kind == "material":
            assert out.materials != normal.materials
        elif kind == "missing_part":
            assert len(out.parts) == len(normal.parts) - 1
        else:  # the geometry changed
            assert not np.allclose(out.mesh().volume, normal.mesh().volume, rtol=1e-4) or \
                not np.allclose(out.bounds, normal.bounds, atol=1e-4), kind


def test_fracture_removes_10_to_90_percent_and_moved_parts_stay_attached():
    rng = np.random.default_rng(3)
    for seed in range(6):
        shape = make_toy("mug", np.random.default_rng(seed)).normalized(0.2)
        try:
            broken = anomalies.fracture(shape, rng)
        except anomalies.Rejected:
            continue
        removed = 1 - anomalies._union(broken).volume() / anomalies._union(shape).volume()
        assert 0.1 <= removed <= 0.9
        moved = anomalies.translated_part(shape, rng)
        i = next(k for k, p in enumerate(moved.parts) if not np.allclose(p.mesh.vertices, shape.parts[k].mesh.vertices))
        assert anomalies._attached(moved, i, 0.002 * 0.2)


def generated(tmp_path_factory, kind="toys", seed=5, n=3, **kw):
    out = tmp_path_factory.mktemp(f"{kind}{seed}")
    generate(GeneratorConfig(kind=kind, **{**SMALL, **kw}), n, out, seed, progress=False)
    return out


@pytest.fixture(scope="module")
def toys(tmp_path_factory):
    return generated(tmp_path_factory)


def test_layout_labels_and_strict_minority(toys):
    splits = json.loads((toys / "splits.json").read_text())
    dirs = scene_dirs(toys)
    assert len(dirs) == 3 and sum(len(v) for v in splits.values()) == 3
    for d in dirs:
        for sub in ("RGB", "depth_png", "binary_labels", "segmentations/floor_object"):
            assert len(list((d / sub).glob("*.png"))) == 6, sub
        meta = json.loads((d / "scene3d.metadata.json").read_text())
        labels = [o["label"] for o in meta["objects"]]
        assert 2 * sum(labels) < len(labels)  # anomalies are a strict minority
        for o in meta["objects"]:
            assert (o["label"] == 1) == bool(o["anomaly_type"])
        scene = read_scene_meta(d)
        assert [o.anomalous for o in scene.objects] == [bool(v) for v in labels]
        depth = cv2.imread(str(d / "depth_png" / "0000.png"), cv2.IMREAD_UNCHANGED)
        assert depth.dtype == np.uint16 and 150 < depth[depth > 0].min() and depth.max() < 20000  # millimetres


def test_boxes_project_onto_their_masks(toys):
    checked = 0
    for d in scene_dirs(toys):
        scene = read_scene_meta(d)
        for o in scene.objects:
            for v, cam in enumerate(scene.cameras):
                mask = cv2.imread(str(scene.mask_path(o, v)), cv2.IMREAD_GRAYSCALE) > 127
                if mask.sum() < 10:
                    continue
                uv, z = cam.project(o.box.corners())
                hull = np.zeros_like(mask, np.uint8)
                cv2.fillConvexPoly(hull, cv2.convexHull(np.round(uv).astype(np.int32)), 1)
                assert (mask & (hull > 0)).sum() / mask.sum() > 0.97, (d.name, o.name, v)
                checked += 1
    assert checked > 20


def test_anomalies_are_visible_in_the_binary_labels(toys):
    for d in scene_dirs(toys):
        scene = read_scene_meta(d)
        label_px = sum(int((cv2.imread(str(d / "binary_labels" / f"{v:04d}.png"), 0) > 0).sum()) for v in range(6))
        assert (label_px > 0) == any(o.anomalous for o in scene.objects)


def test_same_seed_same_bytes_other_seed_other_scene(tmp_path_factory, toys):
    again = generated(tmp_path_factory)
    other = generated(tmp_path_factory, seed=6)

    def digest(root):
        return {p.relative_to(root).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*.png"))}
    assert digest(again) == digest(toys)
    a = digest(other)
    assert set(digest(toys).values()).isdisjoint(a.values())


def test_resume_keeps_complete_scenes(toys):
    first = (toys / "scenes").iterdir().__next__()
    stamp = (first / "scene3d.metadata.json").stat().st_mtime_ns
    (toys / "scenes" / "junk.partial").mkdir()
    generate(GeneratorConfig(kind="toys", **SMALL), 3, toys, 5, progress=False)
    assert (first / "scene3d.metadata.json").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="other settings"):
        generate(GeneratorConfig(kind="toys", views=7, size=96, objects=(3, 5)), 3, toys, 5, progress=False)


def test_parts_and_user_meshes(tmp_path):
    scene = build_scene(GeneratorConfig(kind="parts", **SMALL), np.random.default_rng(4))
    assert scene.info["category"].startswith("part/")
    # a folder of the user's meshes: one good STL, then a broken OBJ and an empty folder
    shapes = tmp_path / "shapes"
    shapes.mkdir()
    make_part(3).mesh().export(shapes / "bracket.stl")
    user = load_user_shapes(shapes)
    assert [n for n, _ in user] == ["bracket"]
    scene = build_scene(GeneratorConfig(kind="custom", shapes_dir=str(shapes), **SMALL), np.random.default_rng(1),
                        user_shapes=user)
    assert scene.info["category"] == "user/bracket"
    (shapes / "broken.obj").write_text("v 0 0 0\nv 1 0\nf 1 2 9\n")
    with pytest.raises(ValueError, match="broken.obj"):
        load_user_shapes(shapes)
    empty = tmp_path / "empty"
    empty.mkdir()
    r = subprocess.run([str(BIN / "odd-one-out"), "generate", "--scenes", "1", "--out", str(tmp_path / "o"),
                        "--shapes", str(empty)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "no .obj/.stl/.ply/.off meshes" in r.stderr and "Traceback" not in r.stderr


def test_loader_reads_official_and_generated_scenes(toys):
    ds = SceneDataset(scene_dirs(SAMPLE_SCENE), DatasetConfig(n_input=3, n_target=2, image_size=64, augment=False))
    item = ds[0]
    assert item["images"].shape == (5, 3, 64, 64) and item["masks"].shape == (5, 1, 64, 64)
    assert item["labels"].tolist() == [1, 0, 0]  # object.001, the cracked banana, is anomalous
    assert item["anomaly_types"][0] == "crack"
    assert float(item["masks"].max()) == 1.0
    ours = SceneDataset(scene_dirs(toys, "train") or scene_dirs(toys), DatasetConfig(image_size=64))
    it = ours[0]
    assert it["boxes"].shape[1] == 7 and len(it["labels"]) == it["boxes"].shape[0]
    assert len(set(it["views"])) == 6  # 5 + 5 requested, the scene has 6: all used, inputs first


def test_augmentation_moves_cameras_boxes_and_images_together():
    """Projected box corners in the augmented cameras equal the original ones (mirrored with a flip):
    the rigid world change and the image flip cancel out."""
    scene = read_scene_meta(SAMPLE_SCENE)
    cams = scene.cameras[:4]
    boxes = [o.box for o in scene.objects]
    for flip in (False, True):
        acams, aboxes = augment_world(cams, boxes, 0.7, np.array([0.1, -0.05]), flip)
        for cam, acam in zip(cams, acams):
            assert np.isclose(np.linalg.det(acam.T_cw.R), 1.0)
            for b, ab in zip(boxes, aboxes):
                uv, _ = cam.project(b.center[None])
                auv, _ = acam.project(ab.center[None])
                expect = np.array([cam.width - 1 - uv[0, 0], uv[0, 1]]) if flip else uv[0]
                np.testing.assert_allclose(auv[0], expect, atol=1e-6)
                # the box corners land on the same pixels as a set (a mirrored box lists them in another order)
                c0 = np.sort(cam.project(b.corners())[0], axis=0)
                c1 = acam.project(ab.corners())[0]
                if flip:
                    c1[:, 0] = cam.width - 1 - c1[:, 0]
                np.testing.assert_allclose(np.sort(c1, axis=0), c0, atol=1e-6)
    ds = SceneDataset([SAMPLE_SCENE], DatasetConfig(n_input=2, n_target=1, image_size=64), seed=1)
    a, b = ds[0], ds[0]
    torch.testing.assert_close(a["images"], b["images"])  # reproducible per (seed, epoch, index)
    ds.set_epoch(1)
    assert not torch.equal(ds[0]["T_cw"], a["T_cw"])


def test_apriltag_board_on_the_floor_gives_back_the_camera_poses(tmp_path):
    """Real AprilTag detection on generated views: the board decal, the renderer and the camera
    convention agree with the calibration library to a fraction of a degree."""
    from odd_one_out_ros.calibration.board import board_from_dict
    from odd_one_out_ros.calibration.detect import detect_tags
    from odd_one_out_ros.calibration.pose import PoseError, estimate_board_pose

    generate(GeneratorConfig(kind="toys", views=8, size=256, objects=(3, 4), apriltag_board=True), 1, tmp_path, 9,
             progress=False)
    d = scene_dirs(tmp_path)[0]
    meta = json.loads((d / "scene3d.metadata.json").read_text())
    board = board_from_dict({k: v for k, v in meta["scene"]["board"].items() if k != "file"})
    scene = read_scene_meta(d)
    rot, pos = [], []
    for v, cam in enumerate(scene.cameras):
        gray = cv2.imread(str(scene.rgb_path(v)), cv2.IMREAD_GRAYSCALE)
        try:
            bp = estimate_board_pose(detect_tags(gray), board, cam)
        except PoseError:
            continue
        rot.append(np.degrees(np.linalg.norm(cv2.Rodrigues(bp.T_cw.R @ cam.T_cw.R.T)[0])))
        pos.append(np.linalg.norm(bp.T_cw.inverse().t - cam.center))
    assert len(rot) >= 4
    assert np.median(rot) < 0.3 and np.median(pos) < 0.01


def test_visual_hull_occupancy_follows_the_objects_through_augmentation():
    """The hull target of the real sample scene (3 bananas, 20 views): with and without augmentation (rotation,
    shift, flip) the occupied voxels lie in the (augmented) ground-truth boxes, every box holds some, and the
    hull's volume is of the order of the boxes' (a superset of the bananas, smaller than their boxes' sum x 2)."""
    from odd_one_out_ros.geometry import Box3D

    s = 0.02
    grid = ((64, 64, 8), s, (-0.64, -0.64, -0.02))
    scene = read_scene_meta(SAMPLE_SCENE)
    for seed, augment in ((0, False), (3, True), (4, True)):
        ds = SceneDataset([SAMPLE_SCENE], DatasetConfig(n_input=2, n_target=1, image_size=64, augment=augment,
                                                         occupancy_grid=grid), seed=seed)
        item = ds[0]
        occ = item["occupancy"].numpy()
        assert occ.shape == (8, 64, 64) and occ.min() >= 0 and occ.max() == 1.0
        zz, yy, xx = np.nonzero(occ > 0.5)
        pts = np.stack([xx, yy, zz], 1) * s + np.array(grid[2]) + s / 2
        boxes = [Box3D(b[:3].numpy(), b[3:6].numpy() + 2 * s, float(b[6])) for b in item["boxes"]]  # a voxel slack
        inside = np.array([[bx.contains(p[None])[0] for bx in boxes] for p in pts])
        assert inside.any(axis=1).mean() > 0.97
        assert inside.any(axis=0).all()
        volume = occ.sum() * s ** 3
        box_volume = sum(float(np.prod(o.box.size)) for o in scene.objects)
        assert 0.15 * box_volume < volume < 2 * box_volume


def test_visual_hull_projects_with_the_lens_distortion():
    """The hull looks each point up at the pixel its camera projects it to, lens distortion included (it once
    used the bare pinhole): a mask that is set only at the distorted pixel holds the point."""
    from odd_one_out_ros.data.hull import hull_occupancy
    from odd_one_out_ros.geometry import PinholeCamera, look_at

    K = np.array([[120.0, 0, 99.5], [0, 120.0, 79.5], [0, 0, 1]])  # wide angle: the point is far off-axis
    point = np.array([[0.4, 0.0, 0.02]])
    cams, masks = [], []
    for eye in ((0.0, -0.6, 0.5), (0.0, 0.6, 0.5)):
        cam = PinholeCamera(K, 200, 160, look_at(eye, (0, 0, 0)), dist=[-0.35, 0.12, 0.0, 0.0, 0.0])
        (u, v), = np.floor(cam.project(point)[0] + 0.5).astype(int)
        pinhole = PinholeCamera(K, 200, 160, cam.T_cw)
        assert np.abs(pinhole.project(point)[0] - cam.project(point)[0]).max() > 3  # another pixel
        mask = np.zeros((160, 200), bool)
        mask[v, u] = True
        cams.append(cam)
        masks.append(mask)
    assert hull_occupancy(point, cams, masks).tolist() == [True]
    assert hull_occupancy(point, [PinholeCamera(K, 200, 160, c.T_cw) for c in cams], masks).tolist() == [False]


def test_visual_hull_holds_the_objects_surface_and_not_the_floor(toys):
    """Surface points of the objects, back-projected from a generated view's depth (mm), are inside the hull
    carved from all views; points on the empty floor far from every object are mostly not."""
    from odd_one_out_ros.data.hull import hull_occupancy

    root = scene_dirs(toys)[0]
    scene = read_scene_meta(root)
    masks = SceneDataset([root], DatasetConfig()).hull_masks(0)
    cam = scene.cameras[0]
    depth = cv2.imread(str(root / "depth_png" / "0000.png"), cv2.IMREAD_UNCHANGED).astype(float) * 1e-3
    objects = np.zeros(depth.shape, np.uint8)
    for o in scene.objects:
        objects |= read_mask(scene.mask_path(o, 0), depth.shape).astype(np.uint8)
    objects = cv2.erode(objects, np.ones((3, 3), np.uint8))  # inner pixels: no floor depth mixed in
    v, u = np.nonzero(objects & (depth > 0))
    rays = np.linalg.solve(cam.K, np.stack([u, v, np.ones_like(u)]).astype(float)) * depth[v, u]
    surface = (rays.T - cam.T_cw.t) @ cam.T_cw.R
    assert len(surface) > 100 and hull_occupancy(surface, scene.cameras, masks).mean() > 0.97
    centres = np.array([o.box.center for o in scene.objects])
    floor = np.array([[x, y, 0.01] for x in np.linspace(-0.45, 0.45, 10) for y in np.linspace(-0.45, 0.45, 10)])
    far = floor[np.linalg.norm(floor[:, None, :2] - centres[None, :, :2], axis=2).min(axis=1) > 0.3]
    # with the fixture's 6 views, floor behind a tall object can be hidden from every view that sees it (low
    # cameras cast long occlusion shadows): the hull keeps such points; most of the free floor is carved
    assert len(far) > 10 and hull_occupancy(far, scene.cameras, masks).mean() < 0.25


def test_default_framing_objects_span_50_px_and_anomalies_show(tmp_path_factory):
    """Issue 11: in 256 x 256 views the median object spans >= 50 px (largest side of its written mask, median
    over views) and none is under 20 px; every anomalous object shows in the binary labels of some view."""
    sizes = []
    for kind, seed in (("toys", 31), ("parts", 32)):
        root = tmp_path_factory.mktemp(f"framing-{kind}")
        generate(GeneratorConfig(kind=kind, views=10), 3, root, seed, progress=False)
        for d in scene_dirs(root):
            meta = read_scene_meta(d)
            sizes += object_pixel_sizes(meta)
            for o in (o for o in meta.objects if o.anomalous):
                shown = [(read_mask(meta.mask_path(o, v), (256, 256)) &
                          (cv2.imread(str(d / "binary_labels" / f"{v:04d}.png"), 0) > 0)).sum() for v in range(10)]
                assert max(shown) > 0, (d.name, o.name)
    assert len(sizes) >= 15
    assert np.median(sizes) >= 50 and min(sizes) >= 20, (np.median(sizes), min(sizes))


def test_user_meshes_that_break_an_anomaly_are_redrawn_and_seeded_stably(tmp_path, monkeypatch):
    shapes = tmp_path / "shapes"
    shapes.mkdir()
    make_part(3).mesh().export(shapes / "bracket.off")
    open_shell = trimesh.creation.icosphere(subdivisions=2)  # a scan with a hole: booleans fail on it
    open_shell.update_faces(np.arange(len(open_shell.faces)) > 4)
    open_shell.export(shapes / "scan.off")
    user = load_user_shapes(shapes)
    cfg = GeneratorConfig(kind="custom", shapes_dir=str(shapes), p_clean=0.0, **{**SMALL, "objects": (5, 5)})
    # an operator that returns an empty shape (the crash of issue 11) is redrawn, never a crash
    real, calls = anomalies.make_anomaly, []

    def sometimes_empty(shape, kind, rng):
        calls.append(kind)
        if len(calls) % 2:
            return replace(shape, parts=[])
        return real(shape, kind, rng)
    monkeypatch.setattr(anomalies, "make_anomaly", sometimes_empty)
    for seed in range(3):
        scene = build_scene(cfg, np.random.default_rng(seed), user_shapes=user)
        assert all(np.isfinite(o.box.size).all() and o.box.size.min() > 0 for o in scene.objects)
    assert len(calls) >= 2
    monkeypatch.undo()
    # same seed, same bytes in two processes with different hash salts (materials of user shapes)
    digests = []
    for salt in ("1", "2"):
        out = tmp_path / f"gen{salt}"
        r = subprocess.run([str(BIN / "odd-one-out"), "generate", "--scenes", "1", "--out", str(out), "--seed", "4",
                            "--views", "3", "--size", "48", "--shapes", str(shapes)], capture_output=True, text=True,
                           timeout=300, env={**os.environ, "PYTHONHASHSEED": salt, "OMP_NUM_THREADS": "1"})
        assert r.returncode == 0, r.stderr
        digests.append({p.relative_to(out).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
                        for p in sorted(out.rglob("*.png"))})
    assert digests[0] == digests[1] and len(digests[0]) > 3


def test_depth_carving_keeps_the_surface_and_removes_what_the_views_see_through(toys):
    """With the written depth maps the hull is a subset of the mask hull that still holds the objects' surface
    (seen in view 0) and loses the space in front of the surfaces that other views see (e.g. above the objects)."""
    from odd_one_out_ros.data.hull import hull_occupancy

    root = scene_dirs(toys)[0]
    scene = read_scene_meta(root)
    masks = SceneDataset([root], DatasetConfig()).hull_masks(0)
    depths = [cv2.imread(str(root / "depth_png" / f"{v:04d}.png"), cv2.IMREAD_UNCHANGED).astype(float) * 1e-3
              for v in range(len(scene.cameras))]
    cam, depth = scene.cameras[0], depths[0]
    objects = np.zeros(depth.shape, np.uint8)
    for o in scene.objects:
        objects |= read_mask(scene.mask_path(o, 0), depth.shape).astype(np.uint8)
    v, u = np.nonzero(cv2.erode(objects, np.ones((3, 3), np.uint8)) & (depth > 0))
    surface = (np.linalg.solve(cam.K, np.stack([u, v, np.ones_like(u)]).astype(float)) * depth[v, u]).T
    surface = (surface - cam.T_cw.t) @ cam.T_cw.R
    assert hull_occupancy(surface, scene.cameras, masks, depths=depths).mean() > 0.95
    lo = np.min([o.box.center - o.box.size / 2 for o in scene.objects], axis=0)
    hi = np.max([o.box.center + o.box.size / 2 for o in scene.objects], axis=0)
    pts = np.random.default_rng(0).uniform(lo, hi, (20000, 3))
    plain = hull_occupancy(pts, scene.cameras, masks)
    carved = hull_occupancy(pts, scene.cameras, masks, depths=depths)
    assert not (carved & ~plain).any() and carved.sum() < 0.95 * plain.sum()
