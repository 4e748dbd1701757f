"""Calibration library against synthetic renders with exact ground truth: corner order and pixel
convention of pupil-apriltags, its pose_R convention, board pose accuracy, intrinsics, rig extrinsics."""
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from odd_one_out_ros.calibration import (
    BoardFileError,
    CalibrationError,
    PoseError,
    board_views,
    calibrate_extrinsics,
    calibrate_views,
    chessboard_views,
    detect_tags,
    estimate_board_pose,
    estimate_tag_poses,
    load_board,
    read_rig_yaml,
    write_rig_yaml,
)
from odd_one_out_ros.calibration.board import board_from_dict, board_image, texture_to_board
from odd_one_out_ros.calibration.detect import get_detector
from odd_one_out_ros.calibration.render import chessboard_texture, random_view, render_board, render_plane
from odd_one_out_ros.geometry import PinholeCamera, Rigid

ROOT = Path(__file__).resolve().parent.parent
BOARD = load_board(ROOT / "calibration" / "board_8tags.yaml")
K = np.array([[600.0, 0.0, 319.5], [0.0, 600.0, 239.5], [0.0, 0.0, 1.0]])
# real chessboard photographs with OpenCV's reference calibration: Debian's opencv-doc (not installed by setup)
OPENCV_DATA = Path(os.environ.get("OPENCV_SAMPLES_DATA", "/usr/share/doc/opencv-doc/examples/data"))


def angle_deg(R_a, R_b) -> float:
    return float(np.degrees(Rotation.from_matrix(R_a @ R_b.T).magnitude()))


def camera(T_cw, K=K, dist=()) -> PinholeCamera:
    return PinholeCamera(K, 640, 480, T_cw=T_cw, dist=np.asarray(dist, float))


def test_shipped_boards_and_corner_order():
    a3 = load_board(ROOT / "calibration" / "board_a3_12tags.yaml")
    assert BOARD.family == a3.family == "tag36h11" and BOARD.ids == list(range(8)) and a3.ids == list(range(10, 22))
    assert BOARD.sheet_size == (0.297, 0.21) and BOARD.tag(0).size == 0.05
    # p0..p3 = bottom-left, bottom-right, top-right, top-left as printed (x right, y up)
    np.testing.assert_allclose(BOARD.tag(0).corners(), [[-0.13, 0.015, 0], [-0.08, 0.015, 0], [-0.08, 0.065, 0],
                                                        [-0.13, 0.065, 0]], atol=1e-12)
    # the printed sheet, seen straight on: detections map back onto the board corners (pixel-centre convention)
    ppm = 4000.0
    img = board_image(BOARD, ppm)
    dets = detect_tags(img)
    assert [d.id for d in dets] == BOARD.ids
    A = texture_to_board(img.shape, ppm)
    for d in dets:
        xy = np.column_stack([d.corners, np.ones(4)]) @ A.T
        np.testing.assert_allclose(xy[:, :2], BOARD.tag(d.id).corners()[:, :2], atol=0.5 / ppm)
    assert [d.id for d in detect_tags(board_image(a3, 1000.0))] == a3.ids


def test_board_yaml_errors(tmp_path):
    bad = tmp_path / "b.yaml"
    for text, msg in [("tags: [{id: 0, x: 0, y: 0}]\n", "tag_size"),
                      ("tag_size: 0.05\ntags: [{id: 0, x: 0, y: 0}, {id: 1, x: 0.03, y: 0}]\n", "overlap"),
                      ("tag_size: 0.05\ntags: [{id: 0, x: 0, y: 0}, {id: 0, x: 0.1, y: 0}]\n", "unique"),
                      ("family: tag99h1\ntag_size: 0.05\ntags: [{id: 0, x: 0, y: 0}]\n", "tag99h1"),
                      ("tag_size: 0.05\nsheet_size: [0.05, 0.05]\ntags: [{id: 0, x: 0, y: 0}]\n", "smaller"),
                      ("tags: [oops\n", "YAML")]:
        bad.write_text(text)
        with pytest.raises(BoardFileError, match=msg) as e:
            load_board(bad)
        assert str(bad) in str(e.value)
    with pytest.raises(BoardFileError, match="cannot read"):
        load_board(tmp_path / "missing.yaml")


