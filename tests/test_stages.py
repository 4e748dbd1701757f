"""The model as stages (issue 35): every box estimator x object scorer pair builds from its config and inspects a
real scene through the one sequence; the guard watches whichever scorer runs; checkpoints written before the split
load with their settings (or are refused in one line); one partial-load helper; the shipped configuration is a
preset."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from odd_one_out_ros.data.scene_meta import read_scene_meta
from odd_one_out_ros.inspection.guard import FiniteGuard, NonFiniteOutput
from odd_one_out_ros.model import checkpoint as ck
from odd_one_out_ros.model import config as C
from odd_one_out_ros.model.estimators import ESTIMATORS
from odd_one_out_ros.model.inference import Inspector
from odd_one_out_ros.model.network import STAGES, OddOneOutNet
from odd_one_out_ros.model.scorers import SCORERS
from odd_one_out_ros.resources import DEFAULT_CHECKPOINT, SAMPLE_SCENE

PAIRS = [(e, s) for e in ESTIMATORS for s in SCORERS]


@pytest.fixture(scope="module")
def scene():
    meta = read_scene_meta(SAMPLE_SCENE)
    return meta, meta.posed_views(meta.even_views(5))


def tiny(estimator: str, scorer: str, prior: bool = False) -> C.ModelConfig:
    return (C.preset("tiny").changed("boxes", estimator=estimator).changed("scorer", kind=scorer)
            .changed("scorer.matcher", prior=prior).validate())


def test_registries_name_what_the_config_accepts():
    assert tuple(ESTIMATORS) == C.BOX_ESTIMATORS and tuple(SCORERS) == C.SCORERS
    with pytest.raises(ValueError, match="boxes.estimator must be one of"):
        C.preset("tiny").changed("boxes", estimator="yolo").validate()
    with pytest.raises(ValueError, match="scorer.kind must be one of"):
        C.preset("tiny").changed("scorer", kind="oracle").validate()


@pytest.mark.parametrize("estimator,scorer", PAIRS)
def test_every_estimator_and_scorer_pair_inspects_a_real_scene(estimator, scorer, scene):
    """Each pair: its own boxes (any number on random weights, each with a score in [0, 1]) and the true boxes
    scored, the stages timed, the comparison's raw scores exactly where the scorer runs it."""
    meta, views = scene
    torch.manual_seed(0)
    net = OddOneOutNet(tiny(estimator, scorer)).eval()
    assert type(net.boxes) is ESTIMATORS[estimator] and type(net.scorer) is SCORERS[scorer]
    inspector = Inspector(net)
    own = inspector.inspect(views)
    assert all(0 <= o.score <= 1 and 0 <= o.box_score <= 1 for o in own.objects)
    truth = [o.box for o in meta.objects]
    res = inspector.inspect(views, truth)
    assert [o.box for o in res.objects] == truth and all(o.box_score == 1.0 for o in res.objects)
    scores = np.array([o.score for o in res.objects])
    assert np.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()
    assert (res.prior_raw is not None) == (scorer != "matcher")
    if res.prior_raw is not None:
        assert res.prior_raw.shape == (len(truth),) and np.ptp(res.prior_raw) > 0  # the copies differ
    from odd_one_out_ros.model.inference import views_to_tensors

    out = net(*views_to_tensors(views, net.cfg.image_size, "cpu"))
    assert set(out.seconds) == set(STAGES) and all(t >= 0 for t in out.seconds.values())


def test_the_comparison_scorer_is_the_baseline_calibrated(scene):
    """scorer "comparison": probability = model/baseline.py calibrate of its raw scores (no weights at all)."""
    from odd_one_out_ros.model.baseline import calibrate

    meta, views = scene
    net = OddOneOutNet(tiny("density", "comparison")).eval()
    assert not list(net.scorer.parameters())
    res = Inspector(net).inspect(views, [o.box for o in meta.objects])
    np.testing.assert_allclose([o.score for o in res.objects], calibrate(res.prior_raw, net.scorer.comparison
                                                                         .baseline_cfg), rtol=1e-5)


def test_the_matcher_with_its_prior_runs_the_comparison_too(scene):
    meta, views = scene
    torch.manual_seed(0)
    net = OddOneOutNet(tiny("density", "matcher", prior=True)).eval()
    res = Inspector(net).inspect(views, [o.box for o in meta.objects])
    assert res.prior_raw is not None and len(res.prior_raw) == len(meta.objects)


