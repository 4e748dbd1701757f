"""The training-free baseline (model/baseline.py) and its place in `odd-one-out evaluate`."""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from odd_one_out_ros.data.dataset import scene_dirs
from odd_one_out_ros.data.scene_meta import read_scene_meta
from odd_one_out_ros.geometry import Box3D
from odd_one_out_ros.model import baseline as B
from odd_one_out_ros.model.inference import views_to_tensors
from odd_one_out_ros.resources import DEFAULT_CHECKPOINT
from odd_one_out_ros.synth.generate import generate
from odd_one_out_ros.synth.scene import GeneratorConfig

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def clean_scene(tmp_path_factory):
    """One generated scene of 5 normal toys, 8 views of 128 px."""
    out = tmp_path_factory.mktemp("baseline_data")
    generate(GeneratorConfig(kind="toys", views=8, size=128, objects=(5, 5), p_clean=1.0), 1, out, 905,
             split="seen-test", progress=False)
    return scene_dirs(out)[0]


@pytest.fixture(scope="module")
def extractor():
    torch.set_num_threads(1)
    return B.default_extractor()


def _views(meta, odd: int | None = None):
    """The scene's views; with `odd`, that object's pixels get another material (inverted colours) in every
    view, using the scene's segmentation masks."""
    views = meta.posed_views(meta.even_views(5))
    if odd is None:
        return views
    from odd_one_out_ros.views import PosedView

    obj = meta.objects[odd]
    out = []
    for v in views:
        img = v.image.copy()
        mask = cv2.imread(str(meta.mask_path(obj, int(v.stamp))), cv2.IMREAD_GRAYSCALE) > 127
        img[mask] = 255 - img[mask]
        out.append(PosedView(img, v.camera, v.stamp, v.source))
    return out


def _scores(meta, views, extractor, cfg=None):
    images, K, T = views_to_tensors(views, 128, "cpu")
    return B.baseline_scores(images[0], K[0], T[0], [o.box for o in meta.objects], extractor, cfg)


def test_an_object_of_another_material_scores_highest_and_deterministically(clean_scene, extractor):
    meta = read_scene_meta(clean_scene)
    assert len(meta.objects) == 5 and not any(o.anomalous for o in meta.objects)
    for odd in (1, 3):
        views = _views(meta, odd)
        s = _scores(meta, views, extractor)
        assert s.shape == (5,) and int(np.argmax(s)) == odd, s
        others = np.delete(s, odd)
        assert s[odd] > others.max() + 0.5 * (others.max() - others.min())
        p = B.calibrate(s)
        assert np.all((p >= 0) & (p <= 1)) and p[odd] > 0.5 and np.all(np.delete(p, odd) < 0.5)
        assert np.array_equal(s, _scores(meta, views, extractor))  # deterministic
    # every design option runs (and the object still stands out under each)
    views = _views(meta, 2)
    for cfg in (B.BaselineConfig(rotations=1, radius=-1, both_ways=False, k_nearest=1, top_fraction=0.2,
                                 scales=(1.0,), standardize=True, global_weight=0.5, occlusion=False),
                B.BaselineConfig(rotations=2, radius=1, grid=4, margin=0.1)):
        assert int(np.argmax(_scores(meta, views, extractor, cfg))) == 2


def old_layout_checkpoint(path) -> Path:
    """The shipped checkpoint as a checkpoint made before issue 20 stores it: no prior_features / prior_levels /
    prior_grid in its matcher config (they load as "teacher": a second MobileNetV2 at 2x, grid 6); in today's layout
    no features / levels / grid in scorer.comparison."""
    blob = torch.load(DEFAULT_CHECKPOINT, map_location="cpu", weights_only=True)
    if "matcher" in blob["config"]:  # the layout before the stages (FORMAT_V1)
        for key in ("prior_features", "prior_levels", "prior_grid"):
            blob["config"]["matcher"].pop(key, None)
    else:
        for key in ("features", "levels", "grid"):
            blob["config"]["scorer"]["comparison"].pop(key, None)
    torch.save(blob, path)
    return Path(path)


def trunk_checkpoint(path) -> Path:
    """The shipped checkpoint's weights with the comparison of `train --prior-features trunk` (the backbone's own
    levels) scored by the volume matcher with that prior (its file keeps the matcher the stage 2 trained): what a
    stage 2 with that flag starts from."""
    from odd_one_out_ros.model.checkpoint import FORMAT_V1, save_checkpoint, upgrade_state_v1, with_parts
    from odd_one_out_ros.model.config import PRIOR_VARIANTS, ModelConfig

    blob = torch.load(DEFAULT_CHECKPOINT, map_location="cpu", weights_only=True)
    cfg = (ModelConfig.from_dict(blob["config"]).changed("encoder", weights="")
           .changed("scorer.comparison", **PRIOR_VARIANTS["trunk"])
           .changed("scorer", kind="matcher"))  # the comparator reads one map only
    state = upgrade_state_v1(blob["model"], cfg) if blob["format"] == FORMAT_V1 else blob["model"]
    trunk, new = with_parts(state, cfg)
    assert new == []  # the shipped box head, refiner and matcher
    return save_checkpoint(path, trunk, blob.get("meta"), half=True)


