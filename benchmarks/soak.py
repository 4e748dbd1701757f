"""Soak test of the detector: the real `detector` executable (its own process, the shipped checkpoint unless
--checkpoint) fed by C simulated cameras at R Hz for M minutes over DDS on loopback.

    python benchmarks/soak.py [--cameras 4] [--rate 10] [--minutes 10] [--size 256] [--qos reliable]
                              [--checkpoint CKPT] [--param NAME:=VALUE ...] [--json OUT]

The cameras publish the sim rig's rendered views (inspection/sim.py, static poses from a rig file written for
them) with CameraInfo, stamped with the clock. Prints, at the end (and a progress line every 30 s):
  - RSS of the detector process: after the warm-up (the first inspection and 20 % of the run, at most 2 min), at
    the end, the growth between them, the peak, and the growth over the second half of the run (a leak keeps
    growing there; a one-time step of the allocator does not);
  - inspections, and the frames: sent, received by the detector (the difference is lost in transport, below
    the node), inspected, and dropped by named counter (its /diagnostics `dropped/<reason>` values);
    `frames_unaccounted` must be 0 (every frame the node received is inspected, dropped under a counter or pending);
  - latency, last view published -> markers received here: median and p95 (at 10 Hz the model is always busy,
    so a set also waits for the previous one), and the node's own part of it (latency minus the model's inference
    time and that wait, both from the report): median and p95 (issue 13: <= 100 ms), and of that the part inside
    the node's process (the report's newest frame received -> outputs, minus the same): the rest is DDS on
    loopback, images in and markers back, which on 2 busy cores has a tail in whole camera periods (docs/ros.md);
  - whether the detector crashed (it is stopped with SIGINT at the end and must exit 0).
Goal (issue 14): RSS growth < 50 MB, every drop counted, 0 crashes. Exit code 0 when the goals are met, 1 if not.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def pct(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, 100 * q, method="nearest")) if values else float("nan")


def soak(cameras: int, rate: float, minutes: float, size: int, qos: str, checkpoint: str = "",
         domain: int | None = None, log=print, params: tuple[str, ...] = ()) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import String
    from visualization_msgs.msg import MarkerArray

    from odd_one_out_ros.calibration.rig import CameraExtrinsics, write_rig_yaml
    from odd_one_out_ros.geometry import CameraCalibration
    from odd_one_out_ros.inspection.sim import SimConfig, SimRig
    from odd_one_out_ros.ros import conversions  # noqa: F401  (sets the ROS environment: loopback only)
    from odd_one_out_ros.ros.conversions import calibration_to_camera_info, rgb_to_image, stamp_seconds

    domain = domain if domain is not None else 60 + os.getpid() % 40
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    os.environ.update(ROS_DOMAIN_ID=str(domain))
    sim = SimRig(SimConfig(cameras=cameras, image_size=size, seed=17))
    names = [f"cam{i}" for i in range(cameras)]
    views = [sim.view(i) for i in range(cameras)]
    tmp = Path(tempfile.mkdtemp(prefix="soak_"))
    rig = write_rig_yaml(tmp / "rig.yaml", [CameraExtrinsics(n, "", cam.T_cw, 0.0, [], 0.0, 0.0)
                                            for n, (_, cam) in zip(names, views)], force=True)
    cmd = [sys.executable, "-m", "odd_one_out_ros.ros.detector", "--ros-args", "-p", f"rig_file:={rig}",
           "-p", f"cameras:=[{', '.join(names)}]", "-p", f"image_qos:={qos}", "-p", f"audit_log:={tmp / 'audit.jsonl'}",
           "-p", "diagnostics_period:=1.0"]
    if checkpoint:
        cmd += ["-p", f"checkpoint:={checkpoint}"]
    for p in params:  # more of the detector's parameters, NAME:=VALUE
        cmd += ["-p", p]
    det_log = open(tmp / "detector.log", "w")
    proc = subprocess.Popen(cmd, stdout=det_log, stderr=subprocess.STDOUT, env=env)

    rclpy.init(domain_id=domain)
    node = rclpy.create_node("soak_cameras")
    pub_qos = qos_profile_sensor_data if qos == "sensor_data" else QoSProfile(depth=10)
    pubs = [(node.create_publisher(Image, f"cameras/{n}/image_raw", pub_qos),
             node.create_publisher(CameraInfo, f"cameras/{n}/camera_info", pub_qos)) for n in names]
    infos = [calibration_to_camera_info(CameraCalibration.from_camera(cam, n), f"{n}_optical_frame")
             for n, (_, cam) in zip(names, views)]
    lock = threading.Lock()
    published: dict[float, float] = {}  # stamp -> monotonic time its last image was published
    state = {"sent": 0, "latency": [], "overhead": [], "inference": [], "reports": {}, "overhead_at": [],
             "inprocess": [], "tick": [], "diag": None, "rss_first": None, "rss_peak": 0.0, "first_inspection": None}
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)

    def tick():
        t_tick = time.monotonic()
        stamp = node.get_clock().now().to_msg()
        for (ip, cp), info, (rgb, _), n in zip(pubs, infos, views, names):
            info.header.stamp = stamp
            cp.publish(info)
            ip.publish(rgb_to_image(rgb, f"{n}_optical_frame", stamp))
        with lock:
            published[stamp.sec + 1e-9 * stamp.nanosec] = time.monotonic()
            state["sent"] += len(names)
            state["tick"].append(time.monotonic() - t_tick)  # the publishes of one trigger (a reliable one may block)

    def pair(t: float, key: str, value: float) -> None:  # markers and report of one inspection, in either order
        got = state["reports"].setdefault(t, {})
        got[key] = value
        if "e2e" in got and "model" in got:
            state["overhead"].append(got["e2e"] - got["model"])
            state["overhead_at"].append(time.monotonic())
            del state["reports"][t]

    def on_markers(msg):
        now = time.monotonic()
        t = stamp_seconds(msg.markers[0]) if msg.markers else None
        with lock:
            sent = published.get(t)
            if sent is not None:
                state["latency"].append(now - sent)
                pair(t, "e2e", now - sent)

    def on_report(msg):
        r = json.loads(msg.data)
        lat = r["latency_s"]
        if "inference" not in lat:  # a verdict without a model run (e.g. the one published at shutdown)
            return
        with lock:
            state["inference"].append(lat["inference"])
            if "pipeline" in lat:  # newest frame received -> outputs: the node's part without the transport
                state["inprocess"].append(lat["pipeline"] - lat["inference"] - lat.get("waited", 0.0))
            pair(r["stamp"], "model", lat["inference"] + lat.get("waited", 0.0))
            if state["first_inspection"] is None:
                state["first_inspection"] = time.monotonic()

    def on_diag(msg):
        for s in msg.status:
            if s.hardware_id == "/detector":
                with lock:
                    state["diag"] = ({kv.key: kv.value for kv in s.values}, s.level[0], s.message)

    # the cameras' timer apart from the subscriptions: a reliable publish may block (up to Fast DDS's
    # max_blocking_time, 100 ms, per image while the detector's reader lags), and the markers must be timed as
    # they arrive, not after the timer's callback
    listen = ReentrantCallbackGroup()
    node.create_subscription(MarkerArray, "/detector/markers", on_markers, latched, callback_group=listen)
    node.create_subscription(String, "/detector/detections", on_report, 10, callback_group=listen)
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10, callback_group=listen)
    executor = MultiThreadedExecutor(num_threads=3)
    executor.add_node(node)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()

    # wait for the detector to subscribe, then publish for `minutes`
    deadline = time.monotonic() + 120
    while pubs[0][0].get_subscription_count() == 0 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    timer = node.create_timer(1.0 / rate, tick, callback_group=MutuallyExclusiveCallbackGroup())
    t0 = time.monotonic()
    end = t0 + minutes * 60.0
    warmup_s = min(120.0, 0.2 * minutes * 60.0)
    next_log = t0 + 30.0
    crashed = False
    while time.monotonic() < end:
        time.sleep(1.0)
        if proc.poll() is not None:
            crashed = True
            break
        rss = rss_mb(proc.pid)
        with lock:
            state["rss_peak"] = max(state["rss_peak"], rss)
            warm = time.monotonic() - t0 >= warmup_s  # caches, allocator pools and the first inspections settle
            if warm and state["first_inspection"] is not None and state["rss_first"] is None:
                state["rss_first"] = rss
            state["rss_last"] = rss
            state.setdefault("rss_samples", []).append((time.monotonic() - t0, rss))
        if time.monotonic() >= next_log:
            next_log += 30.0
            with lock:
                d = state["diag"][0] if state["diag"] else {}
                log(f"{time.monotonic() - t0:6.0f} s: RSS {rss:.0f} MB, {d.get('inspections', 0)} inspections, "
                    f"{state['sent']} frames sent, {d.get('frames_received', '?')} received")
    node.destroy_timer(timer)
    time.sleep(3.0)  # the last set through the model, a last /diagnostics
    with lock:
        diag = state["diag"]
    exit_code = None
    if not crashed:
        proc.send_signal(signal.SIGINT)
        try:
            exit_code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            exit_code = "hung"
    executor.shutdown()
    node.destroy_node()
    rclpy.try_shutdown()
    det_log.close()
    values = diag[0] if diag else {}
    growth = (state.get("rss_last", float("nan")) - state["rss_first"]) if state["rss_first"] else float("nan")
    out = {
        "cameras": cameras, "rate_hz": rate, "minutes": minutes, "image_size": size, "qos": qos,
        "rss_after_warmup_mb": state["rss_first"], "warmup_s": warmup_s,
        "rss_end_mb": state.get("rss_last", float("nan")),
        "rss_growth_mb": growth, "rss_peak_mb": state["rss_peak"],
        "inspections": int(values.get("inspections", 0)), "frames_sent": state["sent"],
        "frames_received": int(values.get("frames_received", 0)),
        "frames_inspected": int(values.get("frames_inspected", 0)),
        "frames_unaccounted": int(values.get("frames_unaccounted", -1)),
        "dropped": {k[8:]: int(v) for k, v in values.items() if k.startswith("dropped/") and int(v)},
        "latency_median_s": statistics.median(state["latency"]) if state["latency"] else float("nan"),
        "latency_p95_s": pct(state["latency"], 0.95),
        "inference_median_s": statistics.median(state["inference"]) if state["inference"] else float("nan"),
        "node_overhead_median_s": statistics.median(state["overhead"]) if state["overhead"] else float("nan"),
        "node_overhead_p95_s": pct(state["overhead"], 0.95),
        "node_overhead_samples": [(round(a - t0, 2), round(v, 4))  # (s since the cameras started, s)
                                  for a, v in zip(state["overhead_at"], state["overhead"])],
        "node_inprocess_median_s": statistics.median(state["inprocess"]) if state["inprocess"] else float("nan"),
        "node_inprocess_p95_s": pct(state["inprocess"], 0.95),
        "publish_p95_s": pct(state["tick"], 0.95), "publish_max_s": max(state["tick"], default=float("nan")),
        "params": list(params),
        "diagnostics": {"level": diag[1], "message": diag[2]} if diag else None,
        "crashed": crashed, "exit_code": exit_code, "detector_log": str(tmp / "detector.log")}
    out["lost_in_transport"] = out["frames_sent"] - out["frames_received"]
    samples = state.get("rss_samples", [])
    half = [r for t, r in samples if t >= minutes * 30.0]  # the second half of the run: a leak keeps growing there
    out["rss_second_half_growth_mb"] = half[-1] - half[0] if len(half) > 1 else float("nan")
    out["goals"] = {"rss_growth_lt_50mb": bool(growth < 50), "every_drop_counted": out["frames_unaccounted"] == 0,
                    "no_crash": not crashed and exit_code == 0,
                    "node_overhead_p95_le_100ms": bool(out["node_overhead_p95_s"] <= 0.1)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument("--rate", type=float, default=10.0, help="Hz per camera")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--size", type=int, default=256, help="square image size (px)")
    ap.add_argument("--qos", default="reliable", choices=("reliable", "sensor_data", "system_default"))
    ap.add_argument("--checkpoint", default="", help="default: the shipped checkpoint")
    ap.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE",
                    help="a detector parameter (repeatable), e.g. rig_check:=false")
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)
    r = soak(args.cameras, args.rate, args.minutes, args.size, args.qos, args.checkpoint, params=tuple(args.param))
    if r["rss_after_warmup_mb"] is None:  # no inspection at all: say why, not a format error
        r["rss_after_warmup_mb"] = float("nan")
        print(f"no inspection; the detector's log: {r['detector_log']}")
    print(f"{args.cameras} cameras x {args.rate:g} Hz x {args.minutes:g} min, {args.size} px, QoS {args.qos}")
    print(f"RSS: {r['rss_after_warmup_mb']:.0f} MB after {r['warmup_s']:.0f} s of warm-up, {r['rss_end_mb']:.0f} MB at "
          f"the end: growth {r['rss_growth_mb']:+.1f} MB (peak {r['rss_peak_mb']:.0f} MB; over the second half of the "
          f"run {r['rss_second_half_growth_mb']:+.1f} MB)")
    print(f"inspections {r['inspections']}; frames sent {r['frames_sent']}, received {r['frames_received']} "
          f"(lost in transport {r['lost_in_transport']}), inspected {r['frames_inspected']}, unaccounted "
          f"{r['frames_unaccounted']}")
    print("dropped by counter: " + (", ".join(f"{k} {v}" for k, v in sorted(r["dropped"].items())) or "none"))
    print(f"latency last view -> markers: median {r['latency_median_s']:.3f} s, p95 {r['latency_p95_s']:.3f} s "
          f"(model median {r['inference_median_s']:.3f} s); node's own part: median "
          f"{1000 * r['node_overhead_median_s']:.0f} ms, p95 {1000 * r['node_overhead_p95_s']:.0f} ms; of it in the "
          f"node's process (newest frame received -> outputs): median {1000 * r['node_inprocess_median_s']:.1f} ms, "
          f"p95 {1000 * r['node_inprocess_p95_s']:.1f} ms (the rest: DDS on loopback, both ways); the cameras' "
          f"publishes of one trigger: p95 {1000 * r['publish_p95_s']:.0f} ms, max {1000 * r['publish_max_s']:.0f} ms")
    print(f"crashed: {r['crashed']}, exit code after SIGINT: {r['exit_code']}; diagnostics: {r['diagnostics']}")
    for goal, ok in r["goals"].items():
        print(f"{'PASS' if ok else 'FAIL'}  {goal}")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1))
    return 0 if all(r["goals"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
