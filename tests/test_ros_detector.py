"""The detector and sim_rig nodes in real rclpy graphs (DDS on loopback, own ROS_DOMAIN_ID): real rendering,
real message conversion, the real Inspector with real checkpoints, the audit trail and `odd-one-out replay`.
Some tests inject a fake inference function to get objects with known labels (random weights find none)."""
import json
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from odd_one_out_ros.geometry import Box3D
from odd_one_out_ros.inspection.report import validate_report
from odd_one_out_ros.inspection.sim import SimConfig, fixed_cameras, orbit_camera
from odd_one_out_ros.model.inference import InspectionResult, ObjectResult

rclpy = pytest.importorskip("rclpy")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import PoseArray  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_msgs.msg import Bool, String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from visualization_msgs.msg import Marker, MarkerArray  # noqa: E402

from odd_one_out_ros.ros import detector as detector_module  # noqa: E402
from odd_one_out_ros.ros.detector import DetectorNode  # noqa: E402
from odd_one_out_ros.ros.sim_rig import SimRigNode  # noqa: E402

LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)


class Graph:
    """One rclpy context with its nodes spinning in a MultiThreadedExecutor thread."""

    def __init__(self, domain: int):
        self.ctx = Context()
        rclpy.init(context=self.ctx, domain_id=domain)
        self.executor = MultiThreadedExecutor(num_threads=6, context=self.ctx)
        self.nodes = []
        self.thread = None

    def add(self, node):
        self.nodes.append(node)
        self.executor.add_node(node)
        if self.thread is None:
            self.thread = threading.Thread(target=self.executor.spin, daemon=True)
            self.thread.start()
        return node

    def node(self, name: str):
        return self.add(rclpy.create_node(name, context=self.ctx))

    def close(self):
        self.executor.shutdown()
        if self.thread is not None:
            self.thread.join(timeout=10)
        for n in reversed(self.nodes):
            n.destroy_node()
        rclpy.try_shutdown(context=self.ctx)


class Probe:
    """Subscribes to every output of one detector and keeps what arrives."""

    def __init__(self, graph: Graph, det: str = "/detector"):
        self.node = graph.node("probe" + det.replace("/", "_"))
        self.msgs = defaultdict(list)
        for typ, topic, qos in ((MarkerArray, "markers", LATCHED), (PoseArray, "anomalies", LATCHED),
                                (Bool, "anomaly_detected", LATCHED), (Image, "overlay", LATCHED),
                                (String, "detections", 10)):
            self.node.create_subscription(typ, f"{det}/{topic}", self.msgs[topic].append, qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._diag, 10)
        self.det = det.strip("/")

    def _diag(self, msg):
        for s in msg.status:
            if s.hardware_id == "/" + self.det:
                self.msgs["diagnostics"].append(s)

    def reports(self):
        return [validate_report(json.loads(m.data)) for m in self.msgs["detections"]]

    def diag_values(self):
        s = self.msgs["diagnostics"][-1]
        return {kv.key: kv.value for kv in s.values}


