"""The detector's pure parts (odd_one_out_ros.inspection): report schema, view gathering, pose sources,
audit trail, overlay, simulated rig. No ROS graph here (tests/test_ros_detector.py has that)."""
import json
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from odd_one_out_ros.calibration.pose import PoseError
from odd_one_out_ros.geometry import Box3D, Rigid
from odd_one_out_ros.inspection.audit import (
    AuditLog,
    BagFormatError,
    find_view_bags,
    read_audit_log,
    read_view_bag,
    write_view_bag,
)
from odd_one_out_ros.inspection.gather import DropQueue, MovingViewSelector, RigGatherer, view_angle_deg
from odd_one_out_ros.inspection.overlay import overlay_image
from odd_one_out_ros.inspection.poses import PoseResolver
from odd_one_out_ros.inspection.report import SCHEMA, build_report, compare_objects, match_to_truth, validate_report
from odd_one_out_ros.inspection.sim import SimConfig, SimRig, fixed_cameras, orbit_camera
from odd_one_out_ros.resources import share_dir
from odd_one_out_ros.views import PosedView


def obj(center, size=(0.1, 0.1, 0.05), yaw=0.0, score=0.2, anomalous=False):
    return SimpleNamespace(box=Box3D(center, size, yaw), score=score, anomalous=anomalous)


def report_of(objects, **kw):
    args = dict(inspection_id=1, stamp=12.5, frame_id="world", objects=objects, threshold=0.5,
                views=[{"camera": "cam0", "stamp": 12.5}], latency={"inference": 0.1, "pipeline": 0.2},
                model={"checkpoint": None})
    args.update(kw)
    return build_report(**args)


# ------------------------------------------------------------------------------------------ report
def test_report_schema_round_trip_and_counts():
    r = report_of([obj((0.1, 0, 0.02)), obj((-0.2, 0.1, 0.03), yaw=0.4, score=0.93, anomalous=True)])
    back = validate_report(json.loads(json.dumps(r)))
    assert back["schema"] == SCHEMA and back["n_objects"] == 2 and back["n_anomalous"] == 1
    assert back["anomaly_detected"] is True
    assert [o["label"] for o in back["objects"]] == ["normal", "anomalous"]
    assert back["objects"][1]["yaw"] == pytest.approx(0.4) and back["objects"][1]["id"] == 1
    empty = validate_report(json.loads(json.dumps(report_of([]))))
    assert empty["objects"] == [] and empty["anomaly_detected"] is False and empty["n_objects"] == 0


@pytest.mark.parametrize("mutate,match", [
    (lambda r: r.update(schema="other/1"), "schema"),
    (lambda r: r["objects"][0].update(score=1.5), "score"),
    (lambda r: r["objects"][0].update(label="odd"), "label"),
    (lambda r: r.update(n_anomalous=0), "counts"),
    (lambda r: r.update(anomaly_detected=False), "anomaly_detected"),
    (lambda r: r["objects"][0].update(center=[0, 0]), "centre"),
    (lambda r: r.pop("frame_id"), "frame_id"),
])
def test_report_validation_names_the_problem(mutate, match):
    r = json.loads(json.dumps(report_of([obj((0, 0, 0), score=0.9, anomalous=True)])))
    mutate(r)
    with pytest.raises(ValueError, match=match):
        validate_report(r)


def test_compare_objects_and_yaw_modulo_pi():
    a = report_of([obj((0, 0, 0.02), yaw=0.1, score=0.6, anomalous=True)])["objects"]
    same = report_of([obj((0, 0, 0.02), yaw=0.1 + np.pi, score=0.6 + 5e-5, anomalous=True)])["objects"]
    assert compare_objects(a, same) == []
    moved = report_of([obj((0.01, 0, 0.02), yaw=0.1, score=0.6, anomalous=True)])["objects"]
    assert "box differs" in compare_objects(a, moved)[0]
    relabel = report_of([obj((0, 0, 0.02), yaw=0.1, score=0.4, anomalous=False)])["objects"]
    assert any("label" in d for d in compare_objects(a, relabel))
    assert compare_objects(a, []) == ["1 objects recorded, 0 replayed"]


def test_match_to_truth_is_one_to_one_by_iou():
    truth = [Box3D((0, 0, 0.05), (0.1, 0.1, 0.1)), Box3D((0.3, 0, 0.05), (0.1, 0.1, 0.1)),
             Box3D((-0.3, 0, 0.05), (0.1, 0.1, 0.1))]
    det = [Box3D((0.31, 0, 0.05), (0.1, 0.1, 0.1)), Box3D((0.005, 0, 0.05), (0.1, 0.1, 0.1)),
           Box3D((0.0, 0.4, 0.05), (0.1, 0.1, 0.1))]
    match, extra = match_to_truth(truth, det)
    assert match == [1, 0, None] and extra == [2]
    assert match_to_truth(truth, []) == ([None, None, None], [])
    assert match_to_truth([], det) == ([], [0, 1, 2])


