"""The CLI commands on tiny real data, in-process (odd_one_out_ros.cli.main), no mocks (issue 25): `replay` of a
recorded inspection against another checkpoint (exit 1, naming what differs) beside the same-checkpoint control,
`detect`'s success path, `show` and `tune-boxes`. Scenes come from the real generator (`odd-one-out generate`),
checkpoints are random tiny networks written by save_checkpoint."""
from __future__ import annotations

import json
import re
import shutil
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from odd_one_out_ros.cli import main as cli_main
from odd_one_out_ros.data.scene_meta import read_scene_meta
from odd_one_out_ros.fileio import read_rgb
from odd_one_out_ros.inspection.loader import load_inspector
from odd_one_out_ros.model.checkpoint import file_sha256, read_checkpoint, save_checkpoint
from odd_one_out_ros.model.config import preset
from odd_one_out_ros.model.network import OddOneOutNet
from odd_one_out_ros.training.box_head import with_box_head
from odd_one_out_ros.viz import GREEN, RED

VIEWS = [0, 2, 4]  # of the 6 generated views: the rig of the recorded inspection, and detect's --views
CAPTION_ROWS = 18  # contact sheets write a caption into the bottom rows of each tile


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Three 6-view 64 px toys scenes of the train split, made by `odd-one-out generate`."""
    out = tmp_path_factory.mktemp("scenes")
    assert cli_main(["generate", "--scenes", "3", "--out", str(out), "--views", "6", "--size", "64",
                     "--objects", "3-4", "--split", "train", "--seed", "3"]) == 0
    assert len(json.loads((out / "splits.json").read_text())["train"]) == 3
    return out


@pytest.fixture(scope="module")
def scene(data):
    return read_scene_meta(sorted((data / "scenes").iterdir())[0])


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """dense_a, dense_b: tiny networks of seeds 0 and 1 whose density head is forced on (each finds one big box, with
    a real score that differs between them); heat: a tiny network with an untrained box head (score threshold 0.05:
    many boxes)."""
    d = tmp_path_factory.mktemp("ckpt")
    for name, seed in (("dense_a", 0), ("dense_b", 1)):
        torch.manual_seed(seed)
        net = OddOneOutNet(preset("tiny"))
        with torch.no_grad():
            net.scene.density_head.net[-1].bias.fill_(6.0)
        save_checkpoint(d / f"{name}.pt", net)
    torch.manual_seed(0)
    save_checkpoint(d / "heat.pt", with_box_head(OddOneOutNet(preset("tiny")), score_threshold=0.05))
    return SimpleNamespace(**{p.stem: p for p in d.glob("*.pt")})


# ------------------------------------------------------------------------------------------------------ replay
def record_inspection(folder: Path, scene, checkpoint: Path, threshold: float) -> tuple[dict, dict]:
    """One inspection recorded as the detector records it, without a ROS graph: a rig of three of the scene's cameras
    (rig file), their CameraInfo and Image messages fed to the detector's Pipeline (its gather and inspect threads),
    the model loaded as the node loads it, the view bag and audit record written by the pipeline with the node's
    own bag serialisation (publishers.view_bag_messages, DetectorPublishers.bag_report). Returns (audit record,
    published report)."""
    from builtin_interfaces.msg import Time

    from odd_one_out_ros.calibration.rig import CameraExtrinsics, write_rig_yaml
    from odd_one_out_ros.geometry import CameraCalibration
    from odd_one_out_ros.inspection.audit import AuditLog, read_audit_log
    from odd_one_out_ros.inspection.pipeline import Pipeline, PipelineIO, rig_cameras
    from odd_one_out_ros.inspection.poses import PoseResolver
    from odd_one_out_ros.ros.conversions import calibration_to_camera_info, rgb_to_image
    from odd_one_out_ros.ros.params import DetectorParams
    from odd_one_out_ros.ros.publishers import DetectorPublishers, view_bag_messages

    names = [f"cam{v}" for v in VIEWS]
    cams = [scene.cameras[v] for v in VIEWS]
    rig = write_rig_yaml(folder / "rig.yaml", [CameraExtrinsics(n, "", c.T_cw, 0.0, [], 0.0, 0.0)
                                               for n, c in zip(names, cams)], force=True)
    p = DetectorParams(checkpoint=str(checkpoint), anomaly_threshold=threshold, rig_file=str(rig),
                       cameras=tuple(names), audit_log=str(folder / "audit.jsonl"),
                       record_views_dir=str(folder / "bags"), min_objects=0)  # (the tiny models find 1-2)
    resolver = PoseResolver.create(p.pose_source, p.rig_file)
    model = load_inspector(p.checkpoint, p.device, p.anomaly_threshold)
    audit = AuditLog(p.audit_log, node="/detector")
    logged, published = [], []
    io = PipelineIO(log=lambda level, line: logged.append(f"{level}: {line}"), ros_now=time.time,
                    publish=lambda report, *_: published.append(report),
                    bag_messages=lambda g: view_bag_messages(g, p.frame_id),
                    bag_report=DetectorPublishers.bag_report, shutting_down=lambda: False)
    pipe = Pipeline(p, rig_cameras(p, resolver), resolver, model.guarded, model.threshold, model.info, audit,
                    "/detector", io)
    stop = threading.Event()
    threads = [threading.Thread(target=loop, args=(stop,), daemon=True) for loop in (pipe.gather_loop,
                                                                                       pipe.inspect_loop)]
    for t in threads:
        t.start()
    try:
        pipe.set_active(True)
        now = time.time()
        stamp = Time(sec=int(now), nanosec=int(now % 1 * 1e9))
        for name, v, cam in zip(names, VIEWS, cams):
            frame = f"{name}_optical_frame"
            pipe.on_info(name, calibration_to_camera_info(CameraCalibration.from_camera(cam, name), frame, stamp))
            pipe.on_image(name, rgb_to_image(read_rgb(scene.rgb_path(v)), frame, stamp))
        deadline = time.monotonic() + 60
        while not published and not logged and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        audit.close()
    assert not logged and len(published) == 1, logged
    (record,) = read_audit_log(p.audit_log)
    return record, published[0]


def test_replay_against_another_checkpoint_exits_1_and_names_what_differs(data, scene, checkpoints, tmp_path,
                                                                         capsys):
    pytest.importorskip("rclpy")
    from odd_one_out_ros.inspection.audit import find_view_bags

    model = shutil.copy(checkpoints.dense_a, tmp_path / "model.pt")
    threshold = 0.999  # the node's anomaly_threshold, not the checkpoint's 0.5: replay must take the recorded one
    record, report = record_inspection(tmp_path, scene, model, threshold)
    bag = Path(record["bag"])
    assert find_view_bags(tmp_path / "bags") == [bag]
    assert {k: v for k, v in record.items() if k not in ("bag", "run_id")} == report
    assert record["model"]["sha256"] == file_sha256(model) and record["threshold"] == threshold
    (obj,) = record["objects"]
    assert obj["label"] == "normal" and 0.5 < obj["score"] < threshold  # the checkpoint's own threshold says anomalous

    # control: the recorded checkpoint gives the recorded result (with the recorded threshold) -> exit 0
    capsys.readouterr()
    assert cli_main(["replay", str(bag), "--json", str(tmp_path / "same.json")]) == 0
    out = capsys.readouterr().out
    assert "same result" in out and "DIFFERENT" not in out
    (same,) = json.loads((tmp_path / "same.json").read_text())
    assert same["same"] is True and same["differences"] == [] and same["report"]["objects"][0]["label"] == "normal"

    # another checkpoint (seed 1): its score on the recorded views is another one -> exit 1, saying both
    other = load_inspector(checkpoints.dense_b, "cpu", threshold).guarded(scene.posed_views(VIEWS))
    (o,) = other.objects
    assert abs(o.score - obj["score"]) > 1e-3, "the two checkpoints must disagree for this test to mean anything"
    assert cli_main(["replay", str(bag), "--checkpoint", str(checkpoints.dense_b),
                     "--json", str(tmp_path / "other.json")]) == 1
    out = capsys.readouterr().out
    (verdict,) = [line for line in out.splitlines() if "DIFFERENT" in line]
    assert "same result" not in out
    assert f"checkpoint {checkpoints.dense_b} differs from the recorded one (sha256 " \
           f"{record['model']['sha256'][:12]}...)" in verdict
    assert re.search(rf"object 0: score {obj['score']:.6f} recorded, (\d\.\d{{6}}) replayed", verdict)
    (diff,) = json.loads((tmp_path / "other.json").read_text())
    assert diff["same"] is False and len(diff["differences"]) == 2
    replayed = diff["report"]["objects"][0]
    assert replayed["score"] == pytest.approx(o.score, abs=1e-5)  # the other model ran on the recorded views
    assert f"score {obj['score']:.6f} recorded, {replayed['score']:.6f} replayed" in verdict
    assert diff["report"]["model"]["sha256"] == file_sha256(checkpoints.dense_b)
    assert diff["report"]["model"]["checkpoint"] == str(checkpoints.dense_b.resolve())

    # the recorded checkpoint file itself replaced (same path, other weights): no --checkpoint, still exit 1
    shutil.copy(checkpoints.dense_b, model)
    assert cli_main(["replay", str(bag)]) == 1
    out = capsys.readouterr().out
    assert f"checkpoint {record['model']['checkpoint']} differs from the recorded one" in out
    assert f"object 0: score {obj['score']:.6f} recorded, {replayed['score']:.6f} replayed" in out


# ------------------------------------------------------------------------------------------------------ detect
def test_detect_prints_and_writes_one_row_per_box_and_draws_them(scene, checkpoints, tmp_path, capsys):
    out_json, out_png = tmp_path / "det.json", tmp_path / "det.png"
    capsys.readouterr()
    assert cli_main(["detect", "--checkpoint", str(checkpoints.heat), "--scene", str(scene.root),
                     "--views", ",".join(map(str, VIEWS)), "--json", str(out_json), "--image", str(out_png)]) == 0
    printed = capsys.readouterr().out.splitlines()
    # what the model itself gives on those views
    model = load_inspector(checkpoints.heat, "cpu")
    expected = model.guarded(scene.posed_views(VIEWS)).objects
    assert len(expected) >= 2
    doc = json.loads(out_json.read_text())
    assert doc["scene"] == str(scene.root) and doc["views"] == VIEWS and doc["latency_s"] > 0
    rows = doc["objects"]
    assert [r["id"] for r in rows] == list(range(len(expected)))
    names = {o.name for o in scene.objects}
    for r, o in zip(rows, expected):
        np.testing.assert_allclose(r["center"], o.box.center, atol=1e-6)
        np.testing.assert_allclose(r["size"], o.box.size, atol=1e-6)
        assert r["score"] == pytest.approx(o.score, abs=1e-6) and 0 <= r["score"] <= 1
        assert r["box_score"] == pytest.approx(o.box_score, abs=1e-6) and 0.05 < r["box_score"] <= 1
        assert r["label"] == ("anomalous" if r["score"] > model.threshold else "normal")
        assert r["truth_object"] in names | {None} and (r["truth"] is None) == (r["iou"] is None)
    assert printed[0].startswith(f"{len(rows)} objects found in ")
    assert printed[0].endswith(f"from {len(VIEWS)} views ({len(scene.objects)} in the ground truth)")
    table = printed[2:]
    assert len(table) == len(rows)
    for line, r in zip(table, rows):
        assert line.split()[:3] == [str(r["id"]), r["label"], f"{r['score']:.3f}"]
    # the overlay (the detector's): the three views side by side, enlarged to 256 px tiles, boxes drawn on each
    sheet = cv2.cvtColor(cv2.imread(str(out_png)), cv2.COLOR_BGR2RGB)
    assert sheet.shape == (256, 256 * len(VIEWS), 3)
    for k, v in enumerate(VIEWS):
        raw = cv2.resize(read_rgb(scene.rgb_path(v)), (256, 256), interpolation=cv2.INTER_LINEAR)[:-CAPTION_ROWS]
        tile = sheet[:-CAPTION_ROWS, 256 * k:256 * (k + 1)]
        drawn = (tile != raw).any(-1)
        colour = RED if rows[0]["label"] == "anomalous" else GREEN
        assert drawn.sum() > 20 and (tile == colour).all(-1).sum() > 10, (v, drawn.sum())

    # bad input: no view at all (exit 2), an image that cannot be written (exit 1, not a silent success)
    assert cli_main(["detect", "--checkpoint", str(checkpoints.heat), "--scene", str(scene.root),
                     "--views", ","]) == 2
    assert "odd-one-out detect: --views names no view" in capsys.readouterr().err
    assert cli_main(["detect", "--checkpoint", str(checkpoints.heat), "--scene", str(scene.root), "--views", "0,2",
                     "--image", str(tmp_path / "missing" / "det.png")]) == 1
    assert f"odd-one-out detect: cannot write {tmp_path / 'missing' / 'det.png'}" in capsys.readouterr().err
    # a --json that cannot be written: exit 1 naming it (commands.write_json, shared by every --json; a missing
    # folder is made), no traceback
    (tmp_path / "a_file").write_text("")  # a folder that is a file
    assert cli_main(["detect", "--checkpoint", str(checkpoints.heat), "--scene", str(scene.root), "--views", "0,2",
                     "--json", str(tmp_path / "a_file" / "det.json")]) == 1
    assert f"odd-one-out detect: cannot write {tmp_path / 'a_file' / 'det.json'}" in capsys.readouterr().err


# -------------------------------------------------------------------------------------------------------- show
def test_show_draws_the_truth_boxes_on_the_chosen_views(scene, tmp_path, capsys):
    out = tmp_path / "sheet.png"
    capsys.readouterr()
    assert cli_main(["show", str(scene.root), "--out", str(out)]) == 0
    anomalous = [o for o in scene.objects if o.anomalous]
    assert anomalous and len(anomalous) < len(scene.objects)  # both colours are drawn
    assert capsys.readouterr().out.strip() == (
        f"{out}: 6 views, {len(scene.objects)} objects, {len(anomalous)} anomalous "
        f"({', '.join(o.anomaly_type for o in anomalous)})")
    sheet = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    assert sheet.shape == (2 * 64, 5 * 64, 3)  # 6 views, 5 per row
    assert sheet[64:, 64:].max() == 0  # the second row holds one view
    drawn = {RED: 0, GREEN: 0}  # pixels of the box colours that are not in the scene's own images
    for v in range(6):
        r, c = divmod(v, 5)
        tile = sheet[64 * r:64 * r + 64 - CAPTION_ROWS, 64 * c:64 * c + 64]
        changed = (tile != read_rgb(scene.rgb_path(v))[:-CAPTION_ROWS]).any(-1)
        assert changed.sum() > 20, v  # every view sees the tray's boxes
        for colour in drawn:
            drawn[colour] += int(((tile == colour).all(-1) & changed).sum())
    assert drawn[RED] >= 3 and drawn[GREEN] >= 3, drawn  # anomalous boxes red, normal ones green

    # chosen views, one per row, in the order given
    assert cli_main(["show", str(scene.root), "--out", str(out), "--views", "3,1", "--cols", "1"]) == 0
    sheet = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    assert sheet.shape == (2 * 64, 64, 3)
    for k, v in enumerate((3, 1)):
        tile = sheet[64 * k:64 * k + 64 - CAPTION_ROWS]
        same = (tile == read_rgb(scene.rgb_path(v))[:-CAPTION_ROWS]).all(-1).mean()
        other = (tile == read_rgb(scene.rgb_path(4 - v))[:-CAPTION_ROWS]).all(-1).mean()
        assert same > 0.5 > other, (v, same, other)
        assert same < 1  # boxes drawn on it

    # bad input: one line naming the problem, exit 2, nothing written
    capsys.readouterr()
    bad = tmp_path / "bad.png"
    for args, msg in (([str(scene.root), "--views", "0,7"], "view 7 not in this scene (0..5)"),
                      ([str(tmp_path)], "scene3d.metadata.json: cannot read")):
        assert cli_main(["show", *args, "--out", str(bad)]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("odd-one-out show: ") and msg in err and err.count("\n") == 1, err
        assert not bad.exists()
    _refused_by_argparse(["show", str(scene.root), "--cols", "0", "--out", str(bad)], "--cols", capsys)
    assert not bad.exists()


def _refused_by_argparse(argv: list[str], flag: str, capsys) -> None:
    """A count flag below 1 is refused by argparse (commands.positive_int) naming the flag, exit 2."""
    with pytest.raises(SystemExit) as e:
        cli_main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"argument {flag}: must be an integer >= 1, got '0'" in err, err


# -------------------------------------------------------------------------------------------------- tune-boxes
def _tuning_grid(checkpoint: Path) -> list[str]:
    """The labels of the settings tune-boxes tries for a checkpoint's box estimator (BoxEstimator.tuning_grid)."""
    from odd_one_out_ros.model.checkpoint import load_checkpoint

    net, _ = load_checkpoint(checkpoint)
    return [" ".join(f"{k}={v}" for k, v in values.items()) for values in net.boxes.tuning_grid()]