def _check_shared_raw(inspector, scorer, meta, recompute):
    """The prior's raw scores of an inspection (predicted, then the true boxes) equal `recompute`'s."""
    views = _views(meta, odd=2)
    images, K, T = views_to_tensors(views, inspector.net.cfg.image_size, "cpu")
    for given in (None, [o.box for o in meta.objects]):
        res = inspector.inspect(views, given)
        boxes = [o.box for o in res.objects]
        assert len(boxes) >= 3 and res.prior_raw.shape == (len(boxes),)
        raw = recompute(images, K, T, boxes)
        shared_raw, shared_prob, _ = scorer(None, None, None, boxes, raw=res.prior_raw)
        np.testing.assert_allclose(shared_raw, raw, rtol=1e-9, atol=0)
        np.testing.assert_allclose(shared_prob, B.calibrate(raw, scorer.cfg), rtol=1e-9, atol=0)


def test_the_models_prior_gives_the_baselines_raw_scores_of_the_same_boxes(clean_scene, extractor, tmp_path):
    """`evaluate --baseline` on a model with matcher.prior reuses the prior's raw scores (InspectionResult.prior_raw):
    for a model with comparison features "trunk" they are the comparison run on its own backbone levels; a separate
    MobileNetV2 at 2x is another baseline, not computed by it."""
    from odd_one_out_ros.inspection.loader import load_inspector

    inspector = load_inspector(trunk_checkpoint(tmp_path / "trunk.pt"), "cpu").inspector
    net = inspector.net
    comparison = net.scorer.comparison
    assert net.cfg.scorer.kind == "matcher" and net.cfg.scorer.matcher.prior and comparison.trunk
    scorer = B.BaselineScorer(comparison.baseline_cfg, B.MODEL_PRIOR)
    assert scorer.computed_by(net)
    assert not B.BaselineScorer(B.BaselineConfig(), extractor).computed_by(net)
    with pytest.raises(ValueError, match="raw"):
        scorer(None, None, None, [])
    meta = read_scene_meta(clean_scene)

    def recompute(images, K, T, boxes):
        with torch.no_grad():
            maps = comparison.maps(net.scene(images, K, T))[0]  # from a backbone pass of its own
        return B.baseline_scores(images[0], K[0], T[0], boxes, None, comparison.baseline_cfg, maps)

    _check_shared_raw(inspector, scorer, meta, recompute)


def test_an_old_layout_checkpoint_keeps_its_2x_teacher_prior(clean_scene, extractor, tmp_path):
    """A checkpoint without the issue-20 fields loads with the settings it was trained with: the prior's features
    from a separate ImageNet MobileNetV2 at 2x (BaselineConfig's defaults), which the 2x baseline reproduces."""
    from odd_one_out_ros.inspection.loader import load_inspector

    inspector = load_inspector(old_layout_checkpoint(tmp_path / "old.pt"), "cpu").inspector
    net = inspector.net
    comparison = net.scorer.comparison
    assert (net.cfg.scorer.comparison.features == "teacher" and not comparison.trunk
            and comparison.baseline_cfg == B.BaselineConfig())
    scorer = B.BaselineScorer(B.BaselineConfig(), extractor)
    assert scorer.computed_by(net) and B.BaselineScorer(comparison.baseline_cfg, B.MODEL_PRIOR).computed_by(net)
    assert not B.BaselineScorer(B.BaselineConfig(scales=(1.0,)), extractor).computed_by(net)
    meta = read_scene_meta(clean_scene)
    _check_shared_raw(inspector, scorer, meta,
                      lambda images, K, T, boxes: scorer(images[0], K[0], T[0], boxes)[0])


