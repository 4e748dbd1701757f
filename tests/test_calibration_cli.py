"""`odd-one-out board | tag-pose | calibrate intrinsics | calibrate rig` as users run them, on synthetic
renders with known truth, and their answers to bad input (exit code 2, the file named, no traceback)."""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from odd_one_out_ros.calibration import detect_tags, load_board, read_rig_yaml
from odd_one_out_ros.calibration.render import random_view, render_board
from odd_one_out_ros.geometry import CameraCalibration, PinholeCamera, read_camera_info_yaml, write_camera_info_yaml

ROOT = Path(__file__).resolve().parent.parent
EXE = str(Path(sys.executable).parent / "odd-one-out")
BOARD_YAML = ROOT / "calibration" / "board_8tags.yaml"
BOARD = load_board(BOARD_YAML)
K = np.array([[600.0, 0.0, 319.5], [0.0, 600.0, 239.5], [0.0, 0.0, 1.0]])


def cli(*args, cwd=None):
    r = subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd)
    assert "Traceback" not in r.stderr, r.stderr
    return r


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A camera_info YAML and rendered views: five random ones (poses known) and a blank image."""
    d = tmp_path_factory.mktemp("calib_cli")
    write_camera_info_yaml(CameraCalibration(640, 480, K, camera_name="synthetic"), d / "cam.yaml")
    rng = np.random.default_rng(21)
    poses = []
    for i in range(6):
        cam = PinholeCamera(K, 640, 480, T_cw=random_view(rng, max_tilt_deg=40))
        cv2.imwrite(str(d / f"view{i}.png"), render_board(BOARD, cam, rng=rng, supersample=3))
        poses.append(cam.T_cw)
    cv2.imwrite(str(d / "blank.png"), np.full((480, 640), 180, np.uint8))
    return d, poses


def test_board_png_prints_at_true_scale(tmp_path):
    out = tmp_path / "board.png"
    r = cli("board", "--board", BOARD_YAML, "--out", out, "--dpi", 150)
    assert r.returncode == 0, r.stderr
    with Image.open(out) as im:
        assert im.size == (round(0.297 / 0.0254 * 150), round(0.21 / 0.0254 * 150))
        assert im.info["dpi"] == pytest.approx((150, 150), rel=2e-4)  # PNG stores whole pixels per metre
        img = np.asarray(im.convert("L"))
    assert [d.id for d in detect_tags(img)] == BOARD.ids
    r = cli("board", "--board", BOARD_YAML, "--out", out)
    assert r.returncode == 2 and "--force" in r.stderr
    assert cli("board", "--board", BOARD_YAML, "--out", out, "--force", "--dpi", 100).returncode == 0


def test_tag_pose_json_against_truth(scene):
    d, poses = scene
    out = d / "pose0.json"
    r = cli("tag-pose", "--image", d / "view0.png", "--camera", d / "cam.yaml", "--board", BOARD_YAML, "--json", out)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    T_true = poses[0]
    assert {t["id"] for t in res["tags"]} == set(BOARD.ids) and res["ignored_tag_ids"] == []
    for t in res["tags"]:
        tag = BOARD.tag(t["id"])
        np.testing.assert_allclose(t["translation"], T_true.apply([tag.x, tag.y, 0.0]), atol=2e-3)
        R = np.array(t["rotation_matrix"])
        assert np.degrees(Rotation.from_matrix(R @ (T_true.R @ tag.rotation()).T).magnitude()) < 1.5
        assert t["reprojection_error_px"] < 0.3
    cp = res["camera_pose"]
    M = np.array(cp["matrix"])
    assert np.degrees(Rotation.from_matrix(M[:3, :3] @ T_true.R.T).magnitude()) < 0.1
    np.testing.assert_allclose(cp["translation"], T_true.t, atol=2e-3)
    np.testing.assert_allclose(M[:3, 3], cp["translation"])
    np.testing.assert_allclose(Rotation.from_quat(cp["quaternion_xyzw"]).as_matrix(), M[:3, :3], atol=1e-9)
    np.testing.assert_allclose(cp["camera_position"], -T_true.R.T @ T_true.t, atol=3e-3)
    assert cp["tags_used"] == BOARD.ids and cp["reprojection_error_px"] < 0.3
    # no board: every tag with one size, no camera pose
    r = cli("tag-pose", "--image", d / "view0.png", "--camera", d / "cam.yaml", "--tag-size", 0.05,
            "--json", d / "tags.json")
    assert r.returncode == 0, r.stderr
    res2 = json.loads((d / "tags.json").read_text())
    assert res2["camera_pose"] is None and [t["id"] for t in res2["tags"]] == [t["id"] for t in res["tags"]]
    assert cli("tag-pose", "--image", d / "view0.png", "--camera", d / "cam.yaml", "--tag-size", 0.05,
               "--json", d / "tags.json").returncode == 2  # exists, no --force


def test_tag_pose_bad_input(scene, tmp_path):
    d, _ = scene
    cam, img = d / "cam.yaml", d / "view1.png"
    out = tmp_path / "out.json"
    r = cli("tag-pose", "--image", d / "blank.png", "--camera", cam, "--board", BOARD_YAML, "--json", out)
    assert r.returncode == 2 and "no tag of the board" in r.stderr and not out.exists()
    missing = tmp_path / "nope.png"
    r = cli("tag-pose", "--image", missing, "--camera", cam, "--board", BOARD_YAML, "--json", out)
    assert r.returncode == 2 and str(missing) in r.stderr and not out.exists()
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    r = cli("tag-pose", "--image", junk, "--camera", cam, "--tag-size", 0.05, "--json", out)
    assert r.returncode == 2 and str(junk) in r.stderr and "decode" in r.stderr
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("tags: [oops\n")
    for flag in ("--camera", "--board"):
        args = {"--camera": cam, "--board": BOARD_YAML} | {flag: bad_yaml}
        r = cli("tag-pose", "--image", img, *[x for kv in args.items() for x in kv], "--json", out)
        assert r.returncode == 2 and str(bad_yaml) in r.stderr and not out.exists()
    # a board that lacks tags 6 and 7: they are ignored and reported
    part = tmp_path / "part.yaml"
    part.write_text(BOARD_YAML.read_text().replace("  - {id: 6,", "  # ").replace("  - {id: 7,", "  # "))
    r = cli("tag-pose", "--image", img, "--camera", cam, "--board", part, "--json", out)
    assert r.returncode == 0 and "ignored tags not on the board: [6, 7]" in r.stderr
    res = json.loads(out.read_text())
    assert res["ignored_tag_ids"] == [6, 7] and res["camera_pose"]["tags_used"] == [0, 1, 2, 3, 4, 5]
    # pose over the error limit: written with camera_pose null, exit 1
    r = cli("tag-pose", "--image", img, "--camera", cam, "--board", BOARD_YAML, "--json", out, "--force",
            "--max-error-px", 0.0001)
    assert r.returncode == 1 and "over the limit" in r.stderr
    assert json.loads(out.read_text())["camera_pose"] is None


def test_calibrate_intrinsics_and_rig(scene, tmp_path):
    d, poses = scene
    out = tmp_path / "cam.yaml"
    r = cli("calibrate", "intrinsics", "--images", f"{d}/view*.png", d / "blank.png", "--board", BOARD_YAML,
            "--out", out, "--camera-name", "left")
    assert r.returncode == 0, r.stderr
    assert "RMS reprojection error" in r.stdout and f"skipped {d / 'blank.png'}" in r.stderr
    calib = read_camera_info_yaml(out)
    assert calib.camera_name == "left" and (calib.width, calib.height) == (640, 480)
    np.testing.assert_allclose([calib.K[0, 0], calib.K[1, 1]], 600.0, rtol=0.02)  # 6 views only
    r = cli("calibrate", "intrinsics", "--images", f"{d}/view[01].png", "--board", BOARD_YAML,
            "--out", tmp_path / "x.yaml")
    assert r.returncode == 2 and "at least 4 needed" in r.stderr and not (tmp_path / "x.yaml").exists()
    r = cli("calibrate", "intrinsics", "--images", f"{d}/none*.png", "--chessboard", "9x6", "--square", 0.02,
            "--out", tmp_path / "x.yaml")
    assert r.returncode == 2 and "matches no file" in r.stderr
    r = cli("calibrate", "intrinsics", "--images", f"{d}/view*.png", "--board", BOARD_YAML, "--out", out)
    assert r.returncode == 2 and "--force" in r.stderr

    # a rig of one camera seen in three images (the same fixed pose: views 0, 0, 0 with new noise)
    rng = np.random.default_rng(5)
    cam = PinholeCamera(K, 640, 480, T_cw=poses[2])
    for k in range(3):
        cv2.imwrite(str(tmp_path / f"a{k}.png"), render_board(BOARD, cam, rng=rng, supersample=3))
    rig = tmp_path / "rig.yaml"
    r = cli("calibrate", "rig", "--board", BOARD_YAML, "--camera", f"a={d / 'cam.yaml'}", "--images",
            f"a={tmp_path}/a*.png", "--out", rig)
    assert r.returncode == 0, r.stderr
    T, info = read_rig_yaml(rig)["a"]
    assert np.degrees(Rotation.from_matrix(T.R @ poses[2].R.T).magnitude()) < 0.05
    np.testing.assert_allclose(T.inverse().t, cam.center, atol=1.5e-3)
    assert info.resolve() == (d / "cam.yaml").resolve()
    r = cli("calibrate", "rig", "--board", BOARD_YAML, "--camera", f"a={d / 'cam.yaml'}", "--images",
            f"a={d}/blank.png", "--out", tmp_path / "rig2.yaml")
    assert r.returncode == 2 and "no image gave a board pose" in r.stderr and not (tmp_path / "rig2.yaml").exists()
    r = cli("calibrate", "rig", "--board", BOARD_YAML, "--camera", f"a={d / 'cam.yaml'}", "--images",
            f"b={d}/view0.png", "--out", tmp_path / "rig2.yaml")
    assert r.returncode == 2 and "both --camera and --images" in r.stderr


@pytest.mark.parametrize("args, flag", [
    (["calibrate", "intrinsics", "--chessboard", "9x6", "--square", "nan"], "--square"),
    (["calibrate", "intrinsics", "--chessboard", "9x6", "--square", "inf"], "--square"),
    (["calibrate", "rig", "--max-error-px=-inf"], "--max-error-px"),
    (["tag-pose", "--tag-size", "0"], "--tag-size"),
    (["board", "--dpi", "nan"], "--dpi"),
    (["replay", "--tolerance=-1", "bags"], "--tolerance"),
    (["train-boxes", "--squash", "nan"], "--squash"),
])
def test_numeric_flags_refuse_nan_inf_and_impossible_values_by_name(args, flag):
    """Every size, time or tolerance flag of the CLI is a finite number of its range, refused naming the flag (not by
    OpenCV's or numpy's own message later)."""
    r = cli(*args)
    assert r.returncode == 2 and f"argument {flag}: must be a " in r.stderr, r.stderr[-1500:]