def _check_tuning_table(printed: list[str], recall: dict, labels: list[str], chosen: str, tolerance: float) -> None:
    """The printed table (one line per setting, in the grid's order, the chosen one marked), the meta table
    box_recall_by_setting behind it, and the choice: the fewest unmatched boxes per scene among the settings within
    `tolerance` points of the best recall, then the highest recall."""
    assert list(recall) == labels
    assert all(0 <= row["recall"] <= 100 and row["unmatched_per_scene"] >= 0 for row in recall.values())
    assert len(printed) == len(labels)
    for line, label in zip(printed, labels):
        assert line == (f"{label}: box recall@0.5 {recall[label]['recall']:.1f} %, "
                        f"{recall[label]['unmatched_per_scene']:.2f} unmatched boxes per scene"
                        f"{'  <- chosen' if label == chosen else ''}"), line
    assert [line for line in printed if line.endswith("<- chosen")] == [
        line for line in printed if line.startswith(f"{chosen}: ")]
    top = max(row["recall"] for row in recall.values())
    near = [k for k in labels if recall[k]["recall"] >= top - tolerance]
    assert chosen in near
    assert min((recall[k]["unmatched_per_scene"], -recall[k]["recall"]) for k in near) == (
        recall[chosen]["unmatched_per_scene"], -recall[chosen]["recall"]), recall


