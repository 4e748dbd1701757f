"""Weights in and out: backbone weight files, teachers, checkpoints, the inference API."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torchvision

from odd_one_out_ros.geometry import Box3D, PinholeCamera, iou_3d, look_at
from odd_one_out_ros.inspection.loader import load_inspector
from odd_one_out_ros.model.checkpoint import (
    FORMAT,
    FORMAT_V1,
    CheckpointError,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from odd_one_out_ros.model.config import EncoderConfig, preset
from odd_one_out_ros.model.encoder2d import FPNEncoder, deep_sort_mobilenet_weights
from odd_one_out_ros.model.inference import Inspector, views_to_tensors
from odd_one_out_ros.model.network import OddOneOutNet
from odd_one_out_ros.model.teacher import DinoV2Teacher, FeaturePCA, MobileNetTeacher, TeacherCache, build_teacher
from odd_one_out_ros.views import PosedView

torch.set_num_threads(1)


def test_mobilenet_backbone_loads_the_offline_imagenet_weights():
    enc = FPNEncoder(EncoderConfig(name="mobilenet_v2_fpn", out_channels=8, fpn_channels=16, weights="deep-sort"))
    state = torch.load(deep_sort_mobilenet_weights(), map_location="cpu", weights_only=True)
    torch.testing.assert_close(enc.backbone[0][0].weight, state["features.0.0.weight"])
    torch.testing.assert_close(enc.backbone[17].conv[2].weight, state["features.17.conv.6.weight"])
    assert enc(torch.rand(2, 3, 64, 96)).shape == (2, 8, 16, 24)


def test_resnet_backbone_loads_a_local_torchvision_file(tmp_path):
    ref = torchvision.models.resnet50(weights=None)
    path = tmp_path / "resnet50.pth"
    torch.save(ref.state_dict(), path)
    enc = FPNEncoder(EncoderConfig(name="resnet50_fpn", out_channels=8, fpn_channels=16, weights=str(path)))
    torch.testing.assert_close(enc.backbone.layer4[2].conv3.weight, ref.layer4[2].conv3.weight)
    assert enc(torch.rand(1, 3, 64, 64)).shape == (1, 8, 16, 16)
    torch.save({"conv1.weight": torch.zeros(3)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="not a torchvision ResNet-50"):
        FPNEncoder(EncoderConfig(name="resnet50_fpn", weights=str(tmp_path / "bad.pth")))
    (tmp_path / "trunc.pth").write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="cannot read backbone weights"):
        FPNEncoder(EncoderConfig(name="resnet50_fpn", weights=str(tmp_path / "trunc.pth")))


def test_dinov2_teacher_reads_an_official_format_file(tmp_path):
    """Random weights saved under the official facebookresearch key names (518 px position grid)."""
    import timm

    src = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=518, num_classes=0)
    state = {k: v for k, v in src.state_dict().items()}
    state["mask_token"] = torch.zeros(1, 384)  # present in the official file, unused by timm
    path = tmp_path / "dinov2_vits14_pretrain.pth"
    torch.save(state, path)
    teacher = build_teacher("dinov2_vits14", str(path))
    out = teacher(torch.rand(2, 3, 256, 256))
    assert out.shape == (2, 384, 32, 32) and torch.isfinite(out).all()
    torch.testing.assert_close(teacher.net.blocks[11].mlp.fc2.weight, src.blocks[11].mlp.fc2.weight)
    with pytest.raises(ValueError, match="needs a local weights file"):
        build_teacher("dinov2_vits14")
    torch.save({"head.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a DINOv2"):
        DinoV2Teacher(str(tmp_path / "other.pth"))


def test_offline_teacher_and_cache(tmp_path):
    teacher = MobileNetTeacher()
    assert all(not p.requires_grad for p in teacher.parameters())
    img = (np.random.default_rng(0).random((256, 256, 3)) * 255).astype(np.uint8)
    cache = TeacherCache(teacher, tmp_path / "cache")
    a = cache(img)
    assert a.shape == (128, 32, 32)
    b = cache(img)
    assert cache.computed == 1  # computed once per image
    torch.testing.assert_close(a, b)
    fresh = TeacherCache(teacher, tmp_path / "cache")  # another process: read from disk
    torch.testing.assert_close(fresh(img), a)
    assert fresh.computed == 0
    # different images give different features
    assert not torch.allclose(cache(img[::-1].copy()), a)


def test_feature_pca_reduces_to_the_leading_components():
    torch.manual_seed(0)
    basis = torch.linalg.qr(torch.randn(10, 10))[0]
    coeffs = torch.randn(4000, 10) * torch.tensor([5.0, 3, 1, .1, .1, .1, .1, .1, .1, .1])
    feats = (coeffs @ basis.T).T.reshape(10, 40, 100)[None].permute(0, 1, 2, 3)
    pca = FeaturePCA(10, 3).fit(feats)
    out = pca(feats)
    assert out.shape == (1, 3, 40, 100)
    var = out.flatten(2).var(dim=-1)[0]
    assert var[0] > var[1] > var[2] and float(var.sum() / feats.flatten(2).var(dim=-1).sum()) > 0.99


def test_checkpoint_round_trip_and_bad_files(tmp_path):
    torch.manual_seed(0)
    cfg = preset("tiny")
    net = OddOneOutNet(cfg).eval()
    path = save_checkpoint(tmp_path / "m.pt", net, meta={"epochs": 3})
    net2, blob = load_checkpoint(path)
    assert blob["config"] == cfg and blob["meta"] == {"epochs": 3}
    x = torch.rand(1, 2, 3, cfg.image_size, cfg.image_size)
    K = torch.tensor([[50.0, 0, 31.5], [0, 50, 31.5], [0, 0, 1]]).expand(1, 2, 3, 3)
    T = torch.stack([torch.tensor(look_at([1, a, 0.6], [0, 0, 0]).as_matrix(), dtype=torch.float32)
                     for a in (0.0, 0.5)])[None]
    with torch.no_grad():
        torch.testing.assert_close(net2.scene.volume(x, K, T).fv, net.scene.volume(x, K, T).fv)
    half = save_checkpoint(tmp_path / "h.pt", net, half=True)
    assert half.stat().st_size < 0.6 * path.stat().st_size
    load_checkpoint(half)
    # truncated, foreign, code-carrying and mismatching files: clear errors, nothing executed
    (tmp_path / "trunc.pt").write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        read_checkpoint(tmp_path / "trunc.pt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not an odd_one_out_ros checkpoint"):
        read_checkpoint(tmp_path / "foreign.pt")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format": "x", "payload": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="not a readable checkpoint") as refused:
        read_checkpoint(tmp_path / "evil.pt")
    assert "weights_only" not in str(refused.value) and "\n" not in str(refused.value)  # one line, no bad advice
    blob = torch.load(path, weights_only=True)
    assert blob["format"] == FORMAT and any(k.startswith("scorer.matcher.") for k in blob["model"])
    blob["model"] = {k: v for k, v in blob["model"].items() if not k.startswith("scorer.matcher.")}
    torch.save(blob, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        read_checkpoint(tmp_path / "missing.pt")


def test_checkpoints_that_cannot_work_are_refused_at_load(tmp_path, capsys):
    """Issue 14: NaN weights loaded and then reported empty trays; image_size=-5 loaded and failed every
    inspection; a dict without `model` or with a list there ended in a traceback. Each is a CheckpointError now
    (a ValueError: the detector and the commands print it in one line and exit 2); old and half files still load."""
    from odd_one_out_ros.cli import main as cli_main
    from odd_one_out_ros.resources import SAMPLE_SCENE

    torch.manual_seed(0)
    net = OddOneOutNet(preset("tiny")).eval()
    good = torch.load(save_checkpoint(tmp_path / "good.pt", net, half=True), weights_only=True)

    def variant(name, edit):
        blob = torch.load(tmp_path / "good.pt", weights_only=True)
        edit(blob)
        torch.save(blob, tmp_path / name)
        return tmp_path / name

    key = next(k for k, v in good["model"].items() if v.is_floating_point())
    cases = {
        "nan.pt": (lambda b: b["model"][key].view(-1)[3:5].fill_(float("nan")), "weights are not finite"),
        "inf.pt": (lambda b: b["model"][key].view(-1)[0].fill_(float("inf")), r"\(1 NaN/inf values in 1 tensors"),
        "size.pt": (lambda b: b["config"].update(image_size=-5), "image_size must be an integer >= 32.*got -5"),
        "voxel.pt": (lambda b: b["config"]["grid"].update(voxel_size=0.0), "grid.voxel_size must be > 0"),
        "enc.pt": (lambda b: b["config"]["encoder"].update(name="vit"), "encoder.name must be one of"),
        "no_model.pt": (lambda b: b.pop("model"), "'model' is missing"),
        "list_model.pt": (lambda b: b.update(model=[1, 2]), "'model' is list, not a mapping of tensors"),
        "str_entry.pt": (lambda b: b["model"].update({key: "weights"}), "is str, not a tensor"),
        "meta.pt": (lambda b: b.update(meta=[1]), "'meta' is list, not a mapping"),
        "no_config.pt": (lambda b: b.pop("config"), "bad model config"),
    }
    for name, (edit, match) in cases.items():
        path = variant(name, edit)
        with pytest.raises(CheckpointError, match=match) as e:
            load_checkpoint(path)
        assert str(path) in str(e.value) and "\n" not in str(e.value)
    # the same through a command: one line on stderr, exit 2, no traceback
    capsys.readouterr()
    assert cli_main(["detect", "--checkpoint", str(tmp_path / "nan.pt"), "--scene", str(SAMPLE_SCENE)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("odd-one-out detect: ") and "weights are not finite" in err[0]
    # a checkpoint from before a config field existed takes its default
    old = variant("old.pt", lambda b: (b["config"]["scorer"]["matcher"].pop("prior"),
                                       b["config"]["boxes"]["density"].pop("soft_height")))
    net2, blob = load_checkpoint(old)
    assert blob["config"].scorer.matcher.prior is False and blob["config"].boxes.density.soft_height is False
    # so does one of the layout before the stages (FORMAT_V1: flat matcher and boxes sections, v1 weight names)
    v1 = as_format_v1(torch.load(tmp_path / "good.pt", weights_only=True))
    v1["config"]["matcher"].pop("prior")
    v1["config"]["boxes"].pop("soft_height")
    torch.save(v1, tmp_path / "old_v1.pt")
    net3, blob = load_checkpoint(tmp_path / "old_v1.pt")
    assert blob["config"].scorer.matcher.prior is False and blob["config"].boxes.density.soft_height is False
    assert blob["config"] == net.cfg  # the defaults of the missing fields are the tiny preset's
    for k, v in net3.state_dict().items():
        torch.testing.assert_close(v, good["model"][k].to(v.dtype))


def as_format_v1(blob: dict) -> dict:
    """A checkpoint dict of today's layout as FORMAT_V1 wrote it (before the model was split into stages): a flat
    `matcher` section (its comparison's fields prefixed prior_, the comparator a switch) and a flat `boxes` section,
    and the weights under the names of the modules before the stages."""
    cfg = dict(blob["config"])
    scorer, boxes = cfg.pop("scorer"), cfg.pop("boxes")
    cfg["matcher"] = {**scorer["matcher"], **{"prior_" + k: v for k, v in scorer["comparison"].items()},
                      "comparator": scorer["kind"] == "comparator",
                      **{"comparator_" + k: v for k, v in scorer["comparator"].items()}}
    cfg["boxes"] = {"estimator": boxes["estimator"], "max_objects": boxes["max_objects"], **boxes["density"],
                    **boxes["heatmap"]}
    renames = {"scene.": "", "boxes.head.": "box_head.", "boxes.refiner.": "box_refiner.", "scorer.": ""}
    model = {}
    for k, v in blob["model"].items():
        new = next(p for p in renames if k.startswith(p))
        model[renames[new] + k[len(new):]] = v
    return {**blob, "format": FORMAT_V1, "config": cfg, "model": model}


def test_finite_guard_turns_a_nan_volume_into_an_error_not_an_empty_tray():
    from odd_one_out_ros.inspection.guard import FiniteGuard, NonFiniteOutput, check_finite_result
    from odd_one_out_ros.model.inference import InspectionResult, ObjectResult

    cfg = preset("tiny")
    net = OddOneOutNet(cfg).eval()
    with torch.no_grad():
        net.scene.density_head.net[-1].bias.fill_(float("nan"))  # finite at load time is not enough: the volume is NaN
    views = []
    for a in (0.0, 2.0):
        cam = PinholeCamera(np.array([[50.0, 0, 31.5], [0, 50, 31.5], [0, 0, 1]]), 64, 64,
                            look_at([np.cos(a), np.sin(a), 0.7], [0, 0, 0]))
        views.append(PosedView(np.full((64, 64, 3), 100, np.uint8), cam))
    inspector = Inspector(net, "cpu")
    assert inspector.inspect(views).objects == []  # what used to be published: "0 objects, all clear"
    with pytest.raises(NonFiniteOutput, match="density volume has 2048 non-finite values"):
        FiniteGuard(inspector)(views)
    # an infinite logit would pass as a score of exactly 1.0: the guard watches the logits too
    with torch.no_grad():
        net.scene.density_head.net[-1].bias.fill_(6.0)  # dense: one big object
        net.scorer.matcher.head.mlp[-1].bias.fill_(float("inf"))
    plain = inspector.inspect(views)
    assert plain.objects and all(o.score == 1.0 for o in plain.objects)
    with pytest.raises(NonFiniteOutput, match="anomaly logits has 1 non-finite values"):
        FiniteGuard(inspector)(views)
    box = Box3D([0, 0, 0.05], [0.1, 0.1, 0.1], 0.0)
    check_finite_result(InspectionResult([ObjectResult(box, 0.3, False)]))
    with pytest.raises(NonFiniteOutput, match="non-finite score for object 1"):
        check_finite_result(InspectionResult([ObjectResult(box, 0.3, False), ObjectResult(box, float("nan"), False)]))
    # (Box3D itself refuses non-finite values; duck-typed results from other inspect functions may not)
    odd = SimpleNamespace(center=[0, np.inf, 0], size=[1, 1, 1], yaw=0.0)
    with pytest.raises(NonFiniteOutput, match="non-finite box for object 0"):
        check_finite_result(InspectionResult([ObjectResult(odd, 0.3, False)]))


def test_inspector_finds_objects_in_a_trained_like_volume(tmp_path):
    """End to end through the API with a network whose density head is replaced by known blobs:
    the boxes come back in the world frame and every object gets a score in [0, 1]."""
    cfg = preset("tiny")
    net = OddOneOutNet(cfg).eval()
    # on voxel boundaries of the tiny grid (5 cm voxels), so the voxelised blobs are exact
    truth = [Box3D([-0.2, -0.1, 0.075], [0.2, 0.2, 0.15], 0.0), Box3D([0.125, 0.2, 0.075], [0.15, 0.2, 0.15], 0.0)]
    centers = net.grid.centers().reshape(-1, 3).numpy()
    occ = np.zeros(len(centers), bool)
    for b in truth:
        occ |= b.contains(centers)
    target = torch.tensor(occ.reshape(1, 1, 8, 16, 16), dtype=torch.float32) * 500.0

    class Blobs(torch.nn.Module):
        def forward(self, fv):
            return target.expand(fv.shape[0], -1, -1, -1, -1)

    net.scene.density_head = Blobs()
    path = save_checkpoint(tmp_path / "m.pt", net)  # Blobs has no weights: the state dict lacks the head
    inspector = Inspector(net, "cpu")
    views = []
    for a in np.linspace(0, 6, 5):
        cam = PinholeCamera(np.array([[50.0, 0, 31.5], [0, 50, 31.5], [0, 0, 1]]), 64, 64,
                            look_at([np.cos(a), np.sin(a), 0.7], [0, 0, 0]))
        views.append(PosedView(np.zeros((64, 64, 3), np.uint8), cam))
    result = inspector.inspect(views)
    assert len(result.objects) == 2 and result.n_views == 5
    for t in truth:
        assert max(iou_3d(t, o.box) for o in result.objects) > 0.9
    assert all(0.0 <= o.score <= 1.0 for o in result.objects)
    with pytest.raises(ValueError, match="at least one view"):
        inspector.inspect([])
    with pytest.raises(CheckpointError, match="do not fit"):
        load_inspector(path, "cpu")  # the replaced head's weights are missing: refused, not half-loaded


def test_views_are_resized_and_undistorted():
    K = np.array([[300.0, 0, 159.5], [0, 300, 119.5], [0, 0, 1]])
    cam = PinholeCamera(K, 320, 240, look_at([1, 0, 0.5], [0, 0, 0]), np.array([-0.2, 0.05, 0, 0, 0]))
    img = np.full((240, 320, 3), 128, np.uint8)
    images, Kt, Tt = views_to_tensors([PosedView(img, cam)], 64, "cpu")
    assert images.shape == (1, 1, 3, 64, 64) and float(images.max()) <= 1.0
    np.testing.assert_allclose(Kt[0, 0].numpy(), cam.resized(64, 64).K, rtol=1e-6)
    np.testing.assert_allclose(Tt[0, 0].numpy(), cam.T_cw.as_matrix(), atol=1e-6)


def test_bench_command_writes_latency_and_attention(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "bench.json"
    r = subprocess.run([str(Path(sys.executable).parent / "odd-one-out"), "bench", "--config", "tiny", "--views", "2",
                        "--objects", "3", "--repeat", "1", "--threads", "1", "--attention", "2,4", "--json", str(out)],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert res["views"] == 2 and res["objects"] == 3 and res["latency_ms_median"] > 0 and res["peak_memory_mb"] > 0
    assert set(res["attention_ms_median"]) == {"sparse", "vanilla"}
