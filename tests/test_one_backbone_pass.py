"""Issue 20: one frozen backbone pass per image feeds the feature pyramid, the training-free comparison and, in
training, the teacher's targets; an inspection builds only what it reads; its peak memory is measured in a fresh
process."""
import copy
import dataclasses
import re

import numpy as np
import pytest
import torch

from odd_one_out_ros import benchmark as bench
from odd_one_out_ros.geometry import boxes_to_tensor
from odd_one_out_ros.model.baseline import baseline_scores
from odd_one_out_ros.model.checkpoint import CheckpointError, read_checkpoint
from odd_one_out_ros.model.config import PRIOR_VARIANTS, ModelConfig, preset, prior_level_groups, upgrade_config_dict
from odd_one_out_ros.model.network import OddOneOutNet
from odd_one_out_ros.model.teacher import MobileNetTeacher, TrunkTeacherCache


def _cpu_net(**comparison) -> OddOneOutNet:
    """The cpu preset (the volume matcher with the prior) with the trunk comparison (train --prior-features trunk),
    the ImageNet MobileNetV2 backbone (deep-sort weights) and random other weights; `comparison`: fields of
    ComparisonConfig changed on top."""
    cfg = preset("cpu").changed("scorer.comparison", **{**PRIOR_VARIANTS["trunk"], **comparison})
    torch.manual_seed(0)
    return OddOneOutNet(cfg).eval()


class BackboneCalls:
    """Counts the images through the encoder's backbone (its first layer) and through the 2x teacher's."""

    def __init__(self, net):
        self.images = {"backbone": 0, "teacher": 0}
        self.handles = [net.scene.encoder.backbone[0].register_forward_pre_hook(self._hook("backbone"))]
        self.net = net

    def _hook(self, name):
        def hook(_module, args):
            self.images[name] += args[0].shape[0]
        return hook

    def watch_teacher(self):
        teacher = self.net.scorer.comparison.extractor("cpu")
        self.handles.append(teacher.net[0].register_forward_pre_hook(self._hook("teacher")))


def test_prior_level_groups_parse_and_refuse():
    assert prior_level_groups("4|8+16") == [(4,), (8, 16)]
    assert prior_level_groups("16+8") == [(8, 16)]
    for bad in ("", "3", "8+8", "4|x", "4||8"):
        with pytest.raises(ValueError, match=re.escape("scorer.comparison.levels")):
            prior_level_groups(bad)
    cfg = preset("cpu")
    c = cfg.scorer.comparison
    assert (c.features, c.levels, c.grid) == ("teacher", "8+16", 6)
    cfg = cfg.changed("scorer.comparison", **PRIOR_VARIANTS["trunk"]).validate()
    for field, value in (("features", "dino"), ("grid", 1), ("levels", "2")):
        bad = cfg.changed("scorer.comparison", **{field: value})
        with pytest.raises(ValueError, match=re.escape(f"scorer.comparison.{field}")):
            bad.validate()
    # a paper-config encoder at stride 8 has no stride-4 level to compare
    p = preset("paper").changed("encoder", stride=8).changed("scorer.comparison", features="trunk", levels="4|8")
    with pytest.raises(ValueError, match=re.escape("encoder.stride")):
        p.validate()


def test_a_bad_prior_setting_in_a_checkpoint_is_refused_in_one_line(tmp_path):
    from odd_one_out_ros.resources import DEFAULT_CHECKPOINT

    blob = torch.load(DEFAULT_CHECKPOINT, map_location="cpu", weights_only=True)
    # in today's layout (scorer.comparison.features) and, where the file has it, the layout before the stages
    stages = copy.deepcopy(blob)
    stages["config"] = upgrade_config_dict(stages["config"])
    stages["config"]["scorer"]["comparison"]["features"] = "resnet"
    bad = {"stages.pt": stages}
    if "matcher" in blob["config"]:  # FORMAT_V1: a flat matcher section (matcher.prior_features)
        blob["config"]["matcher"]["prior_features"] = "resnet"
        bad["v1.pt"] = blob
    for name, b in bad.items():
        torch.save(b, tmp_path / name)
        with pytest.raises(CheckpointError, match=re.escape("scorer.comparison.features must be one of")) as e:
            read_checkpoint(tmp_path / name)
        assert "\n" not in str(e.value) and "resnet" in str(e.value)