def test_geometry_helpers():
    box = Box3D([0.1, -0.2, 0.05], [0.2, 0.1, 0.1], 0.7)
    pts = B.cell_points(box, 4).reshape(-1, 3)
    assert box.contains(pts).all() and np.allclose(pts.mean(0), box.center)
    perms = B.rotation_perms(3, 4)
    assert all(sorted(p) == list(range(27)) for p in perms)
    p = np.arange(27)
    for _ in range(4):  # four quarter turns are the identity
        p = p[perms[1]]
    assert np.array_equal(p, np.arange(27)) and not np.array_equal(perms[1], perms[0])
    # a box between the camera and a point occludes it; the point's own box does not
    cam = np.array([[0.0, 0.0, 1.0]])
    boxes = [Box3D([0, 0, 0.05], [0.1, 0.1, 0.1]), Box3D([0, 0, 0.5], [0.1, 0.1, 0.1])]
    occ = B._occluded(cam, np.array([[0, 0, 0.05], [0.3, 0, 0.05]]), np.array([0, 0]), boxes, 1.0)
    assert occ.tolist() == [[True, False]]
    assert not B._occluded(cam, np.array([[0, 0, 0.5]]), np.array([1]), boxes, 1.0).any()


def test_the_24_turns_map_box_axes_onto_axes_and_a_forced_turn_is_the_one_compared():
    M = B.turn_matrices(24)
    assert len({m.tobytes() for m in M}) == 24 and all(round(np.linalg.det(m)) == 1 for m in M)
    assert np.array_equal(M[:4], B.turn_matrices(4))  # the quarter turns about z first: indices agree
    inv = B.turn_inverses(24)
    assert all(np.array_equal(M[inv[r]] @ M[r], np.eye(3)) for r in range(24))
    g = 3
    perms = B.rotation_perms(g, 24)
    assert np.array_equal(perms[:4], B.rotation_perms(g, 4))
    coords = np.stack(np.unravel_index(np.arange(g ** 3), (g, g, g)), -1) - 1  # centred cell coordinates
    for m, p in zip(M, perms):  # cell c of one object faces cell perm[c] of its partner: M c
        assert np.array_equal(coords[p], coords @ m.T)
    # a partner whose grid is the object's turned by r: the comparison picks r, and forcing r gives the same scores
    gen = torch.Generator().manual_seed(0)
    desc = torch.nn.functional.normalize(torch.randn(1, g ** 3, 8, generator=gen), dim=-1)
    r = 13  # not its own inverse
    partner = torch.empty_like(desc)
    partner[0, perms[r]] = desc[0]  # partner cell M c holds the object's cell c
    noise = torch.nn.functional.normalize(torch.randn(2, g ** 3, 8, generator=gen), dim=-1)
    all_desc, valid = torch.cat([desc, partner, noise]), torch.ones(4, g ** 3, dtype=torch.bool)
    cfg = B.BaselineConfig(grid=g, rotations=24)
    S = torch.einsum("ipc,jqc->ipjq", all_desc, all_desc)
    turns = B.choose_turns(B.turned_similarity(S, cfg), valid, cfg)
    assert int(turns[0, 1]) == r and int(turns[1, 0]) == inv[r]
    chosen = B.score_cells(all_desc, valid, cfg)
    assert chosen[0] == pytest.approx(0.0, abs=1e-6)  # its exact copy, turned, is found
    assert torch.allclose(B.score_cells(all_desc, valid, cfg, turns), chosen)
    assert B.score_cells(all_desc, valid, cfg, torch.zeros(4, 4, dtype=torch.long))[0] > 0.1  # unturned: no match


def test_calibration():
    s = np.array([1.0, 1.1, 0.9, 1.05, 3.0])
    p = B.calibrate(s)
    assert np.all(np.diff(p[np.argsort(s)]) >= 0) and p[4] > 0.9 and np.all(p[:4] < 0.5)
    assert B.calibrate(np.ones(4)).tolist() == pytest.approx([1 / (1 + np.exp(3))] * 4)  # all alike: normal
    assert B.calibrate([0.3, 0.5]).tolist() == [0.5, 0.5] and B.calibrate([0.2]).tolist() == [0.0]
    assert B.calibrate([]).shape == (0,)


def _evaluate(data, out, *flags, checkpoint=DEFAULT_CHECKPOINT):
    r = subprocess.run([str(BIN / "odd-one-out"), "evaluate", "--checkpoint", str(checkpoint), "--data",
                        str(data), "--threads", "1", "--json", str(out), *flags], capture_output=True, text=True,
                       timeout=240)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return json.loads(out.read_text()), r.stdout


def _same_fields(a, b):
    if isinstance(a, dict):
        return isinstance(b, dict) and set(a) == set(b) and all(_same_fields(a[k], b[k]) for k in a)
    return not isinstance(b, dict)