def test_tune_boxes_sets_a_candidate_score_threshold_and_records_it(data, checkpoints, tmp_path, capsys):
    out = tmp_path / "tuned.pt"
    before = file_sha256(checkpoints.heat)
    labels = _tuning_grid(checkpoints.heat)
    assert labels and all(re.fullmatch(r"score_threshold=[0-9.]+", x) for x in labels), labels
    capsys.readouterr()
    assert cli_main(["tune-boxes", "--checkpoint", str(checkpoints.heat), "--data", str(data), "--scenes", "2",
                     "--views", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert file_sha256(checkpoints.heat) == before  # the input is not changed
    m = re.fullmatch(rf"wrote {re.escape(str(out))} \(boxes\.heatmap (score_threshold=([0-9.]+))\)", printed[-1])
    assert m, printed[-1]
    chosen, best = m.group(1), float(m.group(2))
    assert chosen in labels
    blob = read_checkpoint(out)
    assert blob["config"].boxes.estimator == "heatmap" and blob["config"].boxes.heatmap.score_threshold == best
    assert blob["meta"]["box_threshold_tuned_on"] == f"{data} train (2 scenes)"
    recall = blob["meta"]["box_recall_by_setting"]
    _check_tuning_table(printed[:-1], recall, labels, chosen, tolerance=1.0)
    weights = read_checkpoint(checkpoints.heat)["model"]
    assert blob["model"].keys() == weights.keys() and all(torch.equal(blob["model"][k], weights[k]) for k in weights)
    assert load_inspector(out, "cpu").net.cfg.boxes.heatmap.score_threshold == best  # what inspections will use

    # refusals, exit 2 and no checkpoint written: a split the data lacks, no scenes of the split, no scenes at all
    loose = tmp_path / "loose"  # scenes without a splits.json: their own metadata says train
    shutil.copytree(sorted((data / "scenes").iterdir())[0], loose / "one")
    refused = tmp_path / "refused.pt"
    for args, msg in ((["--data", str(data), "--split", "seen-test"], "no split 'seen-test' (has ['train'])"),
                      (["--data", str(data), "--data", str(loose), "--split", "seen-test"], "no split 'seen-test'"),
                      (["--data", str(loose), "--split", "seen-test"], f"{loose}: no 'seen-test' scenes to tune on")):
        assert cli_main(["tune-boxes", "--checkpoint", str(checkpoints.heat), *args, "--out", str(refused)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("odd-one-out tune-boxes: ") and msg in err, err
        assert not refused.exists()
    for flag in ("--scenes", "--views"):
        _refused_by_argparse(["tune-boxes", "--checkpoint", str(checkpoints.heat), "--data", str(data), flag, "0",
                              "--out", str(refused)], flag, capsys)
        assert not refused.exists()


def test_tune_boxes_of_the_density_estimator_sets_occupancy_and_soft_height(data, checkpoints, tmp_path, capsys):
    out = tmp_path / "tuned.pt"
    labels = _tuning_grid(checkpoints.dense_a)
    assert all(re.fullmatch(r"occupancy_threshold=[0-9.]+ soft_height=(True|False)", x) for x in labels), labels
    assert {x.split()[1] for x in labels} == {"soft_height=True", "soft_height=False"}
    capsys.readouterr()
    assert cli_main(["tune-boxes", "--checkpoint", str(checkpoints.dense_a), "--data", str(data), "--scenes", "1",
                     "--views", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    m = re.fullmatch(rf"wrote {re.escape(str(out))} \(boxes\.density (occupancy_threshold=([0-9.]+) "
                     rf"soft_height=(True|False))\)", printed[-1])
    assert m, printed[-1]
    chosen, best, soft = m.group(1), float(m.group(2)), m.group(3) == "True"
    assert chosen in labels
    blob = read_checkpoint(out)
    boxes = blob["config"].boxes
    assert boxes.estimator == "density" and (boxes.density.occupancy_threshold, boxes.density.soft_height) == (best,
                                                                                                              soft)
    assert read_checkpoint(checkpoints.dense_a)["config"].boxes.density.occupancy_threshold != best  # it was changed
    assert blob["meta"]["box_threshold_tuned_on"] == f"{data} train (1 scenes)"
    _check_tuning_table(printed[:-1], blob["meta"]["box_recall_by_setting"], labels, chosen, tolerance=2.0)


# ---------------------------------------------------------------------------------------------------- evaluate
def test_evaluate_reference_protocol_boxes_the_true_count(data, checkpoints, tmp_path, capsys):
    """`evaluate --protocol reference` (the reference code's test protocol, to compare with the paper's Table 1):
    10 views by default, the model's own boxes for the true number of objects of each scene (here the untrained
    head's highest peaks: as many boxes as objects, whatever their score), each true object scored by its best-IoU
    box; the default protocol keeps the head's threshold (0.05 here: more boxes than objects)."""
    out, ours = tmp_path / "ref.json", tmp_path / "ours.json"
    assert cli_main(["evaluate", "--checkpoint", str(checkpoints.heat), "--data", str(data), "--threads", "1",
                     "--protocol", "reference", "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["protocol"] == "reference" and rep["views"] == 10 and rep["boxes"] == "predicted, true count"
    assert len(rep["scenes"]) == 3 and all(len(r["pred"]) == len(r["gt"]) for r in rep["scenes"])
    assert rep["metrics"]["all"]["reference"]["accuracy"] is not None
    assert "true count" in capsys.readouterr().out
    assert cli_main(["evaluate", "--checkpoint", str(checkpoints.heat), "--data", str(data), "--threads", "1",
                     "--json", str(ours)]) == 0
    mine = json.loads(ours.read_text())
    assert mine["protocol"] == "ours" and mine["views"] == 5
    assert all(len(r["pred"]) > len(r["gt"]) for r in mine["scenes"])
    # the true count comes from the ground truth: not with ground-truth boxes
    assert cli_main(["evaluate", "--checkpoint", str(checkpoints.heat), "--data", str(data), "--protocol",
                     "reference", "--gt-boxes", "--json", str(tmp_path / "no.json")]) == 2
    assert "not with --gt-boxes" in capsys.readouterr().err