def test_trunk_levels_8_and_16_are_the_mobilenet_teachers_features():
    """With the ImageNet backbone, the trunk's strides 8 + 16 are exactly the separate teacher's 1x features."""
    net = _cpu_net(levels="8+16")
    images = torch.rand(3, 3, 256, 256)
    with torch.no_grad():
        encoder = net.scene.encoder
        (maps,) = net.scorer.comparison.trunk_maps(encoder.backbone_levels(images), tuple(encoder.level_strides))
        ref = MobileNetTeacher()(images)
    assert maps.shape == ref.shape == (3, 128, 32, 32)
    assert torch.allclose(maps, ref, atol=1e-5, rtol=1e-4)
    assert MobileNetTeacher().is_trunk_of(net.scene.encoder.freeze_backbone())
    other = _cpu_net()
    with torch.no_grad():
        other.scene.encoder.backbone[0][0].weight.mul_(1.1)
    assert not MobileNetTeacher().is_trunk_of(other.scene.encoder.freeze_backbone())


def test_an_inspection_runs_the_backbone_once_per_image():
    """forward with comparison features "trunk": 5 images through the backbone, none through a second network; with
    the old "teacher" layout the 2x MobileNetV2 runs on the same 5 images as well."""
    net = _cpu_net()
    images, K, T, boxes = bench.synthetic_inputs(net.cfg, 5, 4, "cpu")
    calls = BackboneCalls(net)
    with torch.no_grad():
        out = net(images, K, T, [boxes])
        raw = out.raw
    assert calls.images == {"backbone": 5, "teacher": 0}
    # the prior's raw scores: the comparison on the backbone's own levels (grid 7, a stride-4 map and 8+16)
    comparison = net.scorer.comparison
    with torch.no_grad():
        enc = net.scene(images, K, T)
        maps = comparison.maps(enc)[0]
    assert [tuple(m.shape) for m in maps] == [(5, 24, 64, 64), (5, 128, 32, 32)]
    assert comparison.baseline_cfg.grid == 7
    np.testing.assert_allclose(raw[0], baseline_scores(images[0], K[0], T[0], boxes, None, comparison.baseline_cfg,
                                                       maps), rtol=1e-9)
    old = _cpu_net(features="teacher", grid=6)
    calls = BackboneCalls(old)
    calls.watch_teacher()
    with torch.no_grad():
        old(images, K, T, [boxes])
    assert calls.images == {"backbone": 5, "teacher": 5}


def test_an_inspection_volume_pools_the_same_object_volumes_and_logits():
    """An inspection's volume (SceneEncoder.volume inspect_only, what `net.scene` builds unless full) skips the colour
    head and computes V_f only where RoI pooling reads it: the object volumes and the logits equal those of the whole
    field."""
    net = _cpu_net()
    with torch.no_grad():  # a trained-like projector: not all zero outputs
        for p in net.scene.projector.parameters():
            p.normal_(0, 0.2)
    images, K, T, boxes = bench.synthetic_inputs(net.cfg, 3, 5, "cpu")
    bt = boxes_to_tensor(boxes)
    bt[0, :3] += torch.tensor([0.45, 0.0, 0.0])  # one box partly outside the grid
    with torch.no_grad():
        full = net.scene(images, K, T, full=True)
        lean = net.scene(images, K, T)
        assert full.volume.colour is not None and full.volume.feat is not None
        assert lean.volume.colour is None and lean.volume.feat is None
        assert torch.equal(lean.volume.density, full.volume.density)
        z_full, beta_full = net.scorer.object_volumes(full, 0, bt)
        z_lean, beta_lean = net.scorer.object_volumes(lean, 0, bt)
        assert float(z_full[:, -net.cfg.teacher_dim:].abs().max()) > 0
        assert torch.allclose(z_lean, z_full, atol=1e-5) and torch.allclose(beta_lean, beta_full, atol=1e-5)
        ref = net.scorer(net.scorer.prepare(full, [boxes])).logits[0]
        out = net(images, K, T, [boxes])
    assert out.encoding.volume.feat is None  # the inspection's own volume is the lean one
    assert torch.allclose(out.logits[0], ref, atol=1e-4)


