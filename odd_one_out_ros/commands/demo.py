"""`odd-one-out demo`: the README's main job, end to end in one real ROS 2 graph.

The sim_rig node renders a generated tray (a few copies of one toy, some of them anomalous) seen by five
fixed cameras and publishes the images, CameraInfo and camera poses; the detector node gathers a
synchronised set over DDS (loopback), takes the poses from calibration/rig.yaml (or the AprilTag board,
or the pose topic), runs the model and publishes its results. The detector starts unconfigured (autostart
false): the demo takes it through configure (a bad checkpoint fails here, before any rendering) and activate with
its lifecycle service /detector/change_state, as `ros2 lifecycle set` would. The demo waits for one inspection, prints
each object's truth, label, score and box, and writes to --out: overlay.png (the detector's ~/overlay),
report.json (the detector's ~/detections report with the ground truth and the matching), audit.jsonl and
bags/ (the audit trail: `odd-one-out replay OUT/bags` runs the decision again).

Model: --checkpoint, else the shipped odd_one_out_ros/assets/checkpoints/cpu_default.pt (in the package).
"""
from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

from . import CommandError, positive_float


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    p.add_argument("--checkpoint", default=None, help="model checkpoint (default: the shipped one)")
    p.add_argument("--device", default="cpu", help="torch device for the model (default: cpu)")
    p.add_argument("--seed", type=int, default=17, help="scene seed (default: 17, six toy teapots, one fractured)")
    p.add_argument("--kind", choices=("toys", "parts"), default="toys", help="toys or mechanical parts")
    p.add_argument("--cameras", type=int, default=5, help="fixed cameras of the simulated rig (default: 5)")
    p.add_argument("--pose-source", choices=("static", "apriltag", "topic"), default="static",
                   help="camera poses from calibration/rig.yaml (static), the AprilTag board on the tray "
                        "(apriltag) or the rig's pose topic (topic); default: static")
    p.add_argument("--timeout", type=positive_float, default=45.0,
                   help="seconds to wait for the inspection (default: 45)")


def run(args) -> int:
    from ..env import apply_ros_env_defaults

    apply_ros_env_defaults()
    t0 = time.monotonic()
    if not 1 <= args.cameras <= 32:
        raise CommandError(f"--cameras must be in 1..32, got {args.cameras}")
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CommandError(f"cannot create {out}: {e.strerror}") from None
    from ..resources import DEFAULT_CHECKPOINT, share_dir

    checkpoint = Path(args.checkpoint) if args.checkpoint else DEFAULT_CHECKPOINT
    if not checkpoint.is_file():
        raise CommandError(f"checkpoint {checkpoint}: no such file")

    import rclpy
    from lifecycle_msgs.srv import ChangeState
    from rclpy.exceptions import ParameterException
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from ..ros.conversions import image_to_rgb, stamp_seconds
    from ..ros.detector import DetectorNode
    from ..ros.sim_rig import SimRigNode

    names = [f"cam{i}" for i in range(args.cameras)]
    rig_file = share_dir() / "calibration" / "rig.yaml"
    rclpy.init()
    nodes, executor, spinner = [], None, None
    got: dict = {}
    done = threading.Event()
    try:
        if args.pose_source == "static" and args.cameras != 5:  # the shipped rig.yaml is the 5-camera rig
            rig_file = _write_rig(out / "rig.yaml", args.cameras)
        try:
            detector = DetectorNode(parameter_overrides=[  # unconfigured: the lifecycle services below start it
                Parameter("autostart", value=False),
                Parameter("checkpoint", value=str(checkpoint)), Parameter("device", value=args.device),
                Parameter("pose_source", value=args.pose_source), Parameter("cameras", value=names),
                Parameter("rig_file", value=str(rig_file)), Parameter("min_views", value=min(2, args.cameras)),
                Parameter("audit_log", value=str(out / "audit.jsonl")),
                Parameter("record_views_dir", value=str(out / "bags"))])
        except (ValueError, ParameterException) as e:  # a parameter out of its range: already a clear message
            raise CommandError(str(e)) from None
        nodes.append(detector)
        listener = rclpy.create_node("odd_one_out_demo")
        nodes.append(listener)
        executor = MultiThreadedExecutor(num_threads=4)
        for n in nodes:
            executor.add_node(n)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        # configure (checkpoint, rig file, audit log: a bad one fails before any rendering), then activate, through
        # /detector/change_state as `ros2 lifecycle set` or the launch file would
        change_state = listener.create_client(ChangeState, "/detector/change_state")
        if not change_state.wait_for_service(timeout_sec=30):
            raise CommandError("the detector's lifecycle service /detector/change_state did not appear", code=1)
        for transition in ("configure", "activate"):
            req = ChangeState.Request()
            req.transition.label = transition
            response = change_state.call(req, timeout_sec=120)
            if response is None or not response.success:
                raise CommandError(detector.transition_error or f"the detector did not {transition}")
        try:
            sim = SimRigNode(parameter_overrides=[
                Parameter("seed", value=args.seed), Parameter("kind", value=args.kind),
                Parameter("cameras", value=args.cameras), Parameter("rate", value=2.0),
                Parameter("apriltag_board", value=args.pose_source == "apriltag")])
        except ValueError as e:  # bad parameter: already a clear message
            raise CommandError(str(e)) from None
        nodes.append(sim)
        setup_s = time.monotonic() - t0

        def on_detections(msg):
            report = json.loads(msg.data)
            if "report" not in got and report["views"]:  # (not a verdict on cameras that have sent nothing yet)
                got["report"] = report
            _check_done()

        def on_overlay(msg):
            got.setdefault("overlays", []).append(msg)
            _check_done()

        def on_truth(msg):
            got["truth"] = json.loads(msg.data)
            _check_done()

        def _check_done():
            r = got.get("report")
            same = [m for m in got.get("overlays", []) if r and abs(stamp_seconds(m) - r["stamp"]) < 1e-6]
            if same and "truth" in got:
                got["overlay"] = same[0]
                done.set()

        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        listener.create_subscription(String, "/detector/detections", on_detections, 10)
        listener.create_subscription(Image, "/detector/overlay", on_overlay, latched)
        listener.create_subscription(String, "/sim_rig/ground_truth", on_truth, latched)
        executor.add_node(sim)
        t_wait = time.monotonic()
        ok = done.wait(args.timeout)
        wait_s = time.monotonic() - t_wait
    finally:
        if executor is not None:
            executor.shutdown()
        if spinner is not None:
            spinner.join(timeout=10)
        for n in nodes:
            n.destroy_node()
        rclpy.try_shutdown()
    if not ok:
        raise CommandError(f"no inspection within {args.timeout} s (received: {sorted(got) or 'nothing'})", code=1)
    return _write_and_print(out, got["report"], got["truth"], image_to_rgb(got["overlay"]), args,
                            {"setup_s": setup_s, "first_inspection_s": wait_s, "total_s": time.monotonic() - t0})


