"""The reject contract an arm relies on, on real rclpy graphs (DDS on loopback, own ROS_DOMAIN_ID): every attempted
inspection publishes a verdict that replaces the last one; no earlier tray's reject reaches a subscriber after a
later inspection was attempted; a tray the detector could not see or compare is never a pass; ~/inspect answers
every caller. The detector, sim rig and fixtures are test_ros_detector's."""
import json
import signal
import threading
import time

import numpy as np
import pytest

from odd_one_out_ros.inspection.sim import SimConfig

rclpy = pytest.importorskip("rclpy")
import test_ros_detector as rd  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from odd_one_out_ros.ros.sim_rig import SimRigNode  # noqa: E402

graph = rd.graph  # the fixture: one rclpy context per test

CAMS = ["cam0", "cam1", "cam2"]


class TamperedRig(SimRigNode):
    """The sim rig with each published image passed through tamper(camera index, rgb, cycle) -> rgb."""

    def __init__(self, tamper, **kwargs):
        self.tamper, self.cycle = tamper, 0
        super().__init__(**kwargs)

    def _publish(self, k, rgb, cam, stamp):
        if k == 0:
            self.cycle += 1
        super()._publish(k, self.tamper(k, rgb, self.cycle), cam, stamp)


def detector(graph, name="detector", **params):
    """test_ros_detector's detector with this package's default min_objects (3)."""
    return rd.detector(graph, name, **{"min_objects": 3, **params})


def rig(graph, tmp_path, tamper=None, seed=1, rate=4.0):
    cfg = SimConfig(cameras=3, image_size=96, seed=seed)
    path = rd.write_rig(tmp_path / "rig.yaml", cfg)
    params = rd.sim_params(cameras=3, image_size=96, seed=seed, rate=rate)
    node = SimRigNode(context=graph.ctx, parameter_overrides=params) if tamper is None else \
        TamperedRig(tamper, context=graph.ctx, parameter_overrides=params)
    return graph.add(node), str(path)


def last(p: rd.Probe) -> dict:
    """The latest JSON report the probe holds; {} before the first one (other topics may arrive first)."""
    reports = p.reports()
    return reports[-1] if reports else {}


def test_a_failed_or_blind_inspection_and_a_deactivate_replace_the_last_trays_rejects(graph, tmp_path):
    """A tray with a reject, then every camera gone: a verdict cannot_inspect replaces it (no pose left on
    ~/anomalies, the flag says not a pass), also for a subscriber that joins afterwards; deactivate publishes one
    more; ids tie every reject to its inspection and object."""
    sim, path = rig(graph, tmp_path)
    truth = sim.truth["objects"]
    det = detector(graph, inspect_fn=rd.truth_inspector(truth, []), rig_file=path, cameras=CAMS, camera_timeout=0.5,
                   diagnostics_period=0.2)
    p = rd.Probe(graph)
    rd.wait_for(lambda: p.msgs["anomalies"] and p.msgs["anomalies"][-1].poses and last(p).get("anomaly_detected"),
                30, "a reject")
    first = last(p)
    assert first["status"] == "ok" and first["anomaly_detected"]
    bad = [o for o in first["objects"] if o["label"] == "anomalous"]
    assert bad and all(o["uid"] == f"{first['inspection_id']}/{o['id']}" for o in bad)
    assert len(p.msgs["anomalies"][-1].poses) == len(bad)

    graph.remove(sim)  # every camera stops: after camera_timeout none is usable
    rd.wait_for(lambda: last(p).get("status") == "cannot_inspect", 15, "a verdict cannot_inspect")
    blind = last(p)
    assert blind["inspection_id"] > first["inspection_id"] and blind["objects"] == []
    assert "only 0 of 3 cameras usable" in blind["reason"] and "cam0" in blind["reason"]
    rd.wait_for(lambda: p.msgs["anomalies"][-1].poses == [] and p.msgs["anomaly_detected"][-1].data is True, 5,
             "the reject withdrawn")
    rd.wait_for(lambda: p.msgs["diagnostics"][-1].level == b"\x02", 5, "diagnostics ERROR")
    late = rd.Probe(graph, "/detector")  # joins now: the latched outputs are the blind verdict's, not the tray's
    rd.wait_for(lambda: late.msgs["anomalies"] and late.msgs["anomaly_detected"] and late.msgs["markers"], 10,
             "latched outputs for a late joiner")
    assert late.msgs["anomalies"][-1].poses == [] and late.msgs["anomaly_detected"][-1].data is True
    assert f"inspection {blind['inspection_id']}: cannot inspect" in late.msgs["markers"][-1].markers[1].text

    n = len(p.msgs["detections"])
    det.trigger_deactivate()
    rd.wait_for(lambda: len(p.msgs["detections"]) > n, 5, "the deactivate's verdict")
    assert last(p)["status"] == "cannot_inspect" and last(p)["reason"] == "the detector was deactivated"