def test_training_takes_the_teacher_targets_from_the_backbone_cache(tmp_path):
    """The frozen ImageNet backbone is the MobileNetV2 teacher: one network, one cache of its levels, and the
    targets equal the teacher's own (to the cache's float16)."""
    from odd_one_out_ros.resources import SAMPLE_SCENE
    from odd_one_out_ros.training.trainer import TrainConfig, Trainer, _uint8_images

    cfg = preset("cpu").changed("scorer.comparison", **PRIOR_VARIANTS["trunk"])
    tr = Trainer(cfg, TrainConfig(stage=2, n_input=3, n_target=2, split="", max_steps=1, threads=1),
                 SAMPLE_SCENE, tmp_path / "run")
    assert isinstance(tr.teacher, TrunkTeacherCache) and tr.prior_cache is None
    item = tr.dataset[0]
    image = _uint8_images(item["images"][3:4])[0]
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        ref = MobileNetTeacher()(x)[0]
    got = tr.teacher(image)
    assert got.shape == ref.shape and float((got - ref).abs().max()) <= 2e-3 * float(ref.abs().max())
    tr.run_step([0])
    assert (tmp_path / "run" / "backbone_cache").is_dir()
    assert not (tmp_path / "run" / "teacher_cache").exists() and not (tmp_path / "run" / "prior_cache").exists()
    # a trained (not frozen) backbone is not the teacher: a separate teacher and its cache
    tr2 = Trainer(cfg, TrainConfig(stage=1, n_input=3, n_target=2, split="", max_steps=1, threads=1,
                                   freeze_backbone=False), SAMPLE_SCENE, tmp_path / "run2")
    assert not isinstance(tr2.teacher, TrunkTeacherCache)


def test_peak_memory_is_measured_by_a_mark_that_can_go_down():
    """reset_peak_rss lowers the peak mark after a large allocation is freed; the inspection's peak comes from a
    fresh process and is over the loaded model, not the process's lifetime maximum."""
    if not bench.reset_peak_rss():
        pytest.skip("no /proc/self/clear_refs here")
    big = np.ones(300 * 2 ** 20 // 8)  # 300 MB, touched
    high = bench.rss_mb("VmHWM")
    del big
    assert bench.reset_peak_rss()
    assert bench.rss_mb("VmHWM") < high - 200
    res = bench.inspection_peak_memory(OddOneOutNet(preset("tiny")), 2, 3)
    assert "clear_refs" in res["peak_memory_method"]
    assert 0 < res["peak_memory_increase_mb"] < res["peak_memory_mb"]
    assert 0 <= res["peak_memory_increase_warm_mb"] <= res["peak_memory_increase_mb"] + 20


def test_old_and_new_configs_round_trip():
    cfg = preset("cpu")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    d = cfg.to_dict()
    for key in ("features", "levels", "grid"):
        del d["scorer"]["comparison"][key]
    old = ModelConfig.from_dict(d).validate()
    assert (old.scorer.comparison.features, old.scorer.comparison.grid) == ("teacher", 6)
    # a config from before issue 20 in the layout before the stages (flat matcher and boxes sections, no prior_*
    # fields) reads as the same settings
    d = cfg.to_dict()
    scorer, boxes = d.pop("scorer"), d.pop("boxes")
    d["matcher"] = dict(scorer["matcher"])
    d["boxes"] = {"estimator": boxes["estimator"], "max_objects": boxes["max_objects"], **boxes["density"],
                  **boxes["heatmap"]}
    old = ModelConfig.from_dict(d).validate()
    assert (old.scorer.comparison.features, old.scorer.comparison.grid) == ("teacher", 6)
    assert old == cfg
    # configs are frozen (issue 23): a changed copy, never a change under a network that uses it
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.boxes.density.occupancy_threshold = 0.3
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.image_size = 128
    tuned = cfg.changed("boxes.density", occupancy_threshold=0.3)
    assert tuned.boxes.density.occupancy_threshold == 0.3 and cfg.boxes.density.occupancy_threshold != 0.3
    assert tuned.scorer is cfg.scorer and tuned.boxes.heatmap is cfg.boxes.heatmap