# ------------------------------------------------------------------------------------------ gathering
def test_rig_gatherer_sets_within_slop_only():
    g = RigGatherer(["a", "b", "c"], slop=0.01)
    assert g.add("a", 1.0, "a1") is None and g.add("b", 1.005, "b1") is None
    assert g.add("c", 1.5, "c_late") is None  # too far from the others
    assert g.add("c", 1.002, "c1") == ["a1", "b1", "c1"]
    with pytest.raises(ValueError):
        RigGatherer(["a", "a"], 0.01)


def test_moving_selector_angles_age_and_reset():
    def centre(az_deg):
        a = np.radians(az_deg)
        return np.array([np.cos(a), np.sin(a), 1.0])

    assert view_angle_deg(centre(0)[[0, 1]].tolist() + [0], centre(90)[[0, 1]].tolist() + [0]) == pytest.approx(90)
    s = MovingViewSelector(views_required=3, min_angle_deg=30.0, max_age=10.0)
    assert s.add("v0", centre(0), 0.0) is None
    assert s.add("too close", centre(10), 1.0) is None and s.too_close == 1
    assert s.add("v1", centre(60), 2.0) is None
    assert s.add("stale", centre(200), -20.0) is None and s.expired == 1  # older than max_age
    assert s.add("v2", centre(120), 3.0) == ["v0", "v1", "v2"]
    assert len(s) == 0  # starts afresh
    s.add("old", centre(0), 4.0)
    assert s.add("new", centre(90), 20.0) is None and len(s) == 1  # "old" expired: 16 s behind
    assert s.expired == 2
    with pytest.raises(ValueError):
        MovingViewSelector(0, 10.0, 1.0)


def test_drop_queue_drops_oldest_and_counts():
    q = DropQueue(2)
    for i in range(5):
        q.put(i)
    assert q.dropped == 3 and q.get(0.1) == 3 and q.get(0.1) == 4


# ------------------------------------------------------------------------------------------ poses
def test_shipped_rig_file_is_the_default_sim_rig():
    resolver = PoseResolver.create("static", rig_file=str(share_dir() / "calibration" / "rig.yaml"))
    cams = fixed_cameras(SimConfig())
    assert sorted(resolver.rig) == [f"cam{i}" for i in range(len(cams))]
    for i, cam in enumerate(cams):
        T, _ = resolver.resolve(f"cam{i}", None, None)
        np.testing.assert_allclose(T.as_matrix(), cam.T_cw.as_matrix(), atol=1e-9)
    with pytest.raises(ValueError, match="not in the rig file"):
        resolver.check_cameras(["cam0", "left"])


def test_pose_sources_and_their_errors(tmp_path):
    with pytest.raises(ValueError, match="pose source must be one of"):
        PoseResolver.create("tf")
    with pytest.raises(ValueError, match="nope.yaml"):
        PoseResolver.create("static", rig_file=str(tmp_path / "nope.yaml"))
    topic = PoseResolver.create("topic")
    T_wc = Rigid.from_rotvec([0.1, 0.2, 0.3], [0.5, 0.1, 0.8])
    T, _ = topic.resolve("cam0", None, None, T_wc)
    np.testing.assert_allclose(T.as_matrix(), T_wc.inverse().as_matrix())
    with pytest.raises(PoseError):
        topic.resolve("cam0", None, None, None)


def test_apriltag_poses_on_simulated_views_and_reprojection_limit():
    sim = SimRig(SimConfig(apriltag_board=True, seed=1, cameras=3, objects=(3, 3)))
    board_file = str(share_dir() / "calibration" / "tray_board_12tags.yaml")
    good = PoseResolver.create("apriltag", board_file=board_file)
    strict = PoseResolver.create("apriltag", board_file=board_file, max_error_px=1e-4)
    for i in range(3):
        rgb, cam = sim.view(i)
        T, info = good.resolve(f"cam{i}", rgb, cam)
        angle = np.degrees(np.linalg.norm(cv2.Rodrigues(T.R @ cam.T_cw.R.T)[0]))
        assert angle < 0.5 and np.linalg.norm(T.inverse().t - cam.center) < 0.01
        assert info["reprojection_error_px"] < 1.0 and len(info["tags"]) >= 2
        with pytest.raises(PoseError, match="over the limit"):
            strict.resolve(f"cam{i}", rgb, cam)
    blank = np.full_like(rgb, 128)
    with pytest.raises(PoseError, match="no tag"):
        good.resolve("cam0", blank, cam)