@pytest.mark.parametrize("fault", ["black", "saturated", "frozen"])
def test_images_without_usable_content_are_never_a_pass(graph, tmp_path, fault):
    """Black or saturated images in every camera: cannot_inspect naming the cameras. One camera frozen (its image
    repeats while the others change): with min_views 3 cannot_inspect naming it; with min_views 2 it is left out of
    an ok inspection and named in missing_views."""
    def tamper(k, rgb, cycle):
        if fault == "black":
            return np.zeros_like(rgb)
        if fault == "saturated":
            return np.full_like(rgb, 255)
        if k == 2:  # the frozen camera
            return rgb
        out = rgb.copy()
        out[0, :, :] = cycle % 250  # the other cameras see something new each cycle
        return out

    sim, path = rig(graph, tmp_path, tamper)
    detector(graph, inspect_fn=rd.truth_inspector(sim.truth["objects"], []), rig_file=path, cameras=CAMS,
             min_views=3, diagnostics_period=0.2)
    p = rd.Probe(graph)
    rd.wait_for(lambda: p.msgs["detections"] and last(p)["status"] == "cannot_inspect", 30, "a verdict cannot_inspect")
    r = last(p)
    words = {"black": "black", "saturated": "saturated", "frozen": "frozen"}[fault]
    assert words in r["reason"] and r["objects"] == [] and p.msgs["anomaly_detected"][-1].data is True
    named = [m["camera"] for m in r["missing_views"]]
    assert named == (CAMS if fault != "frozen" else ["cam2"])
    rd.wait_for(lambda: p.msgs["diagnostics"] and p.msgs["diagnostics"][-1].level == b"\x02", 10, "diagnostics ERROR")
    if fault != "frozen":  # (a frozen camera shows only once the others change: its first set is inspected)
        assert all(r["status"] != "ok" for r in p.reports())
    if fault == "frozen":
        q = rd.Probe(graph, "/frozen2")
        detector(graph, "frozen2", inspect_fn=rd.truth_inspector(sim.truth["objects"], []), rig_file=path,
                    cameras=CAMS, min_views=2)
        rd.wait_for(lambda: q.msgs["detections"] and q.reports()[-1]["missing_views"], 30, "a set without cam2")
        r = q.reports()[-1]
        assert r["status"] == "ok" and [v["camera"] for v in r["views"]] == ["cam0", "cam1"]
        assert r["missing_views"][0]["camera"] == "cam2" and "frozen" in r["missing_views"][0]["reason"]


def test_fewer_objects_than_min_objects_cannot_be_compared(graph, tmp_path):
    """Two objects, one of them anomalous: no reject on ~/anomalies and no pass (flag true), status cannot_compare."""
    sim, path = rig(graph, tmp_path)
    two = sim.truth["objects"][:2]
    two[0] = {**two[0], "anomalous": True}
    detector(graph, inspect_fn=rd.truth_inspector(two, []), rig_file=path, cameras=CAMS)
    p = rd.Probe(graph)
    rd.wait_for(lambda: p.msgs["detections"] and p.msgs["anomalies"] and p.msgs["anomaly_detected"], 30, "a verdict")
    r = last(p)
    assert r["status"] == "cannot_compare" and "2 object(s) found" in r["reason"] and r["n_objects"] == 2
    assert p.msgs["anomalies"][-1].poses == [] and p.msgs["anomaly_detected"][-1].data is True