@pytest.mark.parametrize("scorer", list(SCORERS))
def test_the_guard_watches_whichever_scorer_runs(scorer, scene):
    """A NaN logit out of any scorer is an error, not a score (inspection/guard.py hooks the scorer stage)."""
    meta, views = scene
    net = OddOneOutNet(tiny("density", scorer)).eval()

    broken = []

    def corrupt(module, inputs, out):
        if broken:
            out.logits[0] = out.logits[0] * float("nan")
        return out

    net.scorer.register_forward_hook(corrupt)  # runs before the guard's hook: the guard sees what it returns
    truth = [o.box for o in meta.objects]
    guard = FiniteGuard(Inspector(net))
    assert len(guard(views, truth).objects) == len(truth)  # as it is: finite
    broken.append(True)
    with pytest.raises(NonFiniteOutput, match="anomaly logits"):
        guard(views, truth)


def test_the_shipped_checkpoint_is_the_cpu_default_preset_and_loads_from_the_old_format():
    blob = torch.load(DEFAULT_CHECKPOINT, map_location="cpu", weights_only=True)
    assert blob["format"] == ck.FORMAT_V1 and "matcher" in blob["config"]  # written before the stages
    read = ck.read_checkpoint(DEFAULT_CHECKPOINT)
    assert read["format"] == ck.FORMAT and read["upgraded_from"] == ck.FORMAT_V1
    shipped = read["config"]
    # the preset differs only in its name and in the ImageNet weights a training run starts from
    assert dataclasses.replace(shipped, name="cpu_default", encoder=C.preset("cpu_default").encoder) == \
        C.preset("cpu_default")
    assert shipped.scorer.kind == "comparator" and shipped.boxes.heatmap.refine
    net, _ = ck.load_checkpoint(DEFAULT_CHECKPOINT)
    assert not any(k.startswith("scorer.matcher") for k in net.state_dict())  # stage 2's matcher never ran: dropped
    assert {k.split(".")[0] for k in net.state_dict()} == {"scene", "boxes", "scorer"}


def test_an_old_config_reads_into_the_sections_it_became():
    old = {"name": "cpu", "matcher": {"dim": 64, "heads": 8, "prior": True, "prior_features": "trunk",
                                      "prior_levels": "4|8+16", "prior_grid": 7, "comparator": False,
                                      "comparator_dim": 16},
           "boxes": {"estimator": "heatmap", "score_threshold": 0.4, "occupancy_threshold": 0.2, "refine": True,
                     "max_objects": 9, "soft_height": True}}
    cfg = C.ModelConfig.from_dict(old)
    assert cfg.scorer.kind == "matcher" and cfg.scorer.matcher.prior and cfg.scorer.matcher.dim == 64
    assert (cfg.scorer.comparison.features, cfg.scorer.comparison.levels, cfg.scorer.comparison.grid) == \
        ("trunk", "4|8+16", 7)
    assert cfg.scorer.comparator.dim == 16
    assert cfg.boxes.max_objects == 9 and cfg.boxes.heatmap.score_threshold == 0.4 and cfg.boxes.heatmap.refine
    assert cfg.boxes.density.occupancy_threshold == 0.2 and cfg.boxes.density.soft_height
    with pytest.raises(ValueError, match="unknown fields"):  # a key of no section is still an error
        C.ModelConfig.from_dict({"matcher": {}, "boxes": {"colour": 1}})
    assert C.ModelConfig.from_dict(C.preset("cpu_default").to_dict()) == C.preset("cpu_default")


def _v1_blob(net: OddOneOutNet, tmp_path) -> dict:
    """net saved as a checkpoint of FORMAT_V1 would hold it (tests/test_model_io.py as_format_v1)."""
    from tests.test_model_io import as_format_v1

    ck.save_checkpoint(tmp_path / "today.pt", net)
    return as_format_v1(torch.load(tmp_path / "today.pt", weights_only=True))


@pytest.mark.parametrize("estimator,scorer", [("heatmap", "comparator"), ("density", "matcher")])
def test_an_old_format_checkpoint_gives_the_same_inspection(estimator, scorer, scene, tmp_path):
    meta, views = scene
    torch.manual_seed(1)
    net = OddOneOutNet(tiny(estimator, scorer, prior=scorer == "matcher")).eval()
    torch.save(_v1_blob(net, tmp_path), tmp_path / "old.pt")
    old, _ = ck.load_checkpoint(tmp_path / "old.pt")
    assert old.cfg == net.cfg
    truth = [o.box for o in meta.objects]
    a, b = Inspector(net).inspect(views, truth), Inspector(old).inspect(views, truth)
    assert [o.score for o in a.objects] == [o.score for o in b.objects]


