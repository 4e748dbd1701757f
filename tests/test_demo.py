"""The README's main job: `odd-one-out demo` end to end in a real ROS 2 graph."""
import json
import subprocess
import sys
from pathlib import Path

import cv2

BIN = Path(sys.executable).parent


def test_demo_runs_end_to_end(tmp_path, ros_domain):
    r = subprocess.run([str(BIN / "odd-one-out"), "demo", "--out", str(tmp_path)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    truth = {o["object"]: o["truth"] for o in report["objects"]}
    assert truth == {"object.001": "anomalous (crack)", "object.002": "normal", "object": "normal"}
    assert [v["camera"] for v in report["views"]] == ["cam0", "cam4", "cam8", "cam12", "cam16"]
    # the cameras rebuilt from CameraInfo + PoseStamped messages equal the scene's (float32 metadata)
    assert max(v["pose_round_trip_error"] for v in report["views"]) < 1e-5
    assert all(o["views_seen"] == 5 for o in report["objects"])
    sheet = cv2.imread(str(tmp_path / "overlay.png"))
    assert sheet.shape == (256, 5 * 256, 3)
    assert "object.001" in r.stdout and "anomalous (crack)" in r.stdout


def test_demo_bad_views_is_a_clear_error(tmp_path, ros_domain):
    r = subprocess.run([str(BIN / "odd-one-out"), "demo", "--out", str(tmp_path), "--views", "0,99"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "views [99] not in this scene" in r.stderr and "Traceback" not in r.stderr