def test_twenty_callers_at_once_are_all_answered(graph, tmp_path):
    """trigger service, 20 concurrent ~/inspect calls: max_waiting_calls of them get the next verdict, the others
    are refused at once with the reason; none goes unanswered."""
    sim, path = rig(graph, tmp_path)
    detector(graph, inspect_fn=rd.truth_inspector(sim.truth["objects"], []), rig_file=path, cameras=CAMS,
             trigger="service", max_waiting_calls=4, inspect_timeout=30.0)
    node = graph.node("callers")
    clients = [node.create_client(Trigger, "/detector/inspect") for _ in range(20)]
    assert all(c.wait_for_service(timeout_sec=30) for c in clients)
    t0 = time.monotonic()
    futures = [c.call_async(Trigger.Request()) for c in clients]
    rd.wait_for(lambda: all(f.done() for f in futures), 40, "every caller answered")
    answers = [f.result() for f in futures]
    ok = [a for a in answers if a.success]
    refused = [a for a in answers if not a.success]
    assert 1 <= len(ok) <= 4 and len(ok) + len(refused) == 20, [a.message[:80] for a in answers]
    assert all("max_waiting_calls 4" in a.message for a in refused), [a.message[:80] for a in refused]
    assert len({json.loads(a.message)["inspection_id"] for a in ok}) >= 1 and time.monotonic() - t0 < 40


def test_ctrl_c_answers_a_waiting_caller_and_exits_within_a_second(graph, tmp_path):
    """A detector process (trigger service, no cameras: the call would wait inspect_timeout 60 s) gets SIGINT while
    a caller waits: the caller is answered "shutting down" and the process ends with 0 soon after."""
    _, path = rig(graph, tmp_path, rate=0.01)
    proc = rd.NodeProcess("detector", ["--ros-args", "-p", f"rig_file:={path}", "-p", "trigger:=service",
                                    "-p", "audit_log:=''", "-p", "inspect_timeout:=60.0",
                                    "-p", "camera_timeout:=60.0"], tmp_path / "det.log")
    try:
        rd.wait_for(lambda: "active: inspecting" in proc.output(), 60, "the detector active")
        node = graph.node("caller")
        client = node.create_client(Trigger, "/detector/inspect")
        assert client.wait_for_service(timeout_sec=60), proc.output()
        future = client.call_async(Trigger.Request())
        time.sleep(1.0)
        assert not future.done()
        t0 = time.monotonic()
        proc.proc.send_signal(signal.SIGINT)
        rd.wait_for(future.done, 5, "the caller's answer")
        answered = time.monotonic() - t0
        rc, out = proc.stop(timeout=10)
        assert answered < 1.0 and rc == 0, (answered, out)
        assert not future.result().success and "shutting down" in future.result().message
    finally:
        proc.stop(timeout=10)


def test_an_inference_that_fails_is_a_verdict_too(graph, tmp_path):
    """A model that raises: its verdict is cannot_inspect with the error, published and replacing the last one."""
    sim, path = rig(graph, tmp_path)
    calls = []
    good = rd.truth_inspector(sim.truth["objects"], calls)
    broken = threading.Event()

    flaky_impl = [good]

    def flaky(views):
        if broken.is_set():
            raise RuntimeError("CUDA error: device lost")
        return flaky_impl[0](views)

    detector(graph, inspect_fn=flaky, rig_file=path, cameras=CAMS)
    p = rd.Probe(graph)
    rd.wait_for(lambda: p.msgs["anomalies"] and p.msgs["anomalies"][-1].poses, 30, "a reject")
    broken.set()
    rd.wait_for(lambda: last(p).get("status") == "cannot_inspect", 15, "the failure's verdict")
    assert "device lost" in last(p)["reason"]
    rd.wait_for(lambda: p.msgs["anomalies"][-1].poses == [], 5, "the reject withdrawn")
    # a result the report refuses (a score of 1.5: finite, so past the guard): a verdict cannot_inspect all the same
    broken.clear()
    rd.wait_for(lambda: last(p).get("status") == "ok", 15, "an ok verdict again")
    n = len(p.msgs["detections"])
    calls.clear()
    bad = rd.truth_inspector(sim.truth["objects"], [])

    def out_of_range(views):
        from dataclasses import replace

        res = bad(views)
        res.objects[0] = replace(res.objects[0], score=1.5)
        return res

    flaky_impl[0] = out_of_range
    rd.wait_for(lambda: len(p.msgs["detections"]) > n and last(p)["status"] == "cannot_inspect", 15, "a verdict")
    assert "objects[0].score" in last(p)["reason"] and p.msgs["anomaly_detected"][-1].data is True