def test_an_old_checkpoint_that_fits_no_network_is_refused_in_one_line(tmp_path, capsys):
    from odd_one_out_ros.cli import main as cli_main

    blob = _v1_blob(OddOneOutNet(tiny("density", "matcher")), tmp_path)
    blob["model"]["matcher.extra.weight"] = torch.zeros(3)  # a module no network of this config has
    torch.save(blob, tmp_path / "odd.pt")
    with pytest.raises(ck.CheckpointError, match="weights do not fit"):
        ck.load_checkpoint(tmp_path / "odd.pt")
    assert cli_main(["detect", "--checkpoint", str(tmp_path / "odd.pt"), "--scene", str(SAMPLE_SCENE)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "weights do not fit" in err and "Traceback" not in err


def test_with_parts_keeps_what_fits_and_starts_the_new_part(tmp_path):
    torch.manual_seed(2)
    dense = OddOneOutNet(tiny("density", "matcher")).eval()
    cfg = dense.cfg.changed("boxes", estimator="heatmap").changed("boxes.heatmap", refine=True)
    net, new = ck.with_parts(dense, cfg)
    assert new == ["boxes.head", "boxes.refiner"]
    mine = net.state_dict()
    assert all(torch.equal(v, mine[k]) for k, v in dense.state_dict().items())  # scene and matcher kept
    again, new = ck.with_parts(net, cfg)
    assert new == [] and all(torch.equal(v, again.state_dict()[k]) for k, v in mine.items())
    _, new = ck.with_parts(net, cfg, fresh=("boxes.head",))
    assert new == ["boxes.head"]
    other = C.preset("tiny").changed("", volume_channels=4).changed("scorer.matcher", dim=8, heads=2)
    with pytest.raises(ValueError, match="scene encoder's weights do not fit"):
        ck.with_parts(net, other)


def test_the_network_module_is_small_and_branches_on_no_stage():
    from pathlib import Path

    import odd_one_out_ros.model.network as N

    src = Path(N.__file__).read_text()
    assert len(src.splitlines()) <= 250
    for name in list(C.BOX_ESTIMATORS) + list(C.SCORERS):  # no `if ... == "heatmap"` and the like
        assert f'"{name}"' not in src.split('"""', 2)[2]


def test_a_cpu_default_model_round_trips_through_a_checkpoint(tmp_path):
    cfg = C.preset("cpu_default").changed("encoder", weights="")
    torch.manual_seed(3)
    net = OddOneOutNet(cfg)
    ck.save_checkpoint(tmp_path / "m.pt", net)
    loaded, blob = ck.load_checkpoint(tmp_path / "m.pt")
    assert blob["format"] == ck.FORMAT and "upgraded_from" not in blob and loaded.cfg == cfg
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in net.state_dict().items())
    assert math.isclose(loaded.cfg.boxes.heatmap.score_threshold, 0.35)


def test_stage_two_continues_the_matcher_an_old_comparator_checkpoint_trained(tmp_path):
    """The shipped file's stage-2 volume matcher is not the model's scorer, but it is kept aside ("aux_scorer"):
    stage 2 of a fine-tune continues it instead of a random matcher."""
    from odd_one_out_ros.training.trainer import stage2_scorer

    blob = ck.read_checkpoint(DEFAULT_CHECKPOINT)
    v1 = torch.load(DEFAULT_CHECKPOINT, map_location="cpu", weights_only=True)["model"]
    assert set(blob["aux_scorer"]) == {k for k in v1 if k.startswith("matcher.")}
    net, _ = ck.load_checkpoint(DEFAULT_CHECKPOINT)
    aux = stage2_scorer(net, blob["aux_scorer"])
    for k, v in aux.state_dict().items():
        assert torch.equal(v, blob["aux_scorer"][k].float()), k
    fresh = stage2_scorer(net, None)
    assert not torch.equal(fresh.state_dict()["matcher.inp.weight"], aux.state_dict()["matcher.inp.weight"])
    assert stage2_scorer(OddOneOutNet(tiny("density", "matcher")), None) is None  # its own scorer trains end to end


def test_with_parts_never_half_loads_a_module():
    """Another variant's matcher (A has no attention blocks, B has) starts anew whole; only a prior's two scalars
    may be missing from a module that is kept."""
    torch.manual_seed(4)
    a = OddOneOutNet(tiny("density", "matcher").changed("", variant="A"))
    b_cfg = tiny("density", "matcher").changed("", variant="B")
    _, new = ck.with_parts(a, b_cfg)
    assert new == ["scorer.matcher"]
    _, new = ck.with_parts(OddOneOutNet(b_cfg), b_cfg.changed("scorer.matcher", prior=True))
    assert new == []  # the prior's scalars start at their init, the rest is kept


def test_only_settings_nothing_is_built_from_may_change_under_a_network():
    net = OddOneOutNet(tiny("heatmap", "comparison"))
    net.cfg = net.cfg.changed("boxes.heatmap", score_threshold=0.6).changed("boxes.density", occupancy_threshold=0.2)
    assert net.boxes.cfg.heatmap.score_threshold == 0.6  # what the estimator decodes with
    for other in (net.cfg.changed("boxes.heatmap", refine=True), net.cfg.changed("scorer", kind="matcher"),
                  net.cfg.changed("", volume_channels=4)):
        with pytest.raises(ValueError, match="another network"):
            net.cfg = other
