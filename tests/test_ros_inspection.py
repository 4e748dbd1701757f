"""The detector's pure parts (odd_one_out_ros.inspection): report schema, view gathering, pose sources,
audit trail, overlay, simulated rig. No ROS graph here (tests/test_ros_detector.py has that)."""
import json
import subprocess
import sys
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from odd_one_out_ros.calibration.pose import PoseError
from odd_one_out_ros.geometry import Box3D, Rigid
from odd_one_out_ros.inspection.audit import (
    PARTIAL_DIR,
    AuditLog,
    AuditLogWarning,
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
def test_rig_gatherer_names_a_camera_whose_clock_is_off_not_one_that_is_late():
    """Five cameras at 8 Hz: one stamped 5 s ahead ends in no set and is out of sync (offset ~5 s); two stamped
    ahead together are still the minority; one whose frames arrive after their set (delivery, not clock) is not."""
    cams = [f"cam{i}" for i in range(5)]

    def run(shift, late=()):
        g = RigGatherer(cams, slop=0.05, min_views=2, timeout=0.5, camera_timeout=1.0)
        sets = []
        for k in range(48):  # 6 s
            t = 100.0 + k / 8
            for c in cams:
                if c not in late:
                    sets += g.add(c, t + shift.get(c, 0.0), c, t)
            for c in late:  # after the on-time cameras' set is out
                sets += g.add(c, t, c, t + 0.02)
            sets += g.poll(t + 0.05)
        return g, sets[-5:]

    g, sets = run({"cam4": 5.0})
    assert all(list(s.items) == cams[:4] for s in sets) and set(g.out_of_sync) == {"cam4"}
    assert 4.5 <= g.out_of_sync["cam4"] <= 5.5 and g.dropped_by["cam4"] > 20
    g, sets = run({"cam3": 5.0, "cam4": 5.0})
    assert all(list(s.items) == cams[:3] for s in sets) and set(g.out_of_sync) == {"cam3", "cam4"}
    g, sets = run({"cam4": -5.0})
    assert all(list(s.items) == cams[:4] for s in sets) and g.out_of_sync["cam4"] < -4.5
    g, sets = run({}, late=("cam0",))
    assert not g.out_of_sync and all("cam0" in s.items or "cam0" in s.missing for s in sets)


def test_rig_gatherer_sets_within_slop_only():
    g = RigGatherer(["a", "b", "c"], slop=0.01, min_views=2, timeout=0.5, camera_timeout=2.0, now=0.0)
    assert g.add("a", 1.0, "a1", 0.0) == [] and g.add("b", 1.005, "b1", 0.0) == []
    assert g.add("c", 1.5, "c_late", 0.0) == []  # too far from the others: a set of its own
    (s,) = g.add("c", 1.002, "c1", 0.01)
    assert s.items == {"a": "a1", "b": "b1", "c": "c1"} and s.missing == []
    assert g.pending == 1 and g.dropped == 0  # c_late waits in its own (newer) set
    with pytest.raises(ValueError):
        RigGatherer(["a", "a"], 0.01)
    with pytest.raises(ValueError):
        RigGatherer(["a", "b"], 0.01, min_views=3)


def test_rig_gatherer_does_not_wait_for_a_dead_camera_and_counts_every_frame():
    g = RigGatherer(["a", "b", "c"], slop=0.01, min_views=2, timeout=0.5, camera_timeout=1.0, now=0.0)
    # start-up: only complete sets, however long a set waits
    assert g.add("a", 1.0, "a0", 0.0) == [] and g.add("b", 1.0, "b0", 0.0) == []
    assert g.add("a", 1.5, "a1", 0.5) == [] and g.add("b", 1.5, "b1", 0.5) == [] and g.poll(0.9) == []
    # after camera_timeout, "c" has delivered nothing: it is out, the newest set of a and b is ready at once
    (s,) = g.poll(1.05)
    assert s.items == {"a": "a1", "b": "b1"} and s.missing == ["c"] and g.superseded == 2  # (a0, b0)
    assert g.add("b", 2.0, "b2", 1.1) == [] and g.add("a", 2.001, "a2", 1.1)[0].missing == ["c"]
    # c comes back: it is waited for again; a frame of it that is lost leaves the set to the timeout
    assert g.add("c", 3.0, "c3", 1.2) == []  # its set lacks a and b
    assert g.add("a", 3.0, "a3", 1.2) == [] and g.add("b", 3.0, "b3", 1.2)[0].missing == []
    assert g.add("a", 4.0, "a4", 1.3) == [] and g.add("b", 4.0, "b4", 1.3) == []  # c is live: wait
    assert g.poll(1.7) == [] and g.poll(1.81)[0].missing == ["c"]  # after set_timeout: without it
    # a set that cannot reach min_views in time is dropped and counted; a frame later than an emitted set too
    assert g.add("a", 5.0, "a5", 2.0) == [] and g.poll(2.6) == [] and g.dropped == 1
    assert g.add("b", 3.9, "b_stale", 2.6) == [] and g.dropped == 2
    # a newer ready set closes the older open ones (counted); c (out again) comes too late for its set
    g.add("a", 6.0, "a6", 3.0)
    assert len(g.add("a", 7.0, "a7", 3.0) + g.add("b", 7.0, "b7", 3.0) + g.add("c", 7.0, "c7", 3.0)) == 1
    assert g.dropped == 3 and g.superseded == 3 and g.pending == 0


def test_moving_selector_angles_age_and_reset():
    def centre(az_deg):
        a = np.radians(az_deg)
        return np.array([np.cos(a), np.sin(a), 1.0])

    assert view_angle_deg(centre(0)[[0, 1]].tolist() + [0], centre(90)[[0, 1]].tolist() + [0]) == pytest.approx(90)
    s = MovingViewSelector(views_required=3, min_angle_deg=30.0, max_age=10.0)
    assert s.add("v0", centre(0), 0.0, now=0.0) is None
    assert s.add("too close", centre(10), 1.0, now=1.0) is None and s.too_close == 1
    assert s.add("v1", centre(60), 2.0, now=2.0) is None
    assert s.add("stale", centre(200), -20.0, now=2.5) is None and s.expired == 1  # older than max_age
    assert s.add("v2", centre(120), 3.0, now=3.0) == ["v0", "v1", "v2"]
    assert len(s) == 0  # starts afresh
    s.add("old", centre(0), 4.0, now=4.0)
    assert s.add("new", centre(90), 20.0, now=20.0) is None and len(s) == 1  # "old" expired: 16 s before now
    assert s.expired == 2 and s.reset() == 1 and len(s) == 0
    with pytest.raises(ValueError):
        MovingViewSelector(0, 10.0, 1.0)


@pytest.mark.parametrize("bad_stamp", [86400.0 + 30.0, 0.0, 1e9])
def test_moving_selector_recovers_from_one_bad_stamp(bad_stamp):
    """Issue 14: one view stamped +1 day (or 0, or far off) used to push the age horizon for good."""
    s = MovingViewSelector(views_required=2, min_angle_deg=30.0, max_age=5.0)
    centre = [np.array([np.cos(a), np.sin(a), 1.0]) for a in np.radians([0, 90, 180])]
    assert s.add("bad", centre[0], bad_stamp, now=30.0) is None and s.expired == 1
    assert s.add("v1", centre[1], 30.5, now=30.5) is None
    assert s.add("v2", centre[2], 31.0, now=31.0) == ["v1", "v2"]


def test_drop_queue_drops_oldest_and_returns_it():
    q = DropQueue(2)
    assert [q.put(i) for i in range(5)] == [None, None, 0, 1, 2]
    assert q.dropped == 3 and q.qsize() == 2 and q.get(0.1) == 3 and q.get(0.1) == 4


def test_health_counts_logs_new_errors_then_throttles_and_rates_the_status():
    from odd_one_out_ros.inspection.diagnostics import DROP_REASONS, ERROR, OK, WARN, DetectorHealth

    h = DetectorHealth(["a", "b", "c"], min_views=2, camera_timeout=1.0, now=0.0, log_every=10.0, warn_window=5.0)
    assert h.status(0.5, 0)[0] == OK  # start-up grace
    for t in (0.1, 0.2, 0.3):
        for c in "abc":
            h.frame(c, t)
        h.arrival_ok("a", t), h.arrival_ok("b", t)
        h.view_ok("a", t), h.view_ok("b", t)
    lines = [h.drop("encoding", t, 1, "c", f"unsupported encoding 'yuv422' ({t} s)") for t in (0.1, 0.2, 0.3)]
    assert lines[0] == "c: unsupported encoding 'yuv422' (0.1 s)" and lines[1:] == [None, None]  # numbers: same
    assert h.drop("encoding", 0.4, 1, "c", "unsupported encoding '32FC1'") is not None  # a different error: logged
    assert h.drop("image", 0.4, 1, "c", "image data has 2 bytes") is not None  # another kind: logged
    assert h.drop("image", 11.0, 1, "c", "image data has 2 bytes") == \
        "c: image data has 2 bytes (1 more image drop(s) in the last 11 s)"  # throttled, then with the count
    with pytest.raises(KeyError):
        h.drop("bogus", 1.0)
    h.inspection_ok(2, {"inference": 0.5, "pipeline": 0.55}, 3, 1, ["c"])
    level, message, values = h.status(1.2, pending=1)
    assert level == WARN and "c (" in message and values["c/state"] == "out" and values["a/state"] == "ok"
    assert values["frames_received"] == 9 and values["frames_inspected"] == 2 and values["frames_dropped"] == 6
    assert values["frames_unaccounted"] == 0 and set(DROP_REASONS) <= {k[8:] for k in values}
    assert values["last_node_overhead_s"] == "0.050" and values["c/errors"] == "encoding=4, image=2"
    # a and b go silent too: 0 usable < min_views 2 -> ERROR naming them
    level, message, _ = h.status(2.0, 0)
    assert level == ERROR and "only 0 of 3 cameras usable (min_views 2)" in message and "a (no image for" in message
    h.inspection_failed(2, "inspection of 2 views failed: boom", 2.0)
    assert h.status(2.0, 0)[:2] == (ERROR, "inspection of 2 views failed: boom")
    assert h.dropped["inspection_failed"] == 2 and h.inference_errors == 1
    # back-pressure is not a fault; an expected drop (fault=False) is counted only
    h2 = DetectorHealth(["a"], 1, 1.0, now=0.0)
    h2.arrival_ok("a", 20.0)
    h2.drop("busy", 20.0, 4)
    assert h2.drop("camera_info", 20.0, 1, "a", "no CameraInfo yet", fault=False) is None
    assert h2.status(20.0, 0)[0] == OK and h2.dropped_total == 5 and not h2.cams["a"].errors
    # every camera fine, but the last set closed without one of them: WARN naming it, until a full set
    h3 = DetectorHealth(["a", "b", "c"], 2, 1.0, now=0.0)
    for c in "abc":
        h3.arrival_ok(c, 5.0), h3.view_ok(c, 5.0)
    h3.inspection_ok(2, {"pipeline": 0.1}, 3, 0, ["c"])
    assert h3.status(5.0, 0)[:2] == (WARN, "last inspection without c: their views missed the set (missing_views)")
    h3.inspection_ok(3, {"pipeline": 0.1}, 3, 0, [])
    assert h3.status(5.0, 0)[0] == OK


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
    from geometry_msgs.msg import PoseStamped

    from odd_one_out_ros.ros.conversions import rigid_to_pose
    from odd_one_out_ros.views import ViewError

    topic = PoseResolver.create("topic", frame_id="world")
    T_wc = Rigid.from_rotvec([0.1, 0.2, 0.3], [0.5, 0.1, 0.8])
    msg = PoseStamped()
    msg.header.frame_id, msg.pose = "world", rigid_to_pose(T_wc)
    T, _ = topic.resolve("cam0", None, None, msg)
    np.testing.assert_allclose(T.as_matrix(), T_wc.inverse().as_matrix(), atol=1e-12)
    with pytest.raises(PoseError):
        topic.resolve("cam0", None, None, None)
    msg.header.frame_id = "tool0"
    with pytest.raises(PoseError, match="not 'world'"):
        topic.resolve("cam0", None, None, msg)
    msg.header.frame_id, msg.pose.orientation.w = "", 3.0
    with pytest.raises(ViewError, match="unit quaternion") as e:
        topic.resolve("cam0", None, None, msg)
    assert e.value.kind == "pose"


def test_a_view_is_built_with_each_message_converted_once():
    """PoseResolver.build_view: image + CameraInfo (+ PoseStamped) -> the posed view, the pose exactly the source's
    (no round trip through a Pose message); each bad message is named by its kind."""
    from geometry_msgs.msg import PoseStamped

    from odd_one_out_ros.geometry import CameraCalibration
    from odd_one_out_ros.ros.conversions import calibration_to_camera_info, rgb_to_image, rigid_to_pose
    from odd_one_out_ros.views import ViewError

    sim = SimRig(SimConfig(seed=2, cameras=2, objects=(2, 2), image_size=64))
    rgb, cam = sim.view(1)
    image = rgb_to_image(rgb, "cam1", None, "bgr8")
    info = calibration_to_camera_info(CameraCalibration.from_camera(cam, "cam1"))
    static = PoseResolver.create("static", rig_file=str(share_dir() / "calibration" / "rig.yaml"))
    built = static.build_view("cam1", image, info)
    assert built.view.camera.T_cw is static.rig["cam1"] and built.pose is None and built.extra == {}
    assert np.array_equal(built.view.image, rgb) and built.view.source == "cam1"
    np.testing.assert_array_equal(built.view.camera.K, cam.K)
    topic = PoseResolver.create("topic", frame_id="world")
    pose = PoseStamped()
    pose.header.frame_id, pose.pose = "world", rigid_to_pose(cam.T_wc)
    built = topic.build_view("cam1", image, info, pose)
    assert built.pose is pose and np.allclose(built.view.camera.T_cw.as_matrix(), cam.T_cw.as_matrix(), atol=1e-9)
    bad_info = calibration_to_camera_info(CameraCalibration.from_camera(cam, "cam1"))
    bad_info.k = [0.0] * 9
    bad_image = rgb_to_image(rgb[:32], "cam1")  # 64 x 32: not the CameraInfo's size
    pose.pose.orientation.w = 3.0  # not a unit quaternion
    for resolver, img, inf, kind in ((static, image, bad_info, "camera_info"), (static, bad_image, info, "camera_info"),
                                     (topic, image, info, "pose")):
        with pytest.raises(ViewError) as e:
            resolver.build_view("cam1", img, inf, pose)
        assert e.value.kind == kind, str(e.value)
    image.encoding = "yuv422"
    with pytest.raises(ViewError, match="encoding") as e:
        static.build_view("cam1", image, info)
    assert e.value.kind == "image"
    # an image without a scene is told before its pose is looked for: a covered lens is "content", not "no tags"
    tags = PoseResolver.create("apriltag", board_file=str(share_dir() / "calibration" / "tray_board_12tags.yaml"))
    with pytest.raises(ViewError, match="black") as e:
        tags.build_view("cam1", rgb_to_image(np.zeros_like(rgb), "cam1"), info)
    assert e.value.kind == "content"


def test_sim_rig_parameters_are_the_simulations_fields():
    """Every SimConfig field but the board framing is a sim_rig parameter with the same default, and sim_config
    makes the simulation from them."""
    import dataclasses

    from odd_one_out_ros.ros.sim_rig import SimRigParams, sim_config

    params = {f.name: f.default for f in dataclasses.fields(SimRigParams)}
    sim_fields = [f for f in dataclasses.fields(SimConfig) if f.name != "board_distance"]
    assert all(params[f.name] == f.default for f in sim_fields)
    p = dataclasses.replace(SimRigParams(), seed=7, objects=(2, 3), cameras=3)
    assert sim_config(p) == dataclasses.replace(SimConfig(), seed=7, objects=(2, 3), cameras=3)
    with pytest.raises(ValueError, match="objects"):
        sim_config(dataclasses.replace(p, objects=(1, 2, 3)))


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


def test_the_rig_check_runs_once_per_period_and_a_camera_found_off_stays_out_until_found_right(tmp_path):
    """static poses with the board in view (the rig file = the sim's poses): each camera is checked at its first view
    and again once check_period has passed; in between its last outcome stands, so a camera bumped 5 cm is named at
    its next check, and stays out (also for views that look right again) until a check finds it right."""
    import time

    from odd_one_out_ros.calibration.rig import CameraExtrinsics, write_rig_yaml

    sim = SimRig(SimConfig(apriltag_board=True, seed=1, cameras=3, objects=(3, 3)))
    rig = write_rig_yaml(tmp_path / "rig.yaml", [CameraExtrinsics(f"cam{i}", "", sim.camera(i).T_cw, 0.0, [], 0.0,
                                                                  0.0) for i in range(3)], force=True)
    res = PoseResolver.create("static", str(rig), str(share_dir() / "calibration" / "tray_board_12tags.yaml"),
                              check_rig=(0.02, 2.0), check_period=1.0)
    rgb, cam = sim.view(0)
    T_wc = cam.T_cw.inverse()
    bumped_cam = cam.with_pose(Rigid(T_wc.R, T_wc.t + [0.05, 0.0, 0.0]).inverse())
    bumped = sim.renderer.render(bumped_cam, supersample=2)[0]  # what camera 0 sees once bumped 5 cm

    def settled(rgb):
        """The outcome (details or the PoseError) of the view that started a background check; returns once the
        check is done."""
        try:
            first = res.resolve("cam0", rgb, cam)[1]  # (the last outcome still stands for this view)
        except PoseError as e:
            first = e
        deadline = time.monotonic() + 10
        while "cam0" in res._due and time.monotonic() < deadline:
            time.sleep(0.01)
        return first

    T, info = res.resolve("cam0", rgb, cam)  # the first view: checked before it is used
    assert info["rig_check_cm"] < 1.0 and np.allclose(T.as_matrix(), cam.T_cw.as_matrix())
    assert res.resolve("cam0", bumped, cam)[1] == info and not res._due  # within the period: not checked again
    time.sleep(1.05)
    assert settled(bumped) == info  # a background check starts; this view keeps the last outcome
    with pytest.raises(PoseError, match=r"is [45]\.\d cm / 0\.0 deg from where the board's tags put it"):
        res.resolve("cam0", bumped, cam)
    with pytest.raises(PoseError, match="board's tags"):  # set right again, but not checked yet: still out
        res.resolve("cam0", rgb, cam)
    assert res.resolve("cam1", *sim.view(1))[1]["rig_check_cm"] < 1.0  # each camera on its own clock
    time.sleep(1.05)
    assert isinstance(settled(rgb), PoseError)  # the view that starts the check: still out
    assert res.resolve("cam0", rgb, cam)[1]["rig_check_cm"] < 1.0  # found right: back in


# ------------------------------------------------------------------------------------------ audit trail
def test_audit_log_appends_whole_lines_on_disk(tmp_path):
    path = tmp_path / "sub" / "audit.jsonl"
    log = AuditLog(path, run_id="run-a")
    log.append({"inspection_id": 1, "objects": []})
    assert json.loads(path.read_text().splitlines()[0]) == {"inspection_id": 1, "objects": [],
                                                             "run_id": "run-a"}  # before close
    log.append({"inspection_id": 2})
    assert log.close() is None
    with open(path, "a") as f:
        f.write('{"inspection_id": 3, "torn')  # a crash mid-line
    skipped = []
    assert [r["inspection_id"] for r in read_audit_log(path, skipped)] == [1, 2]
    assert len(skipped) == 1 and "audit.jsonl:3: torn last line" in skipped[0]
    with pytest.warns(AuditLogWarning, match="torn last line"):
        read_audit_log(path)  # without a list the skipped line is a warning, never silent
    with pytest.raises(ValueError, match="allowed|NaN|Out of range"), AuditLog(path) as again:
        again.append({"score": float("nan")})
    bad_dir = tmp_path / "file"
    bad_dir.write_text("")
    with pytest.raises(ValueError, match="cannot open the audit log"):
        AuditLog(bad_dir / "audit.jsonl")


def test_audit_log_whose_file_goes_is_opened_again_at_its_path(tmp_path):
    """The file (or its folder) removed, or replaced by another file, while the log is open: the next record goes
    to the path (a new file), append says so, the ids go on, and the path stays locked to this writer."""
    import shutil

    path = tmp_path / "sub" / "audit.jsonl"
    log = AuditLog(path, run_id="run-a")
    assert log.append({"inspection_id": 1}) is None and log.append({"inspection_id": 2}) is None
    shutil.rmtree(tmp_path / "sub")
    said = log.append({"inspection_id": 3})
    assert "was removed" in said and "inspection 3" in said
    assert [r["inspection_id"] for r in read_audit_log(path)] == [3]
    path.rename(tmp_path / "sub" / "moved.jsonl")
    path.write_text(json.dumps({"inspection_id": 40, "run_id": "other"}) + "\n")  # another file at the path
    assert "replaced" in log.append({"inspection_id": 4})
    assert [r["inspection_id"] for r in read_audit_log(path)] == [40, 4]
    assert log.append({"inspection_id": 41}) is None and log.last_id == 41
    with pytest.raises(ValueError, match="in use by another process"):
        AuditLog(path)
    assert log.close() is None
    assert AuditLog(path).last_id == 41


def test_audit_log_after_a_crash_fences_the_torn_line_and_continues_the_ids(tmp_path):
    """Issue 14: a restarted writer used to append onto the torn line (its first record lost, the whole log
    unreadable) and restart ids at 1. Now the torn line is fenced off, ids continue, every record names its run."""
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, node="/detector") as first:
        assert first.last_id == 0 and first.fenced is None
        for i in (1, 2):
            first.append({"inspection_id": i})
    with open(path, "ab") as f:
        f.write(b'{"inspection_id":3,"objec')  # killed while writing record 3
    second = AuditLog(path, node="/detector")
    assert second.last_id == 2 and second.run_id != first.run_id
    assert "torn last line (25 bytes" in second.fenced
    second.append({"inspection_id": second.last_id + 1})
    assert second.last_id == 3 and second.close() is None
    lines = path.read_bytes().split(b"\n")
    assert lines[2] == b'{"inspection_id":3,"objec' and json.loads(lines[3])["audit_fence"] == "torn line"
    skipped = []
    records = read_audit_log(path, skipped)
    assert [r["inspection_id"] for r in records] == [1, 2, 3]  # the new record is whole, the old ones readable
    assert [r["run_id"] for r in records] == [first.run_id] * 2 + [second.run_id]
    assert {r["node"] for r in records} == {"/detector"}
    assert skipped == [f"{path}:3: torn line (a crash or a full disk while writing), fenced off by run "
                       f"{second.run_id} at {json.loads(lines[3])['time']}; skipped"]
    assert AuditLog(path).last_id == 3  # the fence is no record: the next run continues at 4