def _write_rig(path: Path, n_cameras: int) -> Path:
    """The extrinsics of the sim rig's fixed cameras, as `odd-one-out calibrate rig` would write them."""
    from ..calibration.rig import CameraExtrinsics, write_rig_yaml
    from ..inspection.sim import SimConfig, fixed_cameras

    cams = [CameraExtrinsics(f"cam{i}", "", c.T_cw, 0.0, [], 0.0, 0.0)
            for i, c in enumerate(fixed_cameras(SimConfig(cameras=n_cameras)))]
    return write_rig_yaml(path, cams, force=True)


def _write_and_print(out: Path, report: dict, truth: dict, overlay, args, timing: dict) -> int:
    import cv2
    import numpy as np

    from ..geometry import Box3D
    from ..inspection.report import match_to_truth, report_boxes

    truth_boxes = [Box3D.from_dict(o) for o in truth["objects"]]
    match, extra = match_to_truth(truth_boxes, report_boxes(report))
    rows = []
    for o, m in zip(truth["objects"], match):
        det = report["objects"][m] if m is not None else None
        rows.append({"object": o["name"], "truth": f"anomalous ({o['anomaly_type']})" if o["anomalous"] else "normal",
                     "detection": det["id"] if det else None, "label": det["label"] if det else "not found",
                     "score": det["score"] if det else None, "box": _box(det) if det else None,
                     "truth_box": _box(o)})
    for d in extra:
        det = report["objects"][d]
        rows.append({"object": "-", "truth": "(no object here)", "detection": det["id"], "label": det["label"],
                     "score": det["score"], "box": _box(det), "truth_box": None})
    cv2.imwrite(str(out / "overlay.png"), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
    summary = {"schema": "odd_one_out_ros/demo/2",
               "scene": {k: truth[k] for k in ("kind", "category", "seed")}, "pose_source": args.pose_source,
               "objects": rows, "detections": report, "ground_truth": truth, "timing_s": timing}
    (out / "report.json").write_text(json.dumps(summary, indent=2))

    n_anom = sum(o["anomalous"] for o in truth["objects"])
    lat = report["latency_s"]
    print(f"scene: {truth['kind']} '{truth['category']}' (seed {truth['seed']}), {len(truth['objects'])} objects, "
          f"{n_anom} anomalous; {len(report['views'])} views "
          f"({', '.join(v['camera'] for v in report['views'])}) over ROS 2, poses: {args.pose_source}")
    print(f"inspection {report['inspection_id']}: {report['n_objects']} objects found, {report['n_anomalous']} "
          f"anomalous; model {lat['inference']:.2f} s, views-to-result {lat['pipeline']:.2f} s")
    print(f"{'object':<11} {'truth':<24} {'label':<10} {'score':>5}  {'box: centre (m)':<22} {'size (m)':<18} "
          f"{'yaw':>6}")
    for r in rows:
        b = r["box"]
        box = (f"{' '.join(f'{x:+.3f}' for x in b['center']):<22} {' '.join(f'{x:.3f}' for x in b['size']):<18} "
               f"{np.degrees(b['yaw']):6.1f}") if b else "-"
        score = f"{r['score']:.2f}" if r["score"] is not None else "-"
        print(f"{r['object']:<11} {r['truth']:<24} {r['label']:<10} {score:>5}  {box}")
    print(f"wrote {out / 'overlay.png'}, {out / 'report.json'} and the audit trail {out / 'audit.jsonl'}, "
          f"{out / 'bags'} (odd-one-out replay {out / 'bags'}); {timing['total_s']:.1f} s")
    return 0


def _box(o: dict) -> dict:
    return {"center": [round(float(x), 4) for x in o["center"]], "size": [round(float(x), 4) for x in o["size"]],
            "yaw": round(float(o["yaw"]), 4)}
