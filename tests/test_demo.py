"""The README's main job: `odd-one-out demo` end to end (sim_rig + detector in one real ROS 2 graph)."""
import json
import subprocess
import sys
from pathlib import Path

import cv2

from odd_one_out_ros.inspection.audit import find_view_bags, read_audit_log
from odd_one_out_ros.inspection.report import validate_report

BIN = Path(sys.executable).parent


def test_demo_runs_end_to_end(tmp_path, ros_domain):
    # no wall-clock limit here: the demo's time is in report.json's timing_s (and benchmarks/demo_sweep.py)
    r = subprocess.run([str(BIN / "odd-one-out"), "demo", "--out", str(tmp_path)], capture_output=True, text=True,
                       timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
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
    sheet = cv2.imread(str(tmp_path / "overlay.png"))
    assert sheet.shape == (256, 5 * 256, 3)
    audit = read_audit_log(tmp_path / "audit.jsonl")
    # (a verdict "cannot_inspect" may come first: cameras that had sent nothing yet; it has no view bag)
    audit = [r for r in read_audit_log(tmp_path / "audit.jsonl") if r["inspection_id"] >= report["inspection_id"]]
    assert audit and {k: v for k, v in audit[0].items() if k not in ("bag", "run_id")} == report
    assert audit[0]["run_id"] and audit[0]["node"] == report["node"]
    assert find_view_bags(tmp_path / "bags")[0] == Path(audit[0]["bag"])
    # the shipped checkpoint's decisions on its own demo scene (the README's claim): six teapots found, each one
    # boxed once, only the fractured one flagged, nothing boxed where there is no object
    rows = summary["objects"]
    fractured = next(o["name"] for o in truth if o["anomalous"])
    assert [row["object"] for row in rows] == [o["name"] for o in truth], rows
    assert all(row["detection"] is not None for row in rows), rows
    assert [row["label"] for row in rows] == ["anomalous" if o["anomalous"] else "normal" for o in truth], rows
    assert [row["object"] for row in rows if row["label"] == "anomalous"] == [fractured]
    assert report["n_objects"] == 6 and report["n_anomalous"] == 1
    flagged = [o for o in report["objects"] if o["label"] == "anomalous"]
    assert len(flagged) == 1 and flagged[0]["score"] == max(o["score"] for o in report["objects"])
    # the printed table says the same: the fractured teapot's line carries the model's label, not only the truth
    table = [x.split() for x in r.stdout.splitlines()
             if x.split()[:1] in ([o["name"]] for o in truth) and x.split()[1] != "truth"]  # not the header
    assert [x[1:4] for x in table if x[0] == fractured] == [["anomalous", "(fracture)", "anomalous"]], table
    assert sorted(x[0] for x in table if x[1:3] == ["normal", "normal"]) == sorted(
        o["name"] for o in truth if not o["anomalous"]), table


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