def test_audit_log_has_one_writer_and_reports_unexplained_bad_lines(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    with pytest.raises(ValueError, match="in use by another process"):
        AuditLog(path)  # a second detector on the same file would interleave duplicate ids
    log.append({"inspection_id": 1})
    log.close()
    with AuditLog(path) as log2:  # free again once closed
        log2.append({"inspection_id": 2})
    text = path.read_text().splitlines()
    path.write_text("\n".join([text[0], "garbage in the middle", "[1, 2]", text[1]]) + "\n")
    skipped = []
    assert [r["inspection_id"] for r in read_audit_log(path, skipped)] == [1, 2]
    assert [m.split(": ")[0] for m in skipped] == [f"{path}:2", f"{path}:3"] and "not a JSON record" in skipped[0]
    with pytest.raises(ValueError, match="audit.jsonl:2: not JSON"):
        read_audit_log(path, strict=True)


def test_audit_log_on_a_full_disk_fails_appends_in_one_line_and_closes_quietly():
    """/dev/full: every write fails with ENOSPC. Appends raise a plain OSError (the detector logs and counts it);
    close never raises (it used to end in an OSError traceback flushing its buffer)."""
    log = AuditLog("/dev/full")
    with pytest.raises(OSError, match="No space left on device"):
        log.append({"inspection_id": 1})
    problem = log.close()
    assert problem and "the last append failed" in problem
    assert log.close() is None  # twice is fine


def test_audit_log_fences_a_partial_write_before_the_next_record(tmp_path):
    """A write that stops part way (here: a real partial write at a file-size limit, in a child process) leaves a
    torn line; the same writer's next append fences it off first instead of gluing onto it, and names the ids that
    have no record (the gap) and why."""
    path = tmp_path / "audit.jsonl"
    script = f"""
import resource, signal, sys
from odd_one_out_ros.inspection.audit import AuditLog
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
log = AuditLog({str(path)!r}, run_id="r1")
log.append({{"inspection_id": 1}})
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (200, hard))
for i in (2, 3):
    try:
        log.append({{"inspection_id": i, "pad": "x" * 400}})
    except OSError as e:
        print("append failed:", e.strerror)
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
log.append({{"inspection_id": 4}})
log.append({{"inspection_id": 5}})
print(log.close())
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "append failed: File too large" in r.stdout, r.stdout + r.stderr
    assert path.stat().st_size > 200  # record 2 was written part way (up to the limit)
    skipped = []
    records = read_audit_log(path, skipped)
    assert [r["inspection_id"] for r in records] == [1, 4, 5]
    assert records[1]["audit_gap"] == {"first_id": 2, "last_id": 3, "count": 2, "error": "[Errno 27] File too large"}
    assert "audit_gap" not in records[0] and "audit_gap" not in records[2]
    assert len(skipped) == 1 and ":2: torn line" in skipped[0] and "fenced off by run r1" in skipped[0]


def test_interrupted_view_bags_are_reported_not_skipped(tmp_path):
    """kill -9 while a bag is written: the bag stays in partial/ (never in the bags folder), and find_view_bags
    and odd-one-out replay report it instead of skipping it silently."""
    bags = tmp_path / "bags"
    script = f"""
import os, signal
from rosbags.rosbag2 import Writer
from rclpy.serialization import serialize_message
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String
from odd_one_out_ros.inspection.audit import write_view_bag
Writer.close = lambda self: os.kill(os.getpid(), signal.SIGKILL)  # killed just before the bag is closed
view = {{"/views/image": serialize_message(Image()), "/views/camera_info": serialize_message(CameraInfo()),
         "/views/pose": serialize_message(PoseStamped())}}
write_view_bag({str(bags / "inspection_1")!r}, [view], serialize_message(String(data="{{}}")), 10**18)
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == -9, r.stderr
    assert not (bags / "inspection_1").exists()
    left = bags / PARTIAL_DIR / "inspection_1"
    assert (left / "inspection_1.mcap").is_file() and not (left / "metadata.yaml").exists()
    old_style = bags / "inspection_0"  # what an interrupted bag looked like before partial/: no metadata.yaml
    old_style.mkdir()
    (old_style / "inspection_0.mcap").write_bytes((left / "inspection_1.mcap").read_bytes())
    with pytest.raises(BagFormatError, match="interrupted view bag.*and 1 more"):
        find_view_bags(bags)
    problems = []
    assert find_view_bags(bags, problems) == [] and len(problems) == 2
    assert all("interrupted view bag" in m for m in problems) and {str(old_style), str(left)} == {
        m.split(": ")[0] for m in problems}
    with pytest.raises(BagFormatError, match="interrupted"):
        find_view_bags(left)
    r = subprocess.run([sys.executable, "-m", "odd_one_out_ros.cli", "replay", str(bags), str(tmp_path / "none")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 4 and sum("interrupted view bag" in m for m in lines) == 2
    assert "none: no such bag folder" in lines[2] and "3 bag(s) or folder(s) could not be read" in lines[3]


def test_failed_view_bag_write_leaves_nothing_behind(tmp_path):
    from rclpy.serialization import serialize_message
    from std_msgs.msg import String

    with pytest.raises(KeyError):
        write_view_bag(tmp_path / "inspection_1", [{"/views/image": b""}], serialize_message(String()), 0)
    assert list(tmp_path.iterdir()) == []  # neither the bag nor partial/


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
    assert [p.name for p in (tmp_path / "bags").iterdir()] == ["inspection_1"]  # moved out of partial/
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
    assert sheet.shape == plain.shape == (256, 512, 3)  # 96 px views enlarged to 256 px tiles: readable labels
    red = (sheet[..., 0] > 200) & (sheet[..., 1] < 80) & ~((plain[..., 0] > 200) & (plain[..., 1] < 80))
    assert red.sum() > 20
    empty = overlay_image([], [], [], [])  # a verdict without views: a dark tile that says so
    assert empty.shape == (256, 256, 3) and empty.max() == 255 and np.median(empty) == 20


def test_labels_at_one_place_are_stacked_on_plates_that_do_not_overlap():
    """Five labels anchored at the same pixel (boxes seen one behind the other) and one at the image's corner: each
    on its own plate, inside the image, none overlapping another; the first keeps its place."""
    from odd_one_out_ros.viz import draw_label

    img, taken = np.zeros((120, 200, 3), np.uint8), []
    plates = [draw_label(img, f"{i} 0.{i}7 box 0.95", (60, 50), (255, 0, 0), taken, 0.45) for i in range(5)]
    plates.append(draw_label(img, "5 0.99", (195, 2), (255, 0, 0), taken, 0.45))
    assert taken == plates and plates[0][1] < 50 <= plates[0][3]
    for i, a in enumerate(plates):
        assert 0 <= a[0] < a[2] <= 200 and 0 <= a[1] < a[3] <= 120
        for b in plates[i + 1:]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)
    assert (img[plates[0][1]:plates[0][3], plates[0][0]:plates[0][2], 0] > 150).any()  # the text is drawn


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



def test_rig_gatherer_waits_for_every_camera_again_after_the_rig_was_quiet():
    """A conveyor stop or triggered cameras: after camera_timeout of silence from the whole rig, the next set is
    complete again, not closed by the first min_views cameras to arrive."""
    g = RigGatherer(["a", "b", "c"], slop=0.01, min_views=2, timeout=0.5, camera_timeout=1.0, now=0.0)
    for c in "abc":
        g.add(c, 1.0, c + "1", 0.0)
    assert g.add("a", 20.0, "a2", 10.0) == [] and g.add("b", 20.0, "b2", 10.001) == []  # c is waited for
    (s,) = g.add("c", 20.0, "c2", 10.002)
    assert s.missing == [] and g.dropped == 0


def test_audit_log_that_cannot_open_again_retries_and_names_the_gap(tmp_path):
    """The log's folder removed and a file put where it was: the records cannot be written (OSError each, not
    "closed"); once the path works again the next record is written there and names the ids that have none."""
    import shutil

    folder = tmp_path / "audit"
    log = AuditLog(folder / "a.jsonl", run_id="r1")
    log.append({"inspection_id": 1})
    shutil.rmtree(folder)
    folder.write_text("in the way")
    for i in (2, 3, 4):
        with pytest.raises(OSError):
            log.append({"inspection_id": i})
    folder.unlink()
    log.append({"inspection_id": 5})
    records = read_audit_log(folder / "a.jsonl")
    assert [r["inspection_id"] for r in records] == [5]
    assert records[0]["audit_gap"]["first_id"] == 2 and records[0]["audit_gap"]["last_id"] == 4
    assert records[0]["audit_gap"]["count"] == 3
    log.close()
    with pytest.raises(ValueError, match="closed"):
        log.append({"inspection_id": 6})
