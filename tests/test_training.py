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
from odd_one_out_ros.synth.generate import generate
from odd_one_out_ros.synth.scene import GeneratorConfig
from odd_one_out_ros.training.evaluate import SceneResult, evaluate
from odd_one_out_ros.training.trainer import match_boxes

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("train_data")
    generate(GeneratorConfig(kind="toys", views=6, size=64, objects=(3, 4)), 3, out, 11, split="train",
             progress=False)
    return out


def train(*args, env=None, timeout=600):
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
    matcher = [k for k in s1 if k.startswith("matcher.")]
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
    net.cfg.boxes.occupancy_threshold = 0.123
    save_checkpoint(run / "tuned.pt", net)
    train("--data", str(data), "--out", str(run), "--stage", "2", "--init", str(run / "tuned.pt"), "--steps", "1",
          "--checkpoint-every", "1")
    train("--data", str(data), "--out", str(run), "--stage", "2", "--resume", "--steps", "2")
    assert read_checkpoint(run / "stage2.pt")["config"].boxes.occupancy_threshold == 0.123
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
                       capture_output=True, text=True, timeout=600, env=env)
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


def test_tune_box_threshold_picks_a_threshold_below_the_objects_occupancy(data):
    from odd_one_out_ros.data.dataset import scene_dirs
    from odd_one_out_ros.data.scene_meta import read_scene_meta
    from odd_one_out_ros.model.config import preset
    from odd_one_out_ros.model.network import OddOneOutNet
    from odd_one_out_ros.training.evaluate import tune_box_threshold

    cfg = preset("cpu")
    cfg.encoder.weights = ""
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

    net.density_head = Blobs()
    best, soft, table = tune_box_threshold(net, metas, views=2, candidates=(0.1, 0.2, 0.5))
    assert (best, soft) == (0.1, False) and table[(0.1, False)]["recall"] > 50 and table[(0.5, False)]["recall"] == 0
    assert table[(0.1, True)]["recall"] < table[(0.1, False)]["recall"]  # 15 % opacity: soft heights shrink to 15 %


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
    assert not read_checkpoint(run / "stage1.pt")["config"].matcher.prior
    train("--data", str(data), "--out", str(run), "--stage", "2", "--prior", "on", "--steps", "2",
          "--checkpoint-every", "1")
    blob = read_checkpoint(run / "stage2.pt")
    assert blob["config"].matcher.prior
    assert float(blob["model"]["matcher.prior_shift"]) != 3.0 and float(blob["model"]["matcher.prior_scale"]) != 1.0
    assert len(list((run / "prior_cache").glob("*.pt"))) >= 3  # the input views of the scenes seen so far
    train("--data", str(data), "--out", str(run), "--stage", "2", "--resume", "--steps", "3")
    assert read_checkpoint(run / "stage2.pt")["config"].matcher.prior


def test_cosine_schedule():
    from odd_one_out_ros.training.trainer import TrainConfig, lr_factor

    cfg = TrainConfig(max_steps=150, warmup_steps=50, min_lr_scale=0.1)
    f = [lr_factor(s, cfg) for s in range(150)]
    assert f[0] == pytest.approx(1 / 50) and f[49] == pytest.approx(1.0)
    assert f[100] == pytest.approx(0.1 + 0.9 * 0.5)  # half-way through the decay
    assert all(a >= b for a, b in zip(f[49:], f[50:])) and f[-1] == pytest.approx(0.1, abs=1e-3)
    assert lr_factor(120, TrainConfig(max_steps=150, schedule="constant")) == 1.0
    assert lr_factor(120, TrainConfig(max_steps=0)) == 1.0  # no step budget: nothing to decay over
    with pytest.raises(ValueError, match="schedule"):
        lr_factor(0, TrainConfig(schedule="linear"))