def test_anomaly_threshold_is_set_while_running_and_the_read_only_ones_say_how(graph, tmp_path):
    """`ros2 param set /detector anomaly_threshold 0.95`: the next verdicts use it (the 0.9 object passes); a value
    outside [-1, 1] and a read-only parameter are refused with the reason."""
    from rcl_interfaces.msg import Parameter as ParameterMsg
    from rcl_interfaces.msg import ParameterType, ParameterValue
    from rcl_interfaces.srv import DescribeParameters, SetParameters

    sim, path = rig(graph, tmp_path)
    detector(graph, inspect_fn=rd.truth_inspector(sim.truth["objects"], []), rig_file=path, cameras=CAMS)
    p = rd.Probe(graph)
    rd.wait_for(lambda: p.msgs["detections"] and last(p)["anomaly_detected"], 30, "a reject at the default threshold")

    def set_param(name, value):
        v = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value) if isinstance(value, float) \
            else ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
        req = SetParameters.Request(parameters=[ParameterMsg(name=name, value=v)])
        return graph.call(SetParameters, "/detector/set_parameters", req).results[0]

    assert set_param("anomaly_threshold", 0.95).successful
    rd.wait_for(lambda: last(p).get("threshold") == 0.95, 15, "a verdict at the new threshold")
    r = last(p)
    assert r["status"] == "ok" and not r["anomaly_detected"] and p.msgs["anomaly_detected"][-1].data is False
    assert not set_param("anomaly_threshold", 1.5).successful
    refused = set_param("checkpoint", "/tmp/other.pt")
    assert not refused.successful and "read-only" in refused.reason
    desc = graph.call(DescribeParameters, "/detector/describe_parameters",
                      DescribeParameters.Request(names=["checkpoint", "anomaly_threshold"])).descriptors
    assert "read-only" in desc[0].description and not desc[1].read_only


def test_a_junk_checkpoint_at_configure_is_an_error_on_diagnostics(graph, tmp_path):
    """configure with a file that is not a checkpoint fails with one line that gives no advice to load code, and
    /diagnostics says ERROR with it, again and again, while the detector stays unconfigured."""
    import pickle

    from odd_one_out_ros.ros.detector import DetectorNode

    junk = tmp_path / "junk.pt"
    junk.write_bytes(pickle.dumps({"x": {1, 2}}))
    _, path = rig(graph, tmp_path)
    node = graph.add(DetectorNode(context=graph.ctx, parameter_overrides=rd.sim_params(
        autostart=False, checkpoint=str(junk), rig_file=path, cameras=CAMS, audit_log="")))
    p = rd.Probe(graph)
    assert node.trigger_configure() != rd.TransitionCallbackReturn.SUCCESS
    assert "not a readable checkpoint" in node.transition_error and "weights_only" not in node.transition_error
    rd.wait_for(lambda: p.msgs["diagnostics"], 10, "/diagnostics of the unconfigured detector")
    status = p.msgs["diagnostics"][-1]
    assert status.level == b"\x02" and "configure failed" in status.message and str(junk) in status.message
    n = len(p.msgs["diagnostics"])
    rd.wait_for(lambda: len(p.msgs["diagnostics"]) > n, 5, "diagnostics go on while unconfigured")


