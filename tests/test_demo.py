"""The README's main job: `odd-one-out demo` end to end (sim_rig + detector in one real ROS 2 graph)."""
import json
import subprocess
import sys
import time
from pathlib import Path

import cv2

from odd_one_out_ros.inspection.audit import find_view_bags, read_audit_log
from odd_one_out_ros.inspection.report import validate_report

BIN = Path(sys.executable).parent


def test_demo_runs_end_to_end(tmp_path, ros_domain):
    t0 = time.monotonic()
    r = subprocess.run([str(BIN / "odd-one-out"), "demo", "--out", str(tmp_path)], capture_output=True, text=True,
                       timeout=180)
    wall = time.monotonic() - t0
    assert r.returncode == 0, r.stdout + r.stderr
    assert wall < 60, f"the demo took {wall:.1f} s (budget: 60 s on 2 cores)"
    summary = json.loads((tmp_path / "report.json").read_text())
    report = validate_report(summary["detections"])
    assert summary["schema"] == "odd_one_out_ros/demo/2" and report["frame_id"] == "world"
    assert [v["camera"] for v in report["views"]] == [f"cam{i}" for i in range(5)]
    assert all(v["pose_source"] == "static" for v in report["views"])
    truth = summary["ground_truth"]["objects"]
    assert summary["scene"] == {"kind": "toys", "category": "teapot", "seed": 17}
    assert len(truth) == 6 and [o["anomaly_type"] for o in truth if o["anomalous"]] == ["fracture"]
    # one row per true object, plus one per detection that matches none
    assert len(summary["objects"]) == len(truth) + sum(row["object"] == "-" for row in summary["objects"])
    assert {row["detection"] for row in summary["objects"]} - {None} == set(range(report["n_objects"]))
    if summary["untrained_model"]:
        assert "UNTRAINED network" in r.stderr and "UNTRAINED model" in r.stdout
        assert report["model"]["untrained"] is True
    sheet = cv2.imread(str(tmp_path / "overlay.png"))
    assert sheet.shape == (256, 5 * 256, 3)
    audit = read_audit_log(tmp_path / "audit.jsonl")
    assert audit and {k: v for k, v in audit[0].items() if k not in ("bag", "run_id")} == report
    assert audit[0]["run_id"] and audit[0]["node"] == report["node"]
    assert find_view_bags(tmp_path / "bags")[0] == Path(audit[0]["bag"])
    assert "anomalous (fracture)" in r.stdout and "object.005" in r.stdout
    if not summary["untrained_model"]:  # the shipped checkpoint's decisions on its own demo scene (README)
        rows = [row for row in summary["objects"] if row["object"] != "-"]
        assert all(row["detection"] is not None for row in rows), rows  # every object boxed
        assert [row["label"] for row in rows] == [
            "anomalous" if row["truth"].startswith("anomalous") else "normal" for row in rows], rows
        assert len(summary["objects"]) == len(rows)  # no box where there is no object


def test_demo_bad_input_is_a_clear_error(tmp_path, ros_domain):
    r = subprocess.run([str(BIN / "odd-one-out"), "demo", "--out", str(tmp_path), "--cameras", "0"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--cameras must be in 1..32" in r.stderr and "Traceback" not in r.stderr
    corrupt = tmp_path / "model.pt"
    corrupt.write_bytes(b"\x80\x02 not a checkpoint")
    r = subprocess.run([str(BIN / "odd-one-out"), "demo", "--out", str(tmp_path), "--checkpoint", str(corrupt)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "not a readable checkpoint" in r.stderr and str(corrupt) in r.stderr
    assert "Traceback" not in r.stderr