def test_detected_corners_are_unbiased_and_pupil_pose_convention():
    """Renders are exact (OpenCV's chessboard corners land on the truth); pupil-apriltags corners,
    after the -0.5 px shift, land there too, in the board's p0..p3 order. pupil's pose_R maps its
    tag frame (x right, y down, z into the tag) to the camera: ours = pose_R @ diag(1, -1, -1)."""
    rng = np.random.default_rng(5)
    tex, pts = chessboard_texture(9, 6, 0.025, 2000.0)
    res = []
    for _ in range(3):
        cam = camera(random_view(rng, max_tilt_deg=30, distance=(0.45, 0.6)))
        img = render_plane(tex, 2000.0, cam, rng=rng)
        ok, c = cv2.findChessboardCorners(img, (9, 6))
        assert ok
        c = cv2.cornerSubPix(img, c, (5, 5), (-1, -1), (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-4))
        uv, _ = cam.project(pts)
        dist, _ = cKDTree(uv).query(c.reshape(-1, 2))
        res.append(dist)
    assert np.sqrt(np.mean(np.concatenate(res) ** 2)) < 0.1  # the renderer's geometry is exact

    errs, corners = [], BOARD.corners()
    for _ in range(4):
        cam = camera(random_view(rng))
        img = render_board(BOARD, cam, rng=rng)
        dets = detect_tags(img)
        assert len(dets) >= 6
        for d in dets:
            uv, _ = cam.project(corners[d.id])
            errs.append(d.corners - uv)
        # pupil-apriltags' own pose of each tag, against the truth
        raw = get_detector().detect(img, True, (K[0, 0], K[1, 1], K[0, 2], K[1, 2]), BOARD.tag(0).size)
        for r in raw:
            tag = BOARD.tag(r.tag_id)
            R_true = cam.T_cw.R @ tag.rotation()  # tag (our frame) -> camera
            assert angle_deg(r.pose_R @ np.diag([1.0, -1.0, -1.0]), R_true) < 2.0
            np.testing.assert_allclose(r.pose_t.ravel(), cam.world_to_camera([[tag.x, tag.y, 0.0]])[0], atol=3e-3)
        for tp in estimate_tag_poses(dets, cam, 0.05):
            tag = BOARD.tag(tp.id)
            assert angle_deg(tp.T_ct.R, cam.T_cw.R @ tag.rotation()) < 2.0
            np.testing.assert_allclose(tp.T_ct.t, cam.world_to_camera([[tag.x, tag.y, 0.0]])[0], atol=2e-3)
            assert tp.reprojection_error_px < 0.3
    e = np.concatenate(errs)
    assert np.all(np.abs(e.mean(axis=0)) < 0.05), e.mean(axis=0)  # no half-pixel bias
    assert np.sqrt(np.mean(e ** 2)) < 0.15 and np.abs(e).max() < 0.6


def test_board_pose_accuracy_over_random_views():
    """640x480, 8-tag A4 board, 0.35-0.7 m, tilt up to 40 deg; 4 of 24 views with lens distortion."""
    rng = np.random.default_rng(7)
    rot, pos, rms = [], [], []
    for i in range(24):
        dist = [-0.2, 0.05, 0.0005, -0.0005, 0.0] if i % 6 == 0 else ()
        cam = camera(random_view(rng), dist=dist)
        pose = estimate_board_pose(detect_tags(render_board(BOARD, cam, rng=rng, supersample=3)), BOARD, cam)
        rot.append(angle_deg(pose.T_cw.R, cam.T_cw.R))
        pos.append(np.linalg.norm(pose.T_cw.inverse().t - cam.center))
        rms.append(pose.reprojection_error_px)
        assert not pose.outlier_tag_ids and not pose.unknown_tag_ids
    print(f"board pose: median {np.median(rot):.4f} deg, {np.median(pos) * 1000:.3f} mm; "
          f"max {max(rot):.4f} deg, {max(pos) * 1000:.3f} mm; median RMS {np.median(rms):.3f} px")
    assert np.median(rot) <= 0.1 and np.median(pos) <= 0.003
    assert max(rot) <= 0.5 and max(pos) <= 0.01
    assert np.median(rms) < 0.2