def wait_for(pred, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def graph(ros_domain):
    g = Graph(ros_domain)
    yield g
    g.close()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A random-weights cpu checkpoint (finds nothing) and a tiny one whose density head is forced on (finds one
    big object, with a real score)."""
    import torch

    from odd_one_out_ros.model.checkpoint import save_checkpoint
    from odd_one_out_ros.model.config import preset
    from odd_one_out_ros.model.network import OddOneOutNet

    d = tmp_path_factory.mktemp("ckpt")
    cfg = preset("cpu")
    cfg.encoder.weights = ""
    torch.manual_seed(0)
    save_checkpoint(d / "cpu_random.pt", OddOneOutNet(cfg))
    tiny = preset("tiny")
    net = OddOneOutNet(tiny)
    with torch.no_grad():
        net.density_head.net[-1].bias.fill_(6.0)
    save_checkpoint(d / "tiny_dense.pt", net)
    return d


def write_rig(path, cfg: SimConfig):
    from odd_one_out_ros.calibration.rig import CameraExtrinsics, write_rig_yaml

    cams = [CameraExtrinsics(f"cam{i}", "", c.T_cw, 0.0, [], 0.0, 0.0) for i, c in enumerate(fixed_cameras(cfg))]
    return write_rig_yaml(path, cams, force=True)


def sim_params(**kw):
    return [Parameter(k, value=v) for k, v in kw.items()]


def detector(graph, name="detector", inspect_fn=None, **params):
    params.setdefault("audit_log", "")
    return graph.add(DetectorNode(inspect_fn=inspect_fn, context=graph.ctx, parameter_overrides=sim_params(**params),
                                  cli_args=["--ros-args", "-r", f"__node:={name}"]))


# ---------------------------------------------------------------------------------------------------------------
def test_real_inspector_empty_tray_audit_trail_and_replay(graph, checkpoints, tmp_path, capsys):
    """The real model on an empty tray (random weights: nothing found) publishes valid empty outputs; a second
    detector with a checkpoint that finds one object publishes it; both inspections replay to the same result."""
    from odd_one_out_ros.cli import main as cli_main
    from odd_one_out_ros.inspection.audit import read_audit_log

    cfg = SimConfig(cameras=3, image_size=128, objects=(0, 0))
    rig = write_rig(tmp_path / "rig.yaml", cfg)
    graph.add(SimRigNode(context=graph.ctx, parameter_overrides=sim_params(
        cameras=3, image_size=128, objects=[0, 0], rate=2.0)))
    common = dict(rig_file=str(rig), cameras=["cam0", "cam1", "cam2"], diagnostics_period=0.2)
    detector(graph, checkpoint=str(checkpoints / "cpu_random.pt"), audit_log=str(tmp_path / "a.jsonl"),
             record_views_dir=str(tmp_path / "bags"), **common)
    detector(graph, "dense", checkpoint=str(checkpoints / "tiny_dense.pt"), audit_log=str(tmp_path / "b.jsonl"),
             record_views_dir=str(tmp_path / "bags_dense"), **common)
    p, q = Probe(graph, "/detector"), Probe(graph, "/dense")
    wait_for(lambda: p.msgs["detections"] and q.msgs["detections"] and p.msgs["overlay"] and q.msgs["markers"]
             and p.msgs["markers"] and p.msgs["anomalies"] and p.msgs["anomaly_detected"], 60, "both detectors")
    wait_for(lambda: p.msgs["diagnostics"] and p.diag_values()["inspections"] != "0", 10, "diagnostics")

    report = p.reports()[0]
    assert report["n_objects"] == 0 and report["objects"] == [] and report["anomaly_detected"] is False
    assert [v["camera"] for v in report["views"]] == ["cam0", "cam1", "cam2"]
    assert report["model"]["config"] == "cpu" and len(report["model"]["sha256"]) == 64
    assert report["frame_id"] == "world" and report["latency_s"]["inference"] > 0
    markers = p.msgs["markers"][0].markers
    assert len(markers) == 1 and markers[0].action == Marker.DELETEALL  # nothing left from before
    assert p.msgs["anomalies"][0].poses == [] and p.msgs["anomalies"][0].header.frame_id == "world"
    assert p.msgs["anomaly_detected"][0].data is False
    overlay = p.msgs["overlay"][0]
    assert (overlay.width, overlay.height, overlay.encoding) == (3 * 128, 128, "rgb8")
    status = p.msgs["diagnostics"][-1]
    assert status.level == b"\x00", status.message  # OK
    assert p.diag_values()["pose_failures"] == "0" and p.diag_values()["image_errors"] == "0"

    dense = q.reports()[0]
    assert dense["n_objects"] >= 1 and 0 <= dense["objects"][0]["score"] <= 1
    m = q.msgs["markers"][0].markers
    assert m[0].action == Marker.DELETEALL and len(m) == 1 + 3 * dense["n_objects"]
    assert {x.ns for x in m[1:]} == {"boxes", "edges", "labels"}

    # the audit log holds every inspection before it is published, with the bag that replays it and the run id
    audit = read_audit_log(tmp_path / "a.jsonl")
    assert {k: v for k, v in audit[0].items() if k not in ("bag", "run_id")} == report
    assert audit[0]["run_id"] == p.diag_values()["run_id"] and audit[0]["node"] == "/detector"
    for bags, n in ((tmp_path / "bags", 0), (tmp_path / "bags_dense", dense["n_objects"])):
        first = sorted(bags.iterdir())[0]
        capsys.readouterr()
        assert cli_main(["replay", str(first)]) == 0
        out = capsys.readouterr().out
        assert "same result" in out and ("no objects, recorded and replayed" in out) == (n == 0)
    # a folder with a good bag and one interrupted by kill -9 (an mcap without metadata.yaml): the good one is
    # replayed, the interrupted one reported, and the exit code says not everything could be replayed
    import shutil

    mixed = tmp_path / "mixed"
    good = shutil.copytree(first, mixed / first.name)
    (mixed / "inspection_killed").mkdir()
    shutil.copy(next(good.glob("*.mcap")), mixed / "inspection_killed" / "inspection_killed.mcap")
    capsys.readouterr()
    assert cli_main(["replay", str(mixed)]) == 2
    out, err = capsys.readouterr()
    assert "same result" in out and "inspection_killed: interrupted view bag" in err


def truth_inspector(truth_objects, calls):
    """A fake model: returns the ground-truth boxes, anomalous objects with score 0.9, others 0.1."""
    def inspect(views):
        calls.append(views)
        objs = [ObjectResult(Box3D.from_dict(o), 0.9 if o["anomalous"] else 0.1, bool(o["anomalous"]))
                for o in truth_objects]
        return InspectionResult(objs, len(views), 0.001)
    return inspect


def test_objects_flow_to_markers_pose_array_flag_json_and_overlay(graph, tmp_path):
    cfg = SimConfig(cameras=3, image_size=96, seed=1)
    rig = write_rig(tmp_path / "rig.yaml", cfg)
    sim = graph.add(SimRigNode(context=graph.ctx, parameter_overrides=sim_params(
        cameras=3, image_size=96, seed=1, rate=4.0, encoding="bgr8")))
    truth = sim.truth["objects"]
    assert 1 <= sum(o["anomalous"] for o in truth) < len(truth)
    calls = []
    detector(graph, inspect_fn=truth_inspector(truth, calls), rig_file=str(rig), cameras=["cam0", "cam1", "cam2"])
    p = Probe(graph)
    wait_for(lambda: p.msgs["detections"] and p.msgs["markers"] and p.msgs["anomalies"] and p.msgs["overlay"]
             and p.msgs["anomaly_detected"], 30, "outputs")

    # the views the model got: images as rendered (bgr8 on the wire), cameras as the rig file says
    views = calls[0]
    assert [v.source for v in views] == ["cam0", "cam1", "cam2"]
    for v, cam in zip(views, fixed_cameras(cfg)):
        np.testing.assert_allclose(v.camera.T_cw.as_matrix(), cam.T_cw.as_matrix(), atol=1e-9)
        np.testing.assert_allclose(v.camera.K, cam.K)
    np.testing.assert_array_equal(views[1].image, sim.sim.view(1)[0])

    report = p.reports()[0]
    anomalous = [o for o in truth if o["anomalous"]]
    assert report["n_objects"] == len(truth) and report["n_anomalous"] == len(anomalous)
    assert report["anomaly_detected"] is True and p.msgs["anomaly_detected"][0].data is True
    for o, t in zip(report["objects"], truth):
        assert o["label"] == ("anomalous" if t["anomalous"] else "normal")
        np.testing.assert_allclose(o["center"], t["center"])

    markers = p.msgs["markers"][0].markers
    assert markers[0].action == Marker.DELETEALL and markers[0].header.frame_id == "world"
    cubes = [m for m in markers if m.ns == "boxes"]
    edges = [m for m in markers if m.ns == "edges"]
    texts = [m for m in markers if m.ns == "labels"]
    assert len(cubes) == len(edges) == len(texts) == len(truth)
    for cube, edge, text, t in zip(cubes, edges, texts, truth):
        assert cube.type == Marker.CUBE and edge.type == Marker.LINE_LIST and text.type == Marker.TEXT_VIEW_FACING
        box = Box3D.from_dict(t)
        np.testing.assert_allclose([cube.pose.position.x, cube.pose.position.y, cube.pose.position.z], box.center)
        np.testing.assert_allclose([cube.scale.x, cube.scale.y, cube.scale.z], box.size, rtol=1e-6)
        q = cube.pose.orientation
        assert (q.x, q.y) == (0.0, 0.0) and np.isclose(2 * np.arctan2(q.z, q.w), box.yaw)
        pts = np.array([[pt.x, pt.y, pt.z] for pt in edge.points])
        assert len(pts) == 24 and np.abs(pts[:, None] - box.corners()[None]).sum(-1).min(1).max() < 1e-9
        red = cube.color.r > 0.5 and cube.color.g < 0.5
        assert red == t["anomalous"] and ("anomalous" in text.text) == t["anomalous"]
    poses = p.msgs["anomalies"][0].poses
    np.testing.assert_allclose(sorted([pp.position.x, pp.position.y, pp.position.z] for pp in poses),
                               sorted(o["center"] for o in anomalous))
    ov = p.msgs["overlay"][0]
    img = np.frombuffer(bytes(ov.data), np.uint8).reshape(ov.height, ov.width, 3)
    assert ((img[..., 0] > 200) & (img[..., 1] < 80) & (img[..., 2] < 80)).sum() > 20  # red box edges


def test_bad_input_is_counted_logged_once_and_never_crashes(graph, tmp_path, monkeypatch, capfd):
    """Unsupported encodings, missing or uncalibrated CameraInfo, truncated images and a failing model:
    each is counted in /diagnostics and logged once, and the usable views still get inspected."""
    from odd_one_out_ros.geometry import CameraCalibration
    from odd_one_out_ros.ros.conversions import calibration_to_camera_info, rgb_to_image

    monkeypatch.setattr(detector_module, "INFO_GRACE_S", 0.0)
    cfg = SimConfig(cameras=4, image_size=64)
    rig = write_rig(tmp_path / "rig.yaml", cfg)
    names = ["cam0", "cam1", "cam2", "cam3"]
    calls = []

    def flaky(views):
        calls.append(views)
        if len(calls) == 1:
            raise RuntimeError("model exploded")
        return InspectionResult([], len(views), 0.0)

    det = detector(graph, inspect_fn=flaky, rig_file=str(rig), cameras=names, image_qos="reliable",
                   diagnostics_period=0.1)
    p = Probe(graph)
    pub = graph.node("bad_camera_driver")
    pubs = {c: (pub.create_publisher(Image, f"cameras/{c}/image_raw", 10),
                pub.create_publisher(CameraInfo, f"cameras/{c}/camera_info", 10)) for c in names}
    wait_for(lambda: all(ip.get_subscription_count() and cp.get_subscription_count() for ip, cp in pubs.values()),
             10, "discovery")
    infos = {f"cam{i}": calibration_to_camera_info(CameraCalibration.from_camera(c, f"cam{i}"))
             for i, c in enumerate(fixed_cameras(cfg))}
    infos["cam2"] = CameraInfo(width=64, height=64)  # K all zeros: an uncalibrated camera
    rgb = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)

    def send_infos(cams):
        for c in cams:
            pubs[c][1].publish(infos[c])
        wait_for(lambda: all(c in det._infos for c in cams), 10, f"CameraInfo of {cams}")

    def send_images(bad_encoding: bool):
        stamp = pub.get_clock().now().to_msg()
        for c in names:
            img = rgb_to_image(rgb, c, stamp)
            if c == "cam0" and bad_encoding:
                img.encoding = "16UC1"
            if c == "cam1":
                img.data = bytes(img.data)[:100]  # truncated
            pubs[c][0].publish(img)

    # phase 1: cam0 sends an unsupported encoding and cam3 no CameraInfo: no complete set can form
    send_infos(["cam1", "cam2"])
    for _ in range(3):
        send_images(bad_encoding=True)
    wait_for(lambda: p.msgs["diagnostics"] and p.diag_values()["image_errors"] == "3"
             and p.diag_values()["missing_camera_info"] == "3", 10, "phase 1 failures counted")
    assert not calls and p.msgs["diagnostics"][-1].level == b"\x01"  # WARN
    err = capfd.readouterr().err
    assert err.count("unsupported image encoding '16UC1'") == 1  # once per camera, not per image
    assert err.count("no CameraInfo received yet on cameras/cam3/camera_info") == 1

    # phase 2: cam0 and cam3 are fine now; cam1 (truncated) and cam2 (K = 0) stay unusable; the model fails once
    send_infos(["cam0", "cam3"])
    for _ in range(40):
        send_images(bad_encoding=False)
        if p.msgs["detections"]:
            break
        time.sleep(0.25)
    wait_for(lambda: p.msgs["detections"], 10, "an inspection of the usable views")
    report = p.reports()[0]
    assert [v["camera"] for v in report["views"]] == ["cam0", "cam3"] and report["n_objects"] == 0
    wait_for(lambda: p.diag_values()["inference_errors"] == "1", 5, "the model failure in diagnostics")
    assert int(p.diag_values()["image_errors"]) >= 3 + 2 * len(calls)
    err = capfd.readouterr().err
    assert err.count("image data has 100 bytes") == 1 and err.count("K is all zeros") == 1
    assert "model exploded" in err


def test_moving_camera_topic_poses_and_service_trigger(graph):
    cfg = SimConfig(mode="orbit", orbit_steps=24, image_size=64)
    graph.add(SimRigNode(context=graph.ctx, parameter_overrides=sim_params(
        mode="orbit", orbit_steps=24, image_size=64, rate=20.0)))
    calls = []
    detector(graph, inspect_fn=truth_inspector([], calls), pose_source="topic", cameras=["cam0"], mode="moving",
             views_required=4, min_view_angle_deg=40.0, max_view_age=30.0, trigger="service",
             diagnostics_period=0.2)
    p = Probe(graph)
    wait_for(lambda: p.msgs["diagnostics"] and p.diag_values()["last_image_age_s_cam0"] != "never", 20, "images")
    time.sleep(1.0)  # images flow for a while, but nothing is inspected until asked
    assert not calls and not p.msgs["detections"]

    client = p.node.create_client(Trigger, "/detector/inspect")
    assert client.wait_for_service(timeout_sec=10)
    for _ in range(2):
        t_call = p.node.get_clock().now().nanoseconds * 1e-9
        future = client.call_async(Trigger.Request())
        wait_for(future.done, 30, "the ~/inspect response")
        resp = future.result()
        assert resp.success, resp.message
        report = validate_report(json.loads(resp.message))
        views = calls[-1]
        assert len(views) == 4 == len(report["views"])
        assert all(v.stamp >= t_call - 1e-3 for v in views)  # collected after the call
        centres = [v.camera.center for v in views]
        orbit = np.array([orbit_camera(cfg, k).center for k in range(cfg.orbit_steps)])
        for v, c in zip(views, centres):
            assert np.linalg.norm(orbit - c, axis=1).min() < 1e-6  # the published pose, through the topic
        angles = [np.degrees(np.arccos(np.clip(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b), -1, 1)))
                  for i, a in enumerate(centres) for b in centres[i + 1:]]
        assert min(angles) >= 40.0 - 1e-6
    assert len(calls) == 2 and len(p.msgs["detections"]) == 2


def test_apriltag_poses_from_a_sim_rig_in_another_process(graph, ros_domain):
    """sim_rig runs as its own process (its executable's main), with the tray board on the floor; one detector
    takes the camera poses from the tags, another with an impossible reprojection limit drops every view."""
    sim = subprocess.Popen([sys.executable, "-m", "odd_one_out_ros.ros.sim_rig", "--ros-args",
                            "-p", "cameras:=3", "-p", "apriltag_board:=true", "-p", "seed:=1", "-p", "rate:=2.0"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        calls = []
        detector(graph, inspect_fn=truth_inspector([], calls), pose_source="apriltag",
                 cameras=["cam0", "cam1", "cam2"])
        detector(graph, "strict", inspect_fn=truth_inspector([], []), pose_source="apriltag",
                 cameras=["cam0", "cam1", "cam2"], max_reprojection_error_px=0.01, diagnostics_period=0.2)
        p, strict = Probe(graph), Probe(graph, "/strict")
        wait_for(lambda: p.msgs["detections"], 60, "an inspection with AprilTag poses")
        wait_for(lambda: strict.msgs["diagnostics"] and int(strict.diag_values()["pose_failures"]) >= 3, 20,
                 "pose failures of the strict detector")
    finally:
        sim.terminate()
        out = sim.communicate(timeout=20)[0]
    assert "3 camera(s)" in out, out
    report = p.reports()[0]
    assert all(v["pose_source"] == "apriltag" and v["reprojection_error_px"] < 1.0 for v in report["views"])
    for v, cam in zip(calls[0], fixed_cameras(SimConfig(cameras=3, apriltag_board=True))):
        angle = np.degrees(np.arccos(np.clip((np.trace(v.camera.T_cw.R @ cam.T_cw.R.T) - 1) / 2, -1, 1)))
        assert angle < 0.5 and np.linalg.norm(v.camera.center - cam.center) < 0.01
    assert not strict.msgs["detections"] and strict.msgs["diagnostics"][-1].level == b"\x01"


def fenced_log(path, run_id="earlier-run"):
    """An audit log of an earlier run (ids 1, 2) that was killed while writing record 3."""
    from odd_one_out_ros.inspection.audit import AuditLog

    with AuditLog(path, node="/detector", run_id=run_id) as log:
        for i in (1, 2):
            log.append({"inspection_id": i})
    with open(path, "ab") as f:
        f.write(b'{"inspection_id":3,"obj')
    return path


def test_audit_trail_survives_a_crash_and_keeps_ids_unique(graph, tmp_path, capfd):
    """Issue 14: after a crash the restarted detector fences off the torn line, continues the ids after the log's
    last one, stamps its run id on every record; a second detector on the same log is refused at start."""
    from odd_one_out_ros.inspection.audit import read_audit_log

    log = fenced_log(tmp_path / "audit.jsonl")
    rig = write_rig(tmp_path / "rig.yaml", SimConfig(cameras=3, image_size=64))
    graph.add(SimRigNode(context=graph.ctx, parameter_overrides=sim_params(cameras=3, image_size=64, rate=4.0)))
    det = detector(graph, inspect_fn=truth_inspector([], []), rig_file=str(rig), cameras=["cam0", "cam1", "cam2"],
                   audit_log=str(log), diagnostics_period=0.2)
    p = Probe(graph)
    wait_for(lambda: len(p.msgs["detections"]) >= 2 and p.msgs["diagnostics"], 30, "two inspections")
    assert [r["inspection_id"] for r in p.reports()[:2]] == [3, 4]
    with pytest.raises(ValueError, match="in use by another process"):
        detector(graph, "second", inspect_fn=truth_inspector([], []), rig_file=str(rig),
                 cameras=["cam0", "cam1", "cam2"], audit_log=str(log))
    skipped = []
    records = read_audit_log(log, skipped)
    ids = [r["inspection_id"] for r in records]
    assert ids[:4] == [1, 2, 3, 4] and len(set(ids)) == len(ids)
    assert {r["run_id"] for r in records[2:]} == {det.run_id} != {"earlier-run"}
    assert det.run_id == p.diag_values()["run_id"] and {r["node"] for r in records} == {"/detector"}
    assert len(skipped) == 1 and ":3: torn line" in skipped[0] and f"fenced off by run {det.run_id}" in skipped[0]
    assert "a torn last line (23 bytes at byte" in capfd.readouterr().err


def test_non_finite_model_outputs_are_errors_not_all_clear(graph, tmp_path):
    """A model whose density volume is NaN (a real network, watched by the guard) and one returning NaN scores:
    nothing is published, inference_errors counts them and /diagnostics says ERROR."""
    import torch

    from odd_one_out_ros.inspection.guard import FiniteGuard
    from odd_one_out_ros.model.config import preset
    from odd_one_out_ros.model.inference import Inspector
    from odd_one_out_ros.model.network import OddOneOutNet

    net = OddOneOutNet(preset("tiny")).eval()
    with torch.no_grad():
        net.density_head.net[-1].bias.fill_(float("nan"))
    box = Box3D([0, 0, 0.05], [0.1, 0.1, 0.1], 0.0)

    def nan_scores(views):
        return InspectionResult([ObjectResult(box, float("nan"), False)], len(views), 0.0)

    rig = write_rig(tmp_path / "rig.yaml", SimConfig(cameras=3, image_size=64))
    graph.add(SimRigNode(context=graph.ctx, parameter_overrides=sim_params(cameras=3, image_size=64, rate=4.0)))
    common = dict(rig_file=str(rig), cameras=["cam0", "cam1", "cam2"], diagnostics_period=0.2)
    detector(graph, inspect_fn=FiniteGuard(Inspector(net)), **common)
    detector(graph, "nan_scores", inspect_fn=nan_scores, **common)
    probes = [Probe(graph), Probe(graph, "/nan_scores")]
    for pr, what in zip(probes, ("density volume has", "non-finite score for object 0")):
        wait_for(lambda pr=pr: pr.msgs["diagnostics"] and int(pr.diag_values()["inference_errors"]) >= 2, 60,
                 "inference errors")
        status = pr.msgs["diagnostics"][-1]
        assert status.level == b"\x02" and what in status.message, status.message  # ERROR
        assert pr.diag_values()["inspections"] == "0"
        assert not any(pr.msgs[t] for t in ("detections", "markers", "anomalies", "anomaly_detected", "overlay"))


def test_ctrl_c_during_an_inspection_logs_one_line_not_a_traceback(ros_domain, tmp_path, capfd):
    """What Ctrl-C does to run_node: the context shuts down while the model runs, then the node is destroyed.
    The inspection finishing afterwards used to raise `RCLError: Failed to publish` with a traceback."""
    from rclpy.executors import ExternalShutdownException

    from odd_one_out_ros.inspection.audit import read_audit_log

    ctx = Context()
    rclpy.init(context=ctx, domain_id=ros_domain)
    executor = MultiThreadedExecutor(num_threads=4, context=ctx)
    entered, release = threading.Event(), threading.Event()

    def slow(views):
        entered.set()
        release.wait(30)
        return InspectionResult([], len(views), 0.0)

    rig = write_rig(tmp_path / "rig.yaml", SimConfig(cameras=2, image_size=64))
    sim = SimRigNode(context=ctx, parameter_overrides=sim_params(cameras=2, image_size=64, rate=4.0))
    det = DetectorNode(inspect_fn=slow, context=ctx, parameter_overrides=sim_params(
        rig_file=str(rig), cameras=["cam0", "cam1"], audit_log=str(tmp_path / "audit.jsonl")))
    for n in (sim, det):
        executor.add_node(n)

    def spin():
        try:
            executor.spin()
        except ExternalShutdownException:
            pass

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        assert entered.wait(30), "no inspection started"
        rclpy.try_shutdown(context=ctx)  # the SIGINT handler's doing
        release.set()
        wait_for(lambda: read_audit_log(tmp_path / "audit.jsonl"), 10, "the audit record")
    finally:
        release.set()
        executor.shutdown(timeout_sec=5)
        thread.join(timeout=10)
        det.destroy_node()
        sim.destroy_node()
        rclpy.try_shutdown(context=ctx)
    err = capfd.readouterr().err
    assert err.count("shutting down: inspection 1 was not published (it is in the audit log)") == 1, err
    assert "Traceback" not in err and "RCLError" not in err and "_inspect failed" not in err, err


def test_detector_executable_with_its_audit_log_on_a_full_disk_stops_cleanly(graph, checkpoints, tmp_path):
    """The detector process with audit_log on /dev/full (every write: ENOSPC): results are still published, each
    failed append is one error line, and Ctrl-C (SIGINT) ends it with exit 0 and no traceback (AuditLog.close
    used to raise OSError flushing its buffer)."""
    import signal

    rig = write_rig(tmp_path / "rig.yaml", SimConfig(cameras=3, image_size=64))
    graph.add(SimRigNode(context=graph.ctx, parameter_overrides=sim_params(cameras=3, image_size=64, rate=4.0)))
    proc = subprocess.Popen([sys.executable, "-m", "odd_one_out_ros.ros.detector", "--ros-args",
                             "-p", f"checkpoint:={checkpoints / 'tiny_dense.pt'}", "-p", f"rig_file:={rig}",
                             "-p", "cameras:=[cam0, cam1, cam2]", "-p", "audit_log:=/dev/full"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        p = Probe(graph)
        wait_for(lambda: p.msgs["detections"], 90, "a result despite the full disk")
        time.sleep(0.3)  # most likely inside the next inspection
    finally:
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, out
    assert "Traceback" not in out and "RCLError" not in out and "context is invalid" not in out, out
    assert "cannot append to the audit log /dev/full: [Errno 28] No space left on device" in out
    assert "/dev/full: the last append failed" in out  # from close, one line
    assert p.reports()[0]["n_objects"] >= 1


@pytest.mark.parametrize("module,args,match", [
    ("detector", ["mode:=bogus"], "parameter mode must be one of rig, moving; got 'bogus'"),
    ("detector", ["sync_slop:=-1.0"], "sync_slop"),
    ("detector", ["rig_file:=/nonexistent/rig.yaml"], "/nonexistent/rig.yaml"),
    ("detector", ["pose_source:=topic"], "parameter cameras is required with pose_source topic"),
    ("detector", ["checkpoint:=/nonexistent/model.pt"], "checkpoint /nonexistent/model.pt: no such file"),
    ("detector", ["checkpoint:=CORRUPT"], "not a readable checkpoint"),
    ("detector", ["checkpoint:=BAD/nan.pt"], "the weights are not finite"),
    ("detector", ["checkpoint:=BAD/size.pt"], "bad model config (image_size must be an integer >= 32"),
    ("detector", ["checkpoint:=BAD/no_model.pt"], "malformed checkpoint ('model' is missing)"),
    ("detector", ["checkpoint:=BAD/list_model.pt"], "malformed checkpoint ('model' is list, not a mapping"),
    ("detector", ["device:=tpu"], "parameter device must be cpu, cuda or cuda:N"),
    ("sim_rig", ["objects:=[3]"], "parameter objects must be [min, max]"),
    ("sim_rig", ["mode:=spin"], "sim mode must be one of"),
])
def test_bad_parameters_and_files_exit_2_with_a_clear_message(ros_domain, tmp_path, checkpoints, module, args,
                                                              match):
    import torch

    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    if any("BAD/" in a for a in args):  # checkpoints that load with torch but cannot work (issue 14)
        blob = torch.load(checkpoints / "tiny_dense.pt", weights_only=True)
        name = args[0].split("BAD/")[1]
        if name == "nan.pt":
            blob["model"]["density_head.net.0.weight"] = torch.full_like(blob["model"]["density_head.net.0.weight"],
                                                                         float("nan"))
        elif name == "size.pt":
            blob["config"]["image_size"] = -5
        elif name == "no_model.pt":
            del blob["model"]
        else:
            blob["model"] = list(blob["model"].values())
        torch.save(blob, tmp_path / name)
    args = [a.replace("CORRUPT", str(corrupt)).replace("BAD/", f"{tmp_path}/") for a in args] + ["audit_log:=''"]
    if module == "sim_rig":
        args = args[:-1]
    cmd = [sys.executable, "-m", f"odd_one_out_ros.ros.{module}", "--ros-args"]
    for a in args:
        cmd += ["-p", a]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    assert match in r.stderr and "Traceback" not in r.stderr


def test_shipped_params_file_runs_both_executables(graph, checkpoints, tmp_path):
    """What launch/detect.launch.py sim:=true does (`launch` itself is not obtainable here): the sim_rig and
    detector executables as processes, both configured by config/odd_one_out.yaml."""
    params = str(Path(__file__).resolve().parent.parent / "config" / "odd_one_out.yaml")
    overrides = {"sim_rig": ["-p", "image_size:=96"],
                 "detector": ["-p", f"checkpoint:={checkpoints / 'tiny_dense.pt'}", "-p", "audit_log:=''"]}
    procs = [subprocess.Popen([sys.executable, "-m", f"odd_one_out_ros.ros.{m}", "--ros-args", "--params-file", params,
                               *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for m, extra in overrides.items()]
    try:
        p = Probe(graph)
        wait_for(lambda: p.msgs["detections"] and p.msgs["markers"], 60, "results of the launched pair")
    finally:
        for proc in procs:
            proc.terminate()
        outs = [proc.communicate(timeout=30)[0] for proc in procs]
    report = p.reports()[0]
    assert [v["camera"] for v in report["views"]] == [f"cam{i}" for i in range(5)]
    assert report["model"]["config"] == "tiny" and report["n_objects"] >= 1
    assert "seed 17 (teapot" in outs[0] and "poses: static" in outs[1], outs
    assert all(proc.returncode in (0, -15) for proc in procs), outs
