"""Two-stage training, exact resume, torchrun with 2 CPU processes (gloo), evaluation protocols."""
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from odd_one_out_ros.geometry import Box3D
from odd_one_out_ros.model.checkpoint import read_checkpoint
from odd_one_out_ros.training.evaluate import SceneResult, evaluate
from odd_one_out_ros.training.trainer import match_boxes

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from tests.conftest import small_toys

    return small_toys(tmp_path_factory.mktemp("train_data"), scenes=3, seed=11)


def train(*args, env=None, timeout=240):
    r = subprocess.run([str(BIN / "odd-one-out"), "train", "--config", "tiny", "--threads", "1", "--views", "3,2",
                        "--no-progress", *args], capture_output=True, text=True, timeout=timeout, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return r


def weights(path):
    return read_checkpoint(path)["model"]


def rows(run):
    with open(run / "log.csv") as f:
        return list(csv.DictReader(f))


def test_resume_continues_exactly(data, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    train("--data", str(data), "--out", str(straight), "--epochs", "3", "--steps", "7", "--checkpoint-every", "100")
    train("--data", str(data), "--out", str(split), "--epochs", "3", "--steps", "4", "--checkpoint-every", "100")
    train("--data", str(data), "--out", str(split), "--epochs", "3", "--steps", "7", "--resume")
    a, b = weights(straight / "stage1.pt"), weights(split / "stage1.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["total"] for r in rows(straight)] == [r["total"] for r in rows(split)]
    assert len(rows(split)) == 7


def test_stage_two_trains_the_classifier_from_stage_one(data, tmp_path):
    run = tmp_path / "run"
    train("--data", str(data), "--out", str(run), "--epochs", "1")
    s1 = weights(run / "stage1.pt")
    train("--data", str(data), "--out", str(run), "--stage", "2", "--epochs", "1")
    s2 = weights(run / "stage2.pt")
    matcher = [k for k in s1 if k.startswith("scorer.matcher.")]
    assert matcher and any(not torch.equal(s1[k], s2[k]) for k in matcher)
    r2 = [r for r in rows(run) if r["stage"] == "2"]
    assert len(r2) == 3 and all(float(r["bce"]) > 0 for r in r2)


def test_ablations_share_stage_one_and_several_data_roots(data, tmp_path):
    """Variant A's stage 2 starts from B's stage 1 (the matcher starts anew); C cannot (C distils, B does not).
    Two --data roots are read as one training set; the occupancy loss is logged."""
    run, a = tmp_path / "b", tmp_path / "a"
    second = tmp_path / "second"
    second.mkdir()
    shutil.copytree(sorted((data / "scenes").iterdir())[0], second / "s0")
    train("--variant", "B", "--data", str(data), "--data", str(second), "--split", "", "--out", str(run),
          "--epochs", "1")
    r1 = rows(run)
    assert len(r1) == 4 and all(float(r["occupancy"]) > 0 for r in r1)
    assert json.loads((run / "config.json").read_text())["data"] == [str(data), str(second)]
    train("--variant", "A", "--data", str(data), "--out", str(a), "--stage", "2", "--init", str(run / "stage1.pt"),
          "--epochs", "1")
    s1, s2 = weights(run / "stage1.pt"), weights(a / "stage2.pt")
    assert read_checkpoint(a / "stage2.pt")["config"].variant == "A"
    assert set(s1) - set(s2) or set(s2) - set(s1) or any(s1[k].shape != s2[k].shape for k in s1)  # other matcher
    r = subprocess.run([str(BIN / "odd-one-out"), "train", "--config", "tiny", "--variant", "C", "--data", str(data),
                        "--out", str(tmp_path / "c"), "--stage", "2", "--init", str(run / "stage1.pt")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "A with B, C with full" in r.stderr


def test_stage_two_from_a_tuned_checkpoint_resumes_with_its_config(data, tmp_path):
    """Stage 2 keeps the init checkpoint's config (a tuned box threshold) and --resume continues with it."""
    from odd_one_out_ros.model.checkpoint import load_checkpoint, save_checkpoint

    run = tmp_path / "run"
    train("--data", str(data), "--out", str(run), "--steps", "1")
    net, _ = load_checkpoint(run / "stage1.pt")
    net.cfg = net.cfg.changed("boxes.density", occupancy_threshold=0.123)
    save_checkpoint(run / "tuned.pt", net)
    train("--data", str(data), "--out", str(run), "--stage", "2", "--init", str(run / "tuned.pt"), "--steps", "1",
          "--checkpoint-every", "1")
    train("--data", str(data), "--out", str(run), "--stage", "2", "--resume", "--steps", "2")
    assert read_checkpoint(run / "stage2.pt")["config"].boxes.density.occupancy_threshold == 0.123
    assert [r["step"] for r in rows(run) if r["stage"] == "2"] == ["1", "2"]


def test_reconstruction_loss_goes_down(data, tmp_path):
    run = tmp_path / "overfit"
    one = tmp_path / "one"
    one.mkdir()
    shutil.copytree(sorted((data / "scenes").iterdir())[0], one / "s0")
    train("--data", str(one), "--split", "", "--out", str(run), "--epochs", "40", "--lr", "1e-3")
    losses = [float(r["total"]) for r in rows(run)]
    assert np.mean(losses[-8:]) < 0.8 * np.mean(losses[:8])


def test_torchrun_with_two_cpu_processes(data, tmp_path):
    run = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", str(29500 + os.getpid() % 500),
                        "-m", "odd_one_out_ros.cli", "train", "--config", "tiny", "--data", str(data),
                        "--out", str(run), "--epochs", "1", "--threads", "1", "--views", "3,2", "--no-progress"],
                       capture_output=True, text=True, timeout=240, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert json.loads((run / "config.json").read_text())["world_size"] == 2
    # 3 scenes split between 2 ranks: 2 steps per epoch (rank 0 has scenes 0 and 2 of the order)
    assert len(rows(run)) == 2 and (run / "stage1.pt").is_file()


def test_match_boxes_uses_predictions_or_the_truth():
    rng = np.random.default_rng(0)
    gt = [Box3D([0, 0, 0.05], [0.1, 0.1, 0.1]), Box3D([0.5, 0, 0.05], [0.1, 0.1, 0.1])]
    pred = [Box3D([0.01, 0, 0.05], [0.1, 0.1, 0.1]), Box3D([-0.5, 0, 0.05], [0.1, 0.1, 0.1])]
    out = match_boxes(pred, gt, 0.25, rng)
    assert out[0] is pred[0]
    assert np.allclose(out[1].center, gt[1].center, atol=0.05)  # no prediction there: the (jittered) truth


def _result(pred_scores, offsets, labels=(1, 0, 0), split="unseen-test"):
    gt = [Box3D([0.3 * i, 0, 0.05], [0.1, 0.1, 0.1]) for i in range(len(labels))]
    pred = [Box3D(g.center + [o, 0, 0], g.size) for g, o in zip(gt, offsets)]
    return SceneResult("s", "cup", split, gt, list(labels), ["crack" if y else "" for y in labels], pred,
                       list(pred_scores))


def test_evaluation_protocols():
    perfect = evaluate([_result([0.9, 0.1, 0.2], [0, 0, 0]), _result([0.8, 0.3, 0.1], [0, 0, 0], split="seen-test")])
    assert perfect["all"]["paper"] == {"auc": 100.0, "accuracy": 100.0}
    assert perfect["all"]["box_recall_iou50"] == 100.0
    assert set(perfect["by_split"]) == {"seen-test", "unseen-test"}
    assert perfect["by_anomaly_type"]["crack"]["auc"] == 100.0
    # the anomaly's box is off by 8 cm (IoU < 0.5): the paper protocol counts it wrong, the reference does not
    shifted = evaluate([_result([0.9, 0.1, 0.2], [0.08, 0, 0])])
    assert shifted["all"]["paper"]["accuracy"] == pytest.approx(100 * 2 / 3)
    assert shifted["all"]["paper"]["auc"] == 0.0
    assert shifted["all"]["reference"] == {"auc": 100.0, "accuracy": 100.0}
    assert shifted["all"]["box_recall_iou50"] == pytest.approx(100 * 2 / 3)


def test_tune_boxes_picks_a_threshold_below_the_objects_occupancy(data):
    from odd_one_out_ros.data.dataset import scene_dirs
    from odd_one_out_ros.data.scene_meta import read_scene_meta
    from odd_one_out_ros.model.config import preset
    from odd_one_out_ros.model.network import OddOneOutNet
    from odd_one_out_ros.training.evaluate import tune_boxes

    cfg = preset("cpu").changed("encoder", weights="").changed("boxes", estimator="density")
    net = OddOneOutNet(cfg).eval()
    metas = [read_scene_meta(d) for d in scene_dirs(data)[:2]]
    centers = net.grid.centers().reshape(-1, 3).numpy()
    sigma = -np.log(1 - 0.15) / cfg.grid.voxel_size  # voxel occupancy 0.15 inside every object

    class Blobs(torch.nn.Module):
        calls = 0

        def forward(self, fv):
            meta = metas[Blobs.calls % len(metas)]
            Blobs.calls += 1
            occ = np.zeros(len(centers), bool)
            for o in meta.objects:
                occ |= o.box.contains(centers)
            return torch.tensor(occ.reshape(1, 1, *fv.shape[2:]), dtype=torch.float32) * sigma

    net.scene.density_head = Blobs()
    best, table = tune_boxes(net, metas, views=2)

    def row(threshold, soft):
        return table[f"occupancy_threshold={threshold} soft_height={soft}"]

    assert best["occupancy_threshold"] < 0.15 and best["soft_height"] is False, best
    assert row(best["occupancy_threshold"], False)["recall"] > 50
    assert row(0.1, False)["recall"] > 50 and row(0.2, False)["recall"] == 0 and row(0.5, False)["recall"] == 0
    assert row(0.1, True)["recall"] < row(0.1, False)["recall"]  # 15 % opacity: soft heights shrink to 15 %


def test_resume_after_a_crash_drops_log_rows_past_the_checkpoint(data, tmp_path):
    run = tmp_path / "crash"
    train("--data", str(data), "--out", str(run), "--epochs", "3", "--steps", "5", "--checkpoint-every", "2")
    # pretend the run died after step 5 but its last checkpoint is step 4: roll last_stage1.pt back
    blob = torch.load(run / "last_stage1.pt", weights_only=True)
    assert blob["step"] == 5
    train("--data", str(data), "--out", str(run / "again"), "--epochs", "3", "--steps", "4", "--checkpoint-every", "2")
    shutil.copy(run / "again" / "last_stage1.pt", run / "last_stage1.pt")
    train("--data", str(data), "--out", str(run), "--epochs", "3", "--steps", "6", "--resume")
    steps = [int(r["step"]) for r in rows(run)]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_stage_two_switches_the_prior_on(data, tmp_path):
    """--prior on adds the training-free prior in stage 2 from a stage 1 without it: its two parameters train,
    its frozen features are cached per image, the checkpoint keeps the setting and --resume continues with it."""
    run = tmp_path / "run"
    train("--data", str(data), "--out", str(run), "--steps", "1")
    assert not read_checkpoint(run / "stage1.pt")["config"].scorer.matcher.prior
    train("--data", str(data), "--out", str(run), "--stage", "2", "--prior", "on", "--steps", "2",
          "--checkpoint-every", "1")
    blob = read_checkpoint(run / "stage2.pt")
    assert blob["config"].scorer.matcher.prior
    assert (float(blob["model"]["scorer.matcher.prior_shift"]) != 3.0
            and float(blob["model"]["scorer.matcher.prior_scale"]) != 1.0)
    assert len(list((run / "prior_cache").glob("*.pt"))) >= 3  # the input views of the scenes seen so far
    train("--data", str(data), "--out", str(run), "--stage", "2", "--resume", "--steps", "3")
    assert read_checkpoint(run / "stage2.pt")["config"].scorer.matcher.prior


def test_cosine_schedule():
    from odd_one_out_ros.training.loop import lr_factor
    from odd_one_out_ros.training.trainer import TrainConfig, loop_config

    cfg = loop_config(TrainConfig(max_steps=150, warmup_steps=50, min_lr_scale=0.1))
    f = [lr_factor(s, cfg) for s in range(150)]
    assert f[0] == pytest.approx(1 / 50) and f[49] == pytest.approx(1.0)
    assert f[100] == pytest.approx(0.1 + 0.9 * 0.5)  # half-way through the decay
    assert all(a >= b for a, b in zip(f[49:], f[50:])) and f[-1] == pytest.approx(0.1, abs=1e-3)
    assert lr_factor(120, loop_config(TrainConfig(max_steps=150, schedule="constant"))) == 1.0
    assert lr_factor(120, loop_config(TrainConfig(max_steps=0))) == 1.0  # no step budget: nothing to decay over
    with pytest.raises(ValueError, match="schedule"):
        lr_factor(0, loop_config(TrainConfig(schedule="linear")))


def test_occupancy_loss_is_the_bce_of_the_voxel_opacity():
    """occupancy_loss = mean BCE(1 - exp(-sigma s), target), written in sigma: checked against the closed form in
    float64, at opacity 1/2 (sigma s = ln 2: ln 2 for any target), and finite with a finite gradient at sigma 0."""
    from odd_one_out_ros.model.losses import occupancy_loss

    rng = np.random.default_rng(0)
    s = 0.02
    density = torch.tensor(rng.uniform(0.5, 400.0, (2, 1, 3, 4, 5)))  # 1/m: opacity 0.01 .. 0.9997
    target = torch.tensor(rng.uniform(0, 1, (2, 3, 4, 5)))
    p = 1 - np.exp(-density[:, 0].numpy() * s)
    t = target.numpy()
    expected = -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p))
    assert occupancy_loss(density, target, s).item() == pytest.approx(expected, rel=1e-12)
    half = torch.full((1, 1, 2, 2, 2), np.log(2) / s, dtype=torch.float64)
    for value in (0.0, 0.3, 1.0):
        assert occupancy_loss(half, torch.full((1, 2, 2, 2), value, dtype=torch.float64), s).item() == \
            pytest.approx(np.log(2), rel=1e-12)
    zero = torch.zeros((1, 1, 1, 1, 2), dtype=torch.float64, requires_grad=True)
    loss = occupancy_loss(zero, torch.tensor([[[[0.0, 1.0]]]], dtype=torch.float64), s)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(zero.grad).all()
    assert loss.item() == pytest.approx(-0.5 * np.log(-np.expm1(-1e-6)) + 0.5 * 1e-6)  # clamped at sigma s = 1e-6


def test_the_network_owns_the_optimiser_groups_and_the_loss_terms(data, tmp_path):
    """OddOneOutNet.param_groups and get_loss_dict (issue 15): the trainer's optimiser has the groups and learning
    rates it built itself before (the pretrained backbone at lr x backbone_lr_scale, possibly empty; everything
    else at lr; the prior's two scalars at lr x prior_lr_scale, only when they train) and its steps log the same
    loss terms, composed as before."""
    from odd_one_out_ros.model.config import preset
    from odd_one_out_ros.training.trainer import TrainConfig, Trainer

    tiny = preset("tiny")
    prior = tiny.changed("scorer.matcher", prior=True)
    base = dict(n_input=3, n_target=2, rays=40, feature_rays=10, threads=1, lr=1e-3, warmup_steps=1)
    cases = [(tiny, TrainConfig(stage=1, **base), {"image", "feature", "occupancy", "total"}),
             (tiny, TrainConfig(stage=1, lambda_occ=0.0, freeze_backbone=False, **base), {"image", "feature", "total"}),
             (prior, TrainConfig(stage=2, freeze_backbone=False, **base),
              {"image", "feature", "occupancy", "bce", "predicted_match", "total"})]
    for i, (mcfg, tc, keys) in enumerate(cases):
        tr = Trainer(mcfg, tc, data, tmp_path / f"run{i}")
        name = {id(p): n for n, p in tr.net.named_parameters()}
        trainable = [n for n, p in tr.net.named_parameters() if p.requires_grad]
        backbone = [n for n in trainable if n.startswith("scene.encoder.backbone.")]
        scalars = [n for n in trainable if n in ("scorer.matcher.prior_scale", "scorer.matcher.prior_shift")]
        rest = [n for n in trainable if n not in backbone + scalars]
        expected = [(backbone, tc.lr * tc.backbone_lr_scale), (rest, tc.lr)]
        expected += [(scalars, tc.lr * tc.prior_lr_scale)] if scalars else []
        assert [([name[id(p)] for p in g["params"]], g["lr"]) for g in tr.loop.opt.param_groups] == expected
        assert bool(backbone) != tc.freeze_backbone and bool(scalars) == (tc.stage == 2)
        terms = tr.run_step([0])
        assert set(terms) == keys
        recon = terms["image"] + tc.lambda_f * terms["feature"] + tc.lambda_occ * terms.get("occupancy", 0.0)
        total = recon if tc.stage == 1 else terms["bce"] + tc.lambda_r_stage2 * recon
        assert terms["total"] == pytest.approx(total, rel=1e-5)


def test_ablation_variants_that_share_a_stage_one():
    """continue_config: A with B and C with full share stage 1 (the same config with the other variant); a
    distilling variant cannot start from a plain one, and a resumed run keeps its variant."""
    from odd_one_out_ros.model.config import preset
    from odd_one_out_ros.training.config import continue_config

    b = preset("tiny", "B")
    assert continue_config(b, "B", "b.pt", resuming=True) is b
    a = continue_config(b, "A", "b.pt", resuming=False)
    assert a.variant == "A" and a.grid == b.grid and not a.distill
    assert continue_config(preset("tiny", "full"), "C", "f.pt", resuming=False).variant == "C"
    with pytest.raises(ValueError, match="A with B, C with full"):
        continue_config(b, "C", "b.pt", resuming=False)
    with pytest.raises(ValueError, match="b.pt is variant B, not A"):
        continue_config(b, "A", "b.pt", resuming=True)


def test_train_flags_are_the_train_config_fields():
    """The `train` command's flags take their defaults and help from TrainConfig (training/config.py), and
    the parsed flags build the TrainConfig it trains with."""
    import argparse

    from odd_one_out_ros.commands import train as train_cmd
    from odd_one_out_ros.training.config import TrainConfig, field_help

    p = argparse.ArgumentParser()
    train_cmd.add_arguments(p)
    args = p.parse_args(["--data", "d", "--out", "o"])
    d, helps = TrainConfig(), field_help(TrainConfig)
    assert all(getattr(args, name) == getattr(d, name) for name in train_cmd.TRAIN_FIELDS)
    assert args.views == f"{d.n_input},{d.n_target}" and args.backbone == "frozen"
    assert all(helps[name] for name in train_cmd.TRAIN_FIELDS)
    flags = {a.dest: a for a in p._actions}
    assert flags["max_steps"].option_strings == ["--steps"] and flags["lambda_occ"].option_strings == ["--lambda-occ"]
    assert helps["rays"] in flags["rays"].help and "(default: %(default)s)" in flags["rays"].help
    args = p.parse_args(["--data", "d", "--out", "o", "--steps", "7", "--lr", "0.5", "--schedule", "constant"])
    assert (args.max_steps, args.lr, args.schedule) == (7, 0.5, "constant")