def test_evaluate_reports_the_baseline_beside_the_model(tmp_path):
    data = tmp_path / "data"
    generate(GeneratorConfig(kind="toys", views=6, size=128, objects=(4, 5)), 2, data, 906, split="unseen-test",
             progress=False)
    trunk = trunk_checkpoint(tmp_path / "trunk.pt")
    rep, out = _evaluate(data, tmp_path / "gt.json", "--baseline", "--gt-boxes", checkpoint=trunk)
    assert rep["boxes"] == "ground truth" and _same_fields(rep["metrics"], rep["baseline"])
    # the default baseline is the model's own prior (here its backbone levels): no second network runs
    assert rep["baseline_config"]["from_model_prior"] and "trunk" in rep["baseline_config"]["teacher"]
    assert rep["baseline_config"]["grid"] == 7
    for m in (rep["metrics"], rep["baseline"]):
        assert m["all"]["box_recall_iou50"] == 100.0 and m["by_split"]["unseen-test"]["box_recall_iou50"] == 100.0
    for row in rep["scenes"]:
        assert len(row["pred"]) == len(row["gt"]) and row["matches"] == list(range(len(row["gt"])))
        assert all(0 <= p["baseline_score"] <= 1 and 0 <= p["score"] <= 1 for p in row["pred"])
    assert "  model " in out and "  baseline " in out
    # predicted boxes: the baseline scores the model's boxes
    rep, out = _evaluate(data, tmp_path / "pred.json", "--baseline")
    assert rep["boxes"] == "predicted" and _same_fields(rep["metrics"], rep["baseline"])
    # the shipped checkpoint's prior is the separate MobileNetV2 at 2x: also taken from the inspection
    assert rep["baseline_config"]["from_model_prior"] and rep["baseline_config"]["scales"] == [2.0]
    # both score the same boxes (each predicted box carries both scores); the recall in the metrics is the one the
    # per-scene rows' matches give; the learned scores are not the comparison's
    hits, n_gt = sum(m >= 0 for row in rep["scenes"] for m in row["matches"]), sum(len(r["gt"]) for r in rep["scenes"])
    assert rep["metrics"]["all"]["box_recall_iou50"] == pytest.approx(100 * hits / n_gt)
    pairs = [(p["score"], p["baseline_score"]) for row in rep["scenes"] for p in row["pred"]]
    assert pairs and not np.allclose(*zip(*pairs))
    assert "baseline" in out
    # --baseline-teacher mobilenet_v2: the separate MobileNetV2 at 2x (the comparison before issue 20), another score
    rep2, _ = _evaluate(data, tmp_path / "2x.json", "--baseline", "--gt-boxes", "--baseline-teacher", "mobilenet_v2",
                        checkpoint=trunk)
    cfg2 = rep2["baseline_config"]
    assert not cfg2["from_model_prior"] and cfg2["teacher"] == "mobilenet_v2" and cfg2["scales"] == [2.0]
    ours = [p["baseline_raw"] for row in json.loads((tmp_path / "gt.json").read_text())["scenes"] for p in row["pred"]]
    theirs = [p["baseline_raw"] for row in rep2["scenes"] for p in row["pred"]]
    assert len(ours) == len(theirs) and not np.allclose(ours, theirs)
    # without --baseline: no baseline fields
    rep, _ = _evaluate(data, tmp_path / "plain.json", "--limit", "1")
    assert "baseline" not in rep and all("baseline_score" not in p for row in rep["scenes"] for p in row["pred"])


def test_evaluate_names_the_scenes_it_skips_and_fails_when_none_is_left(tmp_path):
    """Scenes whose images cannot be read are skipped with their reason (log and JSON); with none left to measure
    evaluate exits 2 instead of reporting metrics of nothing."""
    import shutil

    data = tmp_path / "data"
    generate(GeneratorConfig(kind="toys", views=6, size=64, objects=(3, 3)), 2, data, 907, split="seen-test",
             progress=False)
    first, second = scene_dirs(data)
    shutil.rmtree(first / "RGB")
    rep, out = _evaluate(data, tmp_path / "one.json", "--views", "3")
    assert [s["scene"] for s in rep["scenes"]] == [second.name]
    assert [s["scene"] for s in rep["skipped"]] == [first.name] and rep["skipped"][0]["reason"]
    shutil.rmtree(second / "RGB")
    r = subprocess.run([str(BIN / "odd-one-out"), "evaluate", "--checkpoint", str(DEFAULT_CHECKPOINT), "--data",
                        str(data), "--views", "3", "--threads", "1", "--json", str(tmp_path / "none.json")],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 2 and "no scene" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert r.stderr.count(f"skipping {first}") == 1 and r.stderr.count(f"skipping {second}") == 1
    rep = json.loads((tmp_path / "none.json").read_text())
    assert rep["scenes"] == [] and {s["scene"] for s in rep["skipped"]} == {first.name, second.name}