def test_rotated_tags_wrong_tag_and_unknown_tag():
    """Tags turned in-plane, one tag misplaced in the description (RANSAC drops it), one missing."""
    truth = board_from_dict({"tag_size": 0.04, "sheet_size": [0.26, 0.18], "tags": [
        {"id": 20, "x": -0.08, "y": 0.04, "yaw_deg": 90}, {"id": 21, "x": 0.0, "y": 0.04, "yaw_deg": 180},
        {"id": 22, "x": 0.08, "y": 0.04, "yaw_deg": -90}, {"id": 23, "x": -0.08, "y": -0.04, "yaw_deg": 30},
        {"id": 24, "x": 0.0, "y": -0.04}, {"id": 25, "x": 0.08, "y": -0.04, "yaw_deg": 45}]})
    described = board_from_dict({"tag_size": 0.04, "tags": [
        {"id": t.id, "x": t.x + (0.02 if t.id == 24 else 0.0), "y": t.y, "yaw_deg": np.degrees(t.yaw)}
        for t in truth.tags if t.id != 25]})
    rng = np.random.default_rng(11)
    for _ in range(3):
        cam = camera(random_view(rng, distance=(0.35, 0.5), max_tilt_deg=30))
        dets = detect_tags(render_board(truth, cam, rng=rng))
        assert [d.id for d in dets] == truth.ids
        good = estimate_board_pose(dets, truth, cam)
        assert angle_deg(good.T_cw.R, cam.T_cw.R) < 0.15 and np.linalg.norm(good.T_cw.t - cam.T_cw.t) < 0.003
        pose = estimate_board_pose(dets, described, cam)
        assert pose.outlier_tag_ids == (24,) and pose.unknown_tag_ids == (25,) and pose.tag_ids == (20, 21, 22, 23)
        assert angle_deg(pose.T_cw.R, cam.T_cw.R) < 0.2 and np.linalg.norm(pose.T_cw.t - cam.T_cw.t) < 0.004
        one = estimate_board_pose(dets[:1], truth, cam, min_tags=1)  # a single tag: IPPE_SQUARE
        assert angle_deg(one.T_cw.R, cam.T_cw.R) < 1.5 and np.linalg.norm(one.T_cw.t - cam.T_cw.t) < 0.01


def test_pose_rejections():
    rng = np.random.default_rng(2)
    cam = camera(random_view(rng))
    dets = detect_tags(render_board(BOARD, cam, rng=rng))
    with pytest.raises(PoseError, match="no tag of the board"):
        estimate_board_pose([], BOARD, cam)
    with pytest.raises(PoseError, match="at least 2 needed"):
        estimate_board_pose(dets[:1], BOARD, cam)
    with pytest.raises(PoseError, match="over the limit"):
        estimate_board_pose(dets, BOARD, cam, max_error_px=0.001)
    assert detect_tags(np.full((480, 640), 128, np.uint8)) == []


def test_intrinsics_from_board_views_with_distortion(tmp_path):
    """15 synthetic views of the tag board through a distorted lens: fx, fy, cx, cy within 0.5 %."""
    K_true = np.array([[610.0, 0.0, 322.0], [0.0, 605.0, 236.0], [0.0, 0.0, 1.0]])
    D_true = [-0.25, 0.08, 0.001, -0.0005, 0.0]
    rng = np.random.default_rng(3)
    paths = []
    for i in range(15):
        cam = camera(random_view(rng, distance=(0.3, 0.5), max_tilt_deg=45), K=K_true, dist=D_true)
        paths.append(tmp_path / f"view{i:02d}.png")
        cv2.imwrite(str(paths[-1]), render_board(BOARD, cam, rng=rng, supersample=3))
    skipped = []
    views, size = board_views(paths, BOARD, skipped)
    assert not skipped and size == (640, 480)
    res = calibrate_views(views, size)
    Kc = res.calibration.K
    err = np.abs([Kc[0, 0] / 610 - 1, Kc[1, 1] / 605 - 1, Kc[0, 2] / 322 - 1, Kc[1, 2] / 236 - 1]) * 100
    print(f"intrinsics from board views: fx fy cx cy errors {np.round(err, 3)} %, RMS {res.rms_px:.3f} px")
    assert err.max() < 0.5 and res.rms_px < 0.3
    np.testing.assert_allclose(res.calibration.D[:2], D_true[:2], atol=0.02)