# ------------------------------------------------------------------------------------------ audit trail
def test_audit_log_appends_whole_lines_on_disk(tmp_path):
    path = tmp_path / "sub" / "audit.jsonl"
    log = AuditLog(path)
    log.append({"inspection_id": 1, "objects": []})
    assert json.loads(path.read_text().splitlines()[0]) == {"inspection_id": 1, "objects": []}  # before close
    log.append({"inspection_id": 2})
    log.close()
    with open(path, "a") as f:
        f.write('{"inspection_id": 3, "torn')  # a crash mid-line
    assert [r["inspection_id"] for r in read_audit_log(path)] == [1, 2]
    with pytest.raises(ValueError, match="allowed|NaN|Out of range"):
        AuditLog(path).append({"score": float("nan")})
    bad_dir = tmp_path / "file"
    bad_dir.write_text("")
    with pytest.raises(ValueError, match="cannot open the audit log"):
        AuditLog(bad_dir / "audit.jsonl")


def test_view_bag_round_trip_and_bad_folders(tmp_path):
    from geometry_msgs.msg import PoseStamped
    from rclpy.serialization import serialize_message  # message serialisation only, no graph
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import String

    views = []
    for i in range(3):
        img = Image(height=1, width=2, encoding="rgb8", step=6, data=bytes(range(i, i + 6)))
        views.append({"/views/image": serialize_message(img), "/views/camera_info": serialize_message(CameraInfo()),
                      "/views/pose": serialize_message(PoseStamped())})
    report = serialize_message(String(data='{"x": 1}'))
    bag = write_view_bag(tmp_path / "bags" / "inspection_1", views, report, 10**18)
    back, rep = read_view_bag(bag)
    assert back == views and rep == report
    assert find_view_bags(tmp_path / "bags") == [bag] == find_view_bags(bag)
    with pytest.raises(BagFormatError, match="neither a rosbag2"):
        find_view_bags(tmp_path)
    with pytest.raises(BagFormatError, match="no such"):
        find_view_bags(tmp_path / "missing")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "metadata.yaml").write_text("not: a bag\n")
    with pytest.raises(BagFormatError, match="junk"):
        read_view_bag(tmp_path / "junk")


# ------------------------------------------------------------------------------------------ overlay, sim
def test_overlay_draws_red_anomalous_boxes(rng):
    sim = SimRig(SimConfig(cameras=2, objects=(3, 3), image_size=96, seed=5))
    views = [PosedView(*sim.view(i), source=f"cam{i}") for i in range(2)]
    boxes = [Box3D.from_dict(o) for o in sim.ground_truth()["objects"]]
    plain = overlay_image(views, [], [], [])
    sheet = overlay_image(views, boxes, [0.9, 0.1, 0.2], [True, False, False])
    assert sheet.shape == plain.shape == (96, 192, 3)
    red = (sheet[..., 0] > 200) & (sheet[..., 1] < 80) & ~((plain[..., 0] > 200) & (plain[..., 1] < 80))
    assert red.sum() > 20
    with pytest.raises(ValueError):
        overlay_image([], [], [], [])


def test_sim_rig_cameras_orbit_and_empty_tray():
    cfg = SimConfig(cameras=4, objects=(0, 0), image_size=64, mode="rig")
    sim = SimRig(cfg)
    assert sim.ground_truth()["objects"] == [] and sim.n_views == 4
    rgb, cam = sim.view(2)
    assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8 and cam is sim.cameras[2]
    centres = [c.center for c in sim.cameras]
    assert view_angle_deg(centres[0], centres[1], (0, 0, 0.03)) == pytest.approx(
        view_angle_deg(centres[1], centres[2], (0, 0, 0.03)))
    orbit = SimConfig(mode="orbit", orbit_steps=12)
    a, b = orbit_camera(orbit, 0), orbit_camera(orbit, 13)
    np.testing.assert_allclose(b.center, orbit_camera(orbit, 1).center)
    assert np.linalg.norm(a.center - (0, 0, 0.03)) == pytest.approx(0.68)
    truth = SimRig(SimConfig(seed=3, objects=(4, 6), image_size=64)).ground_truth()
    assert truth["schema"] == "odd_one_out_ros/ground_truth/1" and 4 <= len(truth["objects"]) <= 6
    for bad in (dict(mode="spin"), dict(kind="cars"), dict(objects=(3, 2)), dict(cameras=0)):
        with pytest.raises(ValueError):
            SimConfig(**bad)