def test_inspect_command_prints_the_verdict_and_exits_by_it(graph, tmp_path):
    """`odd-one-out inspect` against a detector with trigger service: it prints the verdict with the objects' ids
    and exits 1 (a reject: not a pass); with no detector it says so and exits 2."""
    import subprocess
    import sys

    sim, path = rig(graph, tmp_path)
    detector(graph, inspect_fn=rd.truth_inspector(sim.truth["objects"], []), rig_file=path, cameras=CAMS,
             trigger="service")
    cmd = [sys.executable, "-m", "odd_one_out_ros.cli", "inspect", "--timeout", "30",
           "--json", str(tmp_path / "v.json")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    verdict = json.loads((tmp_path / "v.json").read_text())
    assert r.returncode == 1 and verdict["status"] == "ok" and verdict["anomaly_detected"], r.stdout + r.stderr
    assert f"inspection {verdict['inspection_id']}: ok NO PASS" in r.stdout
    assert f"{verdict['inspection_id']}/" in r.stdout and "anomalous" in r.stdout
    r = subprocess.run(cmd[:4] + ["--node", "/nobody", "--timeout", "2"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "no service /nobody/inspect" in r.stderr


def test_tune_threshold_meets_the_false_reject_rate_asked(tmp_path, capsys):
    """Audit records of 100 normal trays (and two not compared, skipped): the threshold printed rejects at most the
    share asked of them, and the line to apply it names the parameter."""
    from odd_one_out_ros.cli import main as cli_main
    from odd_one_out_ros.commands.tune_threshold import threshold_for
    from odd_one_out_ros.geometry import Box3D
    from odd_one_out_ros.inspection.audit import AuditLog
    from odd_one_out_ros.inspection.report import build_report
    from odd_one_out_ros.model.inference import ObjectResult

    rng = np.random.default_rng(3)
    maxima = []
    with AuditLog(tmp_path / "normal.jsonl") as log:
        for i in range(102):
            scores = rng.uniform(0.0, 0.7, size=4)
            status = "ok" if i < 100 else "cannot_compare"
            objs = [ObjectResult(Box3D([0.1 * k, 0, 0.05], [0.1, 0.1, 0.1], 0.0), float(s), False) for k, s in
                    enumerate(scores)]
            log.append(build_report(inspection_id=i + 1, stamp=float(i), frame_id="world", objects=objs, threshold=1.0,
                                    views=[], latency={}, model={}, status=status,
                                    reason="" if status == "ok" else "few objects"))
            if status == "ok":
                maxima.append(float(scores.max()))
    assert cli_main(["tune-threshold", str(tmp_path / "normal.jsonl"), "--false-rejects", "0.05", "--json",
                     str(tmp_path / "t.json")]) == 0
    out = capsys.readouterr().out
    t = json.loads((tmp_path / "t.json").read_text())["anomaly_threshold"]
    assert sum(m > t for m in maxima) <= 5 and sum(m >= t for m in maxima) >= 6  # the lowest such threshold
    assert "100 normal trays (2 not compared" in out and f"ros2 param set /detector anomaly_threshold {t:.4f}" in out
    assert threshold_for([0.2, 0.4], 0.0) == 0.4 and threshold_for([0.2, 0.4], 1.0) == 0.0
    assert cli_main(["tune-threshold", str(tmp_path / "none.jsonl")]) == 2


def test_the_typed_verdict_and_tf_name_the_same_inspection_and_objects(graph, tmp_path):
    """~/verdict (odd_one_out_msgs/Verdict) carries the JSON report's id, status and objects (uids, sorted by
    score, box size), stamped as ~/anomalies; the cameras' optical frames are on /tf_static at the rig's poses; a
    verdict that cannot inspect replaces the reject there too."""
    from odd_one_out_msgs.msg import Verdict
    from tf2_msgs.msg import TFMessage

    from odd_one_out_ros.inspection.sim import fixed_cameras

    sim, path = rig(graph, tmp_path)
    broken = threading.Event()

    def inspect(views, good=rd.truth_inspector(sim.truth["objects"], [])):
        if broken.is_set():
            raise RuntimeError("model gone")
        return good(views)

    detector(graph, inspect_fn=inspect, rig_file=path, cameras=CAMS)
    p = rd.Probe(graph)
    got = {"verdict": [], "tf": []}
    node = graph.node("typed")
    node.create_subscription(Verdict, "/detector/verdict", got["verdict"].append, rd.LATCHED)
    node.create_subscription(TFMessage, "/tf_static", got["tf"].append, rd.LATCHED)
    rd.wait_for(lambda: got["verdict"] and p.msgs["detections"] and p.msgs["anomalies"] and got["tf"], 30, "outputs")
    v = got["verdict"][-1]
    r = next(r for r in p.reports() if r["inspection_id"] == v.inspection_id)
    assert v.status == Verdict.STATUS_OK and v.reason == "" and v.anomaly_detected == r["anomaly_detected"] is True
    assert v.header.frame_id == "world" and list(v.cameras_used) == CAMS and abs(v.threshold - 0.5) < 1e-6
    by_score = sorted(r["objects"], key=lambda o: -o["score"])
    assert [o.id for o in v.objects] == [o["uid"] for o in by_score]
    assert [o.anomalous for o in v.objects] == [o["label"] == "anomalous" for o in by_score]
    assert np.allclose([o.size.x for o in v.objects], [o["size"][0] for o in by_score], atol=1e-6)
    stamps = {(m.header.stamp.sec, m.header.stamp.nanosec) for m in p.msgs["anomalies"]}
    assert (v.header.stamp.sec, v.header.stamp.nanosec) in stamps
    tf = {t.child_frame_id: t for t in got["tf"][-1].transforms}
    assert sorted(tf) == [f"odd_one_out/{c}" for c in CAMS]
    for name, cam in zip(CAMS, fixed_cameras(SimConfig(cameras=3, image_size=96, seed=1))):
        t = tf["odd_one_out/" + name].transform.translation
        assert tf["odd_one_out/" + name].header.frame_id == "world"
        assert np.allclose([t.x, t.y, t.z], cam.center, atol=1e-5)
    broken.set()
    rd.wait_for(lambda: got["verdict"][-1].status == Verdict.STATUS_CANNOT_INSPECT, 15, "the failure's verdict")
    assert "model gone" in got["verdict"][-1].reason and not got["verdict"][-1].objects
    assert got["verdict"][-1].anomaly_detected  # not a pass, as ~/anomaly_detected


def test_the_report_schema_is_the_golden_file():
    """build_report of fixed inputs equals tests/golden/report_v3.json key for key and value for value (a change of
    the schema changes this file, and its number); the golden report validates; a cannot_inspect report without a
    reason, or an ok one with one, does not."""
    from pathlib import Path

    from odd_one_out_ros.geometry import Box3D
    from odd_one_out_ros.inspection.report import SCHEMA, build_report, is_pass, validate_report
    from odd_one_out_ros.model.inference import ObjectResult

    golden = json.loads((Path(__file__).parent / "golden" / "report_v3.json").read_text())
    objs = [ObjectResult(Box3D([0.1, -0.2, 0.04], [0.15, 0.1, 0.08], 0.25), 0.75, True, 0.875),
            ObjectResult(Box3D([-0.1, 0.2, 0.04], [0.15, 0.1, 0.08], -0.5), 0.125, False)]
    view = {"camera": "cam0", "stamp": 1764336000.25, "width": 256, "height": 256, "position": [0.5, 0.25, 0.5],
            "pose_source": "static"}
    model = {"checkpoint": "/abs/cpu_default.pt", "sha256": "00", "config": "cpu", "variant": "full"}
    missing = [{"camera": "cam1", "reason": "content: black (99 % of pixels below level 20 of 255)"}]
    latency = {"inference": 0.5, "waited": 0.0, "pipeline": 0.625}
    built = build_report(inspection_id=12, stamp=1764336000.25, frame_id="world", objects=objs, threshold=0.5,
                         views=[view], missing_views=missing, latency=latency, model=model, node="/detector")
    assert list(built) == list(golden) and built == golden and golden["schema"] == SCHEMA
    assert validate_report(golden) and not is_pass(golden)
    for status, reason in (("cannot_inspect", ""), ("ok", "why")):
        with pytest.raises(ValueError):
            validate_report({**golden, "status": status, "reason": reason})
    assert not is_pass({**golden, "objects": [], "n_objects": 0, "n_anomalous": 0, "anomaly_detected": False,
                        "status": "cannot_compare", "reason": "0 object(s) found"})


@pytest.mark.parametrize("fault", ["moved 5 cm / 5 deg", "cables swapped"])
def test_a_rig_whose_cameras_disagree_with_the_board_is_named_and_never_a_pass(graph, tmp_path, fault):
    """rig_check (on by default) with the tray board in view: a camera whose rig-file pose is 5 cm / 5 degrees off
    gives no view (named with how far off, WARN) and the others are inspected; two swapped cables leave one camera
    of three: the verdict is cannot_inspect naming both, ERROR."""
    from odd_one_out_ros.calibration.rig import CameraExtrinsics, write_rig_yaml
    from odd_one_out_ros.geometry import Rigid
    from odd_one_out_ros.inspection.sim import fixed_cameras

    cfg = SimConfig(cameras=3, apriltag_board=True, seed=1)
    poses = [c.T_cw for c in fixed_cameras(cfg)]
    if fault == "cables swapped":
        poses[0], poses[1] = poses[1], poses[0]
    else:  # the camera moved: 5 cm along x and turned 5 degrees about its optical axis
        T_wc = poses[1].inverse()
        moved = Rigid(T_wc.R @ Rigid.from_rotvec([0, 0, np.radians(5.0)], [0, 0, 0]).R, T_wc.t + [0.05, 0, 0])
        poses[1] = moved.inverse()
    path = write_rig_yaml(tmp_path / "rig.yaml", [CameraExtrinsics(f"cam{i}", "", T, 0.0, [], 0.0, 0.0)
                                                  for i, T in enumerate(poses)], force=True)
    sim = graph.add(SimRigNode(context=graph.ctx, parameter_overrides=rd.sim_params(
        cameras=3, apriltag_board=True, seed=1, rate=2.0)))
    detector(graph, inspect_fn=rd.truth_inspector(sim.truth["objects"], []), rig_file=str(path), cameras=CAMS,
             diagnostics_period=0.2)  # rig_check: on by default
    p = rd.Probe(graph)
    rd.wait_for(lambda: p.msgs["detections"] and last(p)["missing_views"], 60, "a verdict without the bad camera(s)")
    r = last(p)
    bad = ["cam1"] if fault != "cables swapped" else ["cam0", "cam1"]
    assert [m["camera"] for m in r["missing_views"]] == bad
    assert all("from where the board's tags put it" in m["reason"] for m in r["missing_views"])
    if fault != "cables swapped":
        import re

        cm, deg = map(float, re.search(r"is ([\d.]+) cm / ([\d.]+) deg", r["missing_views"][0]["reason"]).groups())
        assert 4.0 < cm < 6.0 and 4.0 < deg < 6.0, r["missing_views"]
        assert r["status"] == "ok" and [v["camera"] for v in r["views"]] == ["cam0", "cam2"]
        assert all(v["rig_check_cm"] < 1.0 for v in r["views"])
        level = b"\x01"
    else:
        assert r["status"] == "cannot_inspect" and p.msgs["anomaly_detected"][-1].data is True
        level = b"\x02"
    rd.wait_for(lambda: p.msgs["diagnostics"][-1].level == level and "cam1" in p.msgs["diagnostics"][-1].message,
                15, "diagnostics naming the camera")


def test_target_frame_gives_the_verdict_and_rejects_in_the_arms_frame_by_tf(graph, tmp_path):
    """target_frame base_link: no transform on /tf yet -> cannot_inspect naming the frames (never a pass, no reject
    in a frame the arm cannot place); once base_link -> world is on /tf_static, ~/verdict and ~/anomalies are in
    base_link, each box where the transform puts the JSON report's board-frame box (position and orientation)."""
    from geometry_msgs.msg import TransformStamped
    from odd_one_out_msgs.msg import Verdict
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from tf2_msgs.msg import TFMessage

    from odd_one_out_ros.geometry import Rigid, yaw_to_matrix
    from odd_one_out_ros.ros.conversions import pose_to_rigid, rigid_to_pose

    sim, path = rig(graph, tmp_path)
    detector(graph, inspect_fn=rd.truth_inspector(sim.truth["objects"], []), rig_file=path, cameras=CAMS,
             target_frame="base_link")
    p = rd.Probe(graph)
    got = []
    node = graph.node("arm")
    node.create_subscription(Verdict, "/detector/verdict", got.append, rd.LATCHED)
    rd.wait_for(lambda: got and p.msgs["anomaly_detected"], 30, "a verdict")
    assert got[-1].status == Verdict.STATUS_CANNOT_INSPECT and got[-1].anomaly_detected
    assert "no transform from world to target_frame base_link" in got[-1].reason and not got[-1].objects
    assert p.msgs["anomalies"][-1].poses == [] and p.msgs["anomaly_detected"][-1].data is True

    T_base_world = Rigid.from_rotvec([0.1, -0.2, 1.3], [0.6, -0.2, 0.1])  # the board as the arm's base sees it
    t = TransformStamped()
    t.header.frame_id, t.child_frame_id = "base_link", "world"
    pose = rigid_to_pose(T_base_world)
    t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = \
        pose.position.x, pose.position.y, pose.position.z
    t.transform.rotation = pose.orientation
    static = node.create_publisher(TFMessage, "/tf_static",
                                   QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    static.publish(TFMessage(transforms=[t]))
    rd.wait_for(lambda: got[-1].status == Verdict.STATUS_OK and p.msgs["anomalies"][-1].poses, 30,
                "a verdict in base_link")
    v = got[-1]
    r = next(r for r in p.reports() if r["inspection_id"] == v.inspection_id)
    assert v.header.frame_id == "base_link" and r["frame_id"] == "world"
    for ov in v.objects:
        o = r["objects"][ov.index]
        want = T_base_world @ Rigid(yaw_to_matrix(o["yaw"]), o["center"])
        assert np.allclose(pose_to_rigid(ov.pose).as_matrix(), want.as_matrix(), atol=1e-5)
    poses = p.msgs["anomalies"][-1]
    bad = [o for o in r["objects"] if o["label"] == "anomalous"]  # (the truth inspector: every tray the same)
    assert poses.header.frame_id == "base_link" and len(poses.poses) == len(bad)
    assert np.allclose([[q.position.x, q.position.y, q.position.z] for q in poses.poses],
                       T_base_world.apply([o["center"] for o in bad]), atol=1e-5)


def test_detections_3d_where_the_workspace_has_vision_msgs(graph, tmp_path):
    """With vision_msgs (test_interfaces builds a fixture package and runs this test against it): ~/detections_3d
    holds the verdict's objects as Detection3D, ids = the report's uids sorted by score, box = pose + size, the
    label's hypothesis first with its score."""
    vm = pytest.importorskip("vision_msgs.msg", reason="no vision_msgs here (test_interfaces builds one and runs this)")
    sim, path = rig(graph, tmp_path)
    detector(graph, inspect_fn=rd.truth_inspector(sim.truth["objects"], []), rig_file=path, cameras=CAMS)
    p = rd.Probe(graph)
    got = []
    graph.node("vision").create_subscription(vm.Detection3DArray, "/detector/detections_3d", got.append, rd.LATCHED)
    rd.wait_for(lambda: got and got[-1].detections and p.msgs["detections"], 30, "a Detection3DArray")
    d = got[-1]
    r = next(r for r in p.reports() if f"{r['inspection_id']}/0" in {x.id for x in d.detections})
    by_score = sorted(r["objects"], key=lambda o: -o["score"])
    assert d.header.frame_id == "world" and [x.id for x in d.detections] == [o["uid"] for o in by_score]
    for x, o in zip(d.detections, by_score):
        assert np.allclose([x.bbox.center.position.x, x.bbox.center.position.y, x.bbox.center.position.z],
                           o["center"], atol=1e-6)
        assert np.allclose([x.bbox.size.x, x.bbox.size.y, x.bbox.size.z], o["size"], atol=1e-6)
        assert x.results[0].hypothesis.class_id == o["label"]
        assert abs({h.hypothesis.class_id: h.hypothesis.score for h in x.results}["anomalous"] - o["score"]) < 1e-6


def test_a_moving_camera_that_goes_dark_is_a_verdict_too(graph, tmp_path):
    """Moving mode (a camera on an arm): inspections, then the camera stops: after camera_timeout a verdict
    cannot_inspect naming it replaces the last tray's (no reject stays latched), once until views come again."""
    sim = graph.add(SimRigNode(context=graph.ctx, parameter_overrides=rd.sim_params(
        mode="orbit", orbit_steps=12, image_size=48, rate=12.0, seed=1)))
    detector(graph, inspect_fn=rd.truth_inspector(sim.truth["objects"], []), pose_source="topic", cameras=["cam0"],
             mode="moving", views_required=3, min_view_angle_deg=40.0, camera_timeout=0.5, diagnostics_period=0.2)
    p = rd.Probe(graph)
    rd.wait_for(lambda: last(p).get("status") == "ok" and p.msgs["anomalies"] and p.msgs["anomalies"][-1].poses,
                30, "an inspection with a reject")
    graph.remove(sim)
    rd.wait_for(lambda: last(p).get("status") == "cannot_inspect", 15, "a verdict cannot_inspect")
    assert "only 0 of 1 cameras usable" in last(p)["reason"] and "cam0" in last(p)["reason"]
    rd.wait_for(lambda: p.msgs["anomalies"][-1].poses == [] and p.msgs["anomaly_detected"][-1].data is True, 5,
                "the reject withdrawn")
    n = len(p.msgs["detections"])
    time.sleep(1.0)
    assert len(p.msgs["detections"]) == n  # said once, not at every tick