def test_intrinsics_from_chessboard_views(tmp_path):
    tex, _ = chessboard_texture(9, 6, 0.025, 2000.0)
    rng = np.random.default_rng(4)
    K_true = np.array([[580.0, 0.0, 316.0], [0.0, 583.0, 243.0], [0.0, 0.0, 1.0]])
    paths = []
    while len(paths) < 12:
        cam = camera(random_view(rng, distance=(0.35, 0.55), max_tilt_deg=40), K=K_true)
        paths.append(tmp_path / f"c{len(paths):02d}.png")
        cv2.imwrite(str(paths[-1]), render_plane(tex, 2000.0, cam, rng=rng, supersample=3))
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((480, 640), 200, np.uint8))
    skipped = []
    views, size = chessboard_views([*paths, blank], (9, 6), 0.025, skipped)
    assert size == (640, 480) and [s[0] for s in skipped][-1] == str(blank) and "no 9x6 chessboard" in skipped[-1][1]
    res = calibrate_views(views, size, skipped)
    Kc = res.calibration.K
    err = np.abs([Kc[0, 0] / 580 - 1, Kc[1, 1] / 583 - 1, Kc[0, 2] / 316 - 1, Kc[1, 2] / 243 - 1]) * 100
    print(f"intrinsics from chessboards ({len(views)} views): errors {np.round(err, 3)} %, RMS {res.rms_px:.3f} px")
    assert len(views) >= 8 and err.max() < 0.5
    with pytest.raises(CalibrationError, match="at least 4 needed"):
        calibrate_views(views[:2], size, skipped)


def test_rig_extrinsics_and_rig_yaml(tmp_path):
    """Two fixed cameras, four images each of the still board; in one image of cam_b the board moved."""
    rng = np.random.default_rng(9)
    cams = {"cam_a": camera(random_view(rng)), "cam_b": camera(random_view(rng), dist=[-0.1, 0.01, 0, 0, 0])}
    results = []
    for name, cam in cams.items():
        paths = []
        for k in range(4):
            moved = name == "cam_b" and k == 3
            seen = cam.with_pose(cam.T_cw @ Rigid.from_rotvec([0, 0, 0.05], [0.02, 0, 0])) if moved else cam
            paths.append(tmp_path / f"{name}_{k}.png")
            cv2.imwrite(str(paths[-1]), render_board(BOARD, seen, rng=rng, supersample=3, noise_sigma=2.0))
        ext = calibrate_extrinsics(name, paths, BOARD, cam, camera_info=f"{name}.yaml")
        assert angle_deg(ext.T_cw.R, cam.T_cw.R) < 0.05 and np.linalg.norm(ext.T_cw.inverse().t - cam.center) < 0.002
        assert len(ext.images_used) == (3 if name == "cam_b" else 4) and ext.reprojection_error_px < 0.2
        if name == "cam_b":
            assert ext.skipped[0][0] == str(paths[3]) and "disagrees" in ext.skipped[0][1]
        results.append(ext)
    out = write_rig_yaml(tmp_path / "rig.yaml", results, board_file="board_8tags.yaml")
    with pytest.raises(FileExistsError):
        write_rig_yaml(out, results)
    back = read_rig_yaml(out)
    assert set(back) == set(cams)
    for name, (T, info) in back.items():
        np.testing.assert_allclose(T.as_matrix(), results[[r.name for r in results].index(name)].T_cw.as_matrix(),
                                   atol=1e-9)
        assert info == tmp_path / f"{name}.yaml"


@pytest.mark.skipif(not (OPENCV_DATA / "left01.jpg").is_file(),
                    reason=f"no real photographs at {OPENCV_DATA} (apt-get install opencv-doc, or OPENCV_SAMPLES_DATA)")
def test_real_chessboard_photographs_match_opencv_reference():
    """OpenCV's left01-14.jpg (9x6, 25 mm): no ground truth, but OpenCV's own reference calibration."""
    skipped = []
    views, size = chessboard_views(sorted(OPENCV_DATA.glob("left[01]*.jpg")), (9, 6), 0.025, skipped)
    res = calibrate_views(views, size, skipped)
    fs = cv2.FileStorage(str(OPENCV_DATA / "left_intrinsics.yml"), cv2.FILE_STORAGE_READ)
    ref = fs.getNode("camera_matrix").mat()
    Kc = res.calibration.K
    print(f"left01-14: fx {Kc[0, 0]:.1f} fy {Kc[1, 1]:.1f} cx {Kc[0, 2]:.1f} cy {Kc[1, 2]:.1f}, "
          f"RMS {res.rms_px:.3f} px; reference {ref[0, 0]:.1f} {ref[1, 1]:.1f} {ref[0, 2]:.1f} {ref[1, 2]:.1f}")
    assert len(views) == 13 and res.rms_px < 0.3
    np.testing.assert_allclose([Kc[0, 0], Kc[1, 1], Kc[0, 2], Kc[1, 2]], [ref[0, 0], ref[1, 1], ref[0, 2], ref[1, 2]],
                               rtol=0.01)
