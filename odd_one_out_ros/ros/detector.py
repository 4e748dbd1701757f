"""ROS 2 node `detector`: gathers posed views of the tray, runs the Odd-One-Out model, publishes the result.

Three stages, so that no callback ever waits for the model:
  callbacks      convert nothing heavy: check the encoding, attach the camera's latest CameraInfo (and, for
                 pose_source topic, pair the image with its PoseStamped by stamp), enqueue the frame;
  gather thread  image -> RGB, camera pose (static | apriltag | topic), view selection (rig | moving),
                 complete view sets into a bounded queue (oldest dropped and counted);
  worker thread  Inspector.inspect(views) (non-finite outputs are errors: inspection/guard.py), audit trail
                 (JSONL + optional view bag), publishing.
Everything that is not message conversion lives in odd_one_out_ros.inspection (pure, unit-tested).
Topics, parameters, the JSON schema and the audit trail: docs/ros.md. Frames: docs/frames.md.
"""
from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PoseArray, PoseStamped
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data, qos_profile_system_default
from rclpy.serialization import serialize_message
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Bool, Header, String
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from ..inspection.audit import PARTIAL_DIR, AuditLog, new_run_id, write_view_bag
from ..inspection.gather import DropQueue, MovingViewSelector, RigGatherer
from ..inspection.guard import FiniteGuard, check_finite_result
from ..inspection.overlay import overlay_image
from ..inspection.poses import POSE_SOURCES, PoseError, PoseResolver
from ..inspection.report import build_report, validate_report
from ..resources import DEFAULT_CHECKPOINT, share_dir
from ..sync import ApproximateSync
from ..views import PosedView
from .conversions import (
    IMAGE_ENCODINGS,
    camera_info_to_camera,
    image_to_rgb,
    posed_view,
    rgb_to_image,
    rigid_to_pose,
    stamp_seconds,
)
from .node_main import param_desc as _desc  # noqa: I001  (first: sets the ROS environment before rclpy loads)
from .node_main import run_node
from .outputs import anomaly_poses, diagnostic_status, markers_for

MODES = ("rig", "moving")
TRIGGERS = ("continuous", "service")
QOS_CHOICES = ("sensor_data", "reliable", "system_default")
LOG_EVERY_S = 30.0  # repeated failures of one kind and camera are logged at most this often
ONCE_KINDS = ("encoding",)  # ... or only once
WARN_WINDOW_S = 10.0  # /diagnostics says WARN while views were dropped or unusable this recently
INFO_GRACE_S = 2.0  # images without CameraInfo in a camera's first seconds are dropped without a complaint


def _choice(name: str, value: str, choices: tuple) -> str:
    if value not in choices:
        raise ValueError(f"parameter {name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def _default_audit_log(node_name: str) -> str:
    """$ROS_HOME/odd_one_out_ros/audit/<namespace>/<name>.jsonl: detectors with different names or namespaces
    get their own logs (a log has one writer: a second detector on the same file is refused at start)."""
    home = Path(os.environ.get("ROS_HOME", "~/.ros"))
    return str(home / "odd_one_out_ros" / "audit" / f"{node_name.strip('/')}.jsonl")


@dataclass
class Frame:
    """One image of one camera with what the callbacks attached to it."""

    camera: str
    image: Image
    info: CameraInfo
    stamp: float
    received: float  # time.monotonic() on arrival
    pose: PoseStamped | None = None


@dataclass
class GatheredView:
    view: PosedView
    record: dict  # the report's entry for this view
    messages: tuple  # (Image, CameraInfo, PoseStamped) exactly as used: what the view bag stores
    received: float


@dataclass
class ViewSet:
    items: list[GatheredView]

    @property
    def stamp(self) -> float:
        return max(g.view.stamp for g in self.items)

    @property
    def received(self) -> float:
        return max(g.received for g in self.items)


@dataclass
class Request:
    """One call of ~/inspect, waiting for an inspection of views stamped at or after `after`."""

    after: float
    done: threading.Event = field(default_factory=threading.Event)
    report: dict | None = None
    error: str = ""


class DetectorNode(Node):
    def __init__(self, inspect_fn: Callable | None = None, **kwargs):
        """inspect_fn(views: list[PosedView]) -> InspectionResult replaces the checkpoint's model (tests)."""
        super().__init__("detector", **kwargs)
        # ------------------------------------------------------------------ parameters (docs/ros.md)
        checkpoint = self.declare_parameter("checkpoint", "", _desc(
            "model checkpoint (.pt); empty = the shipped odd_one_out_ros/assets/checkpoints/cpu_default.pt")).value
        device = self.declare_parameter("device", "cpu", _desc("torch device: cpu, cuda or cuda:N")).value
        threshold = self.declare_parameter("anomaly_threshold", -1.0, _desc(
            "score above which an object is anomalous; -1 = the checkpoint's own threshold", -1.0, 1.0)).value
        cameras = self.declare_parameter("cameras", Parameter.Type.STRING_ARRAY, _desc(
            "camera names; topics are <camera_prefix>/<name>/{image_raw,camera_info,pose}; "
            "unset with pose_source static = every camera of the rig file")).value
        self.prefix = self.declare_parameter("camera_prefix", "cameras", _desc("topic prefix of the cameras")).value
        qos_name = _choice("image_qos", self.declare_parameter("image_qos", "sensor_data", _desc(
            "QoS of the camera subscriptions", choices=QOS_CHOICES)).value, QOS_CHOICES)
        self.pose_source = _choice("pose_source", self.declare_parameter("pose_source", "static", _desc(
            "where camera poses come from", choices=POSE_SOURCES)).value, POSE_SOURCES)
        rig_file = self.declare_parameter("rig_file", "", _desc(
            "rig extrinsics YAML for pose_source static; empty = the package's calibration/rig.yaml")).value
        board_file = self.declare_parameter("board_file", "", _desc(
            "AprilTag board YAML for pose_source apriltag; empty = calibration/tray_board_12tags.yaml")).value
        max_err = self.declare_parameter("max_reprojection_error_px", 2.0, _desc(
            "apriltag: views whose board pose has a larger RMS reprojection error are dropped", 0.01, 50.0)).value
        min_tags = self.declare_parameter("min_tags", 2, _desc("apriltag: board tags needed for a pose", 1, 1000)).value
        self.mode = _choice("mode", self.declare_parameter("mode", "rig", _desc(
            "rig: one synchronised image per camera; moving: views collected over time", choices=MODES)).value, MODES)
        self.sync_slop = self.declare_parameter("sync_slop", 0.05, _desc(
            "seconds between the stamps of one rig set, and between an image and its pose message", 0.0, 10.0)).value
        self.min_views = self.declare_parameter("min_views", 2, _desc(
            "rig: inspect a set when at least this many of its views have a pose", 1, 1000)).value
        views_required = self.declare_parameter("views_required", 5, _desc(
            "moving: views per inspection", 1, 1000)).value
        min_angle = self.declare_parameter("min_view_angle_deg", 20.0, _desc(
            "moving: least angle between any two views, seen from the world origin", 0.0, 180.0)).value
        max_age = self.declare_parameter("max_view_age", 30.0, _desc(
            "moving: views older than this (seconds behind the newest) are discarded", 0.01, 86400.0)).value
        self.trigger = _choice("trigger", self.declare_parameter("trigger", "continuous", _desc(
            "continuous: inspect every complete set; service: only on a call of ~/inspect",
            choices=TRIGGERS)).value, TRIGGERS)
        self.inspect_timeout = self.declare_parameter("inspect_timeout", 60.0, _desc(
            "seconds a call of ~/inspect waits for its result", 0.1, 3600.0)).value
        self.frame_id = self.declare_parameter("frame_id", "world", _desc(
            "world (board) frame of poses and results")).value
        queue_size = self.declare_parameter("queue_size", 1, _desc(
            "complete view sets waiting for the model; when full the oldest is dropped", 1, 100)).value
        audit_log = self.declare_parameter("audit_log", _default_audit_log(self.get_fully_qualified_name()), _desc(
            "JSONL file every inspection is appended to (fsynced); empty = no audit log; one detector per file; "
            "default $ROS_HOME/odd_one_out_ros/audit/<node>.jsonl")).value
        self.record_dir = self.declare_parameter("record_views_dir", "", _desc(
            "folder for one mcap view bag per inspection (odd-one-out replay); empty = off")).value
        self.overlay_views = self.declare_parameter("overlay_max_views", 6, _desc(
            "views drawn in ~/overlay (0 = no overlay)", 0, 100)).value
        diag_period = self.declare_parameter("diagnostics_period", 1.0, _desc(
            "seconds between /diagnostics messages", 0.05, 3600.0)).value

        # ------------------------------------------------------------------ checks and files (clear errors at start)
        if not self.frame_id:
            raise ValueError("parameter frame_id must not be empty")
        self.resolver = PoseResolver.create(
            self.pose_source, rig_file or str(share_dir() / "calibration" / "rig.yaml"),
            board_file or str(share_dir() / "calibration" / "tray_board_12tags.yaml"), max_err, min_tags)
        if not cameras:
            if self.pose_source != "static":
                raise ValueError(f"parameter cameras is required with pose_source {self.pose_source}")
            cameras = sorted(self.resolver.rig)
        self.cameras = [str(c) for c in cameras]
        if len(set(self.cameras)) != len(self.cameras) or not all(self.cameras):
            raise ValueError(f"parameter cameras must be distinct non-empty names, got {self.cameras}")
        self.resolver.check_cameras(self.cameras)
        if self.mode == "rig" and self.min_views > len(self.cameras):
            raise ValueError(f"min_views {self.min_views} is more than the {len(self.cameras)} cameras")
        self.selector = MovingViewSelector(views_required, min_angle, max_age) if self.mode == "moving" else None
        self.rig_sync = RigGatherer(self.cameras, self.sync_slop) if self.mode == "rig" else None
        if inspect_fn is None:
            inspect_fn, self.threshold, self.model_info = self._load_model(checkpoint, device, threshold)
        else:
            self.threshold = threshold if threshold >= 0 else 0.5
            self.model_info = {"checkpoint": None, "injected": True}
        self.inspect_fn = inspect_fn
        self.audit = AuditLog(audit_log, node=self.get_fully_qualified_name()) if audit_log else None
        self.run_id = self.audit.run_id if self.audit else new_run_id()
        if self.audit is not None and self.audit.fenced:
            self.get_logger().warning(f"audit log {self.audit.path}: {self.audit.fenced} (a crash while writing) "
                                      "was fenced off; earlier records are intact, new ones start on a new line")
        if self.record_dir:
            partial = Path(self.record_dir).expanduser() / PARTIAL_DIR
            left = sorted(p.name for p in partial.iterdir() if p.is_dir()) if partial.is_dir() else []
            if left:
                self.get_logger().warning(
                    f"{len(left)} interrupted view bag(s) in {partial} (a detector stopped while writing them; not "
                    f"readable, their inspections were never recorded or published): {', '.join(left[:3])}"
                    + (" ..." if len(left) > 3 else ""))

        # ------------------------------------------------------------------ state shared by the stages
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._infos: dict[str, CameraInfo] = {}
        self._last_seen: dict[str, float] = {}
        self._first_image: dict[str, float] = {}
        self._pose_sync = {c: ApproximateSync(2, slop=self.sync_slop) for c in self.cameras}
        self._frames = DropQueue(max(8, 4 * len(self.cameras)))
        self._sets = DropQueue(queue_size)
        self._request: Request | None = None
        self._seen_request: Request | None = None
        self._failures: dict[str, dict[str, int]] = {}
        self._logged: dict[tuple[str, str], float] = {}
        self._stats = {"inspections": 0, "inference_errors": 0, "incomplete_sets": 0, "audit_errors": 0,
                       "last_latency_s": None, "latency_sum": 0.0, "last_objects": 0, "last_anomalous": 0,
                       "last_error": ""}
        self._last_diag_counts = (0, 0, 0, 0, 0, 0)
        self._last_problem = -1e9
        self._inspection_id = self.audit.last_id if self.audit else 0  # ids stay unique within the audit log
        self._shutdown_logged = False

        # ------------------------------------------------------------------ ROS interfaces
        qos = {"sensor_data": qos_profile_sensor_data, "reliable": QoSProfile(depth=10),
               "system_default": qos_profile_system_default}[qos_name]
        for cam in self.cameras:
            base = f"{self.prefix}/{cam}" if self.prefix else cam
            self.create_subscription(Image, f"{base}/image_raw", lambda m, c=cam: self._on_image(c, m), qos)
            self.create_subscription(CameraInfo, f"{base}/camera_info", lambda m, c=cam: self._on_info(c, m), qos)
            if self.pose_source == "topic":
                self.create_subscription(PoseStamped, f"{base}/pose", lambda m, c=cam: self._on_pose(c, m), qos)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pub_markers = self.create_publisher(MarkerArray, "~/markers", latched)
        self.pub_anomalies = self.create_publisher(PoseArray, "~/anomalies", latched)
        self.pub_flag = self.create_publisher(Bool, "~/anomaly_detected", latched)
        self.pub_overlay = self.create_publisher(Image, "~/overlay", latched)
        self.pub_detections = self.create_publisher(String, "~/detections", 10)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_service(Trigger, "~/inspect", self._on_inspect, callback_group=ReentrantCallbackGroup())
        self.create_timer(diag_period, self._publish_diagnostics)
        self._threads = [threading.Thread(target=self._loop, args=(self._frames, self._gather), daemon=True,
                                          name="detector-gather"),
                         threading.Thread(target=self._loop, args=(self._sets, self._inspect), daemon=True,
                                          name="detector-inspect")]
        for t in self._threads:
            t.start()
        self.get_logger().info(
            f"{len(self.cameras)} camera(s) {self.cameras} on {self.prefix}/<camera>/, poses: {self.pose_source}, "
            f"mode: {self.mode}, trigger: {self.trigger}, frame: {self.frame_id}, model: "
            f"{self.model_info.get('checkpoint') or 'injected'}, audit log: {audit_log or 'off'}, run {self.run_id}"
            + (f", inspection ids from {self._inspection_id + 1}" if self._inspection_id else ""))

    # ---------------------------------------------------------------------- model
    def _load_model(self, checkpoint: str, device: str, threshold: float):
        if not (device == "cpu" or device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())):
            raise ValueError(f"parameter device must be cpu, cuda or cuda:N; got {device!r}")
        path = Path(checkpoint).expanduser() if checkpoint else DEFAULT_CHECKPOINT
        if not path.is_file():
            hint = (" The shipped checkpoint is not there yet: train one (odd-one-out train) and pass it with "
                    "-p checkpoint:=/path/model.pt." if not checkpoint else "")
            raise ValueError(f"checkpoint {path}: no such file.{hint}")
        import torch

        from ..model.checkpoint import file_sha256, load_checkpoint
        from ..model.inference import Inspector

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"parameter device is {device!r} but CUDA is not available here; use device:=cpu")
        net, blob = load_checkpoint(path, device)  # CheckpointError (a ValueError) names the file
        inspector = Inspector(net, device, None if threshold < 0 else threshold)
        meta = blob.get("meta") or {}
        info = {"checkpoint": str(path.resolve()), "sha256": file_sha256(path),
                "config": net.cfg.name, "variant": net.cfg.variant, "untrained": bool(meta.get("untrained", False))}
        if info["untrained"]:
            self.get_logger().warning(f"checkpoint {path} is an UNTRAINED network: it finds no objects and its "
                                      "scores mean nothing")
        return FiniteGuard(inspector), float(inspector.threshold), info

    def _log(self):
        """The node's logger; once the context is shut down (Ctrl-C) a logger of another name, so that a line
        logged then is that one line (the node's own would also try /rosout and print an rcl error)."""
        if self.context.ok():
            return self.get_logger()
        import rclpy.logging

        return rclpy.logging.get_logger(self.get_logger().name + ".shutdown")

    # ---------------------------------------------------------------------- failures: counted, logged rarely
    def _fail(self, camera: str, kind: str, message: str) -> None:
        with self._lock:
            per = self._failures.setdefault(kind, {})
            per[camera] = per.get(camera, 0) + 1
            key, now = (camera, kind), time.monotonic()
            last = self._logged.get(key)
            log = last is None or (kind not in ONCE_KINDS and now - last > LOG_EVERY_S)
            if log:
                self._logged[key] = now
        if log:
            self._log().error(f"{camera}: {message}")

    # ---------------------------------------------------------------------- callbacks (cheap)
    def _on_info(self, cam: str, msg: CameraInfo) -> None:
        self._infos[cam] = msg

    def _on_image(self, cam: str, msg: Image) -> None:
        now = time.monotonic()
        self._last_seen[cam] = now
        if msg.encoding.lower() not in IMAGE_ENCODINGS:
            self._fail(cam, "encoding", f"unsupported image encoding {msg.encoding!r}; supported: "
                       f"{', '.join(IMAGE_ENCODINGS)}. Dropping this camera's images until they change.")
            return
        first = self._first_image.setdefault(cam, now)
        info = self._infos.get(cam)
        if info is None:
            if now - first < INFO_GRACE_S:
                return  # at start-up the first images may overtake the first CameraInfo
            self._fail(cam, "no_camera_info", f"no CameraInfo received yet on {self.prefix}/{cam}/camera_info; "
                       "dropping its images until one arrives")
            return
        frame = Frame(cam, msg, info, stamp_seconds(msg), now)
        if self.pose_source != "topic":
            self._frames.put(frame)
            return
        with self._lock:
            match = self._pose_sync[cam].add(0, frame.stamp, frame)
        if match:
            match[0].pose = match[1]
            self._frames.put(match[0])

    def _on_pose(self, cam: str, msg: PoseStamped) -> None:
        with self._lock:
            match = self._pose_sync[cam].add(1, stamp_seconds(msg), msg)
        if match:
            match[0].pose = match[1]
            self._frames.put(match[0])

    def _on_inspect(self, request, response):
        req = Request(after=self.get_clock().now().nanoseconds * 1e-9)
        with self._lock:
            busy = self._request is not None
            if not busy:
                self._request = req
        if busy:
            response.success, response.message = False, "another ~/inspect call is waiting; try again later"
            return response
        ok = req.done.wait(self.inspect_timeout)
        with self._lock:
            if self._request is req:
                self._request = None
        if not ok:
            waiting = [c for c in self.cameras if c not in self._last_seen]
            response.success = False
            response.message = (f"no inspection within {self.inspect_timeout} s"
                                + (f" (no images yet from {waiting})" if waiting else ""))
        elif req.error:
            response.success, response.message = False, req.error
        else:
            response.success, response.message = True, json.dumps(req.report)
        return response

    # ---------------------------------------------------------------------- worker threads
    def _loop(self, source: DropQueue, handle: Callable) -> None:
        while not self._stop.is_set():
            try:
                item = source.get(timeout=0.1)
            except queue.Empty:
                continue
            try:
                handle(item)
            except Exception as e:  # never let a thread die: log, count, carry on
                with self._lock:
                    self._stats["inference_errors"] += 1
                    self._stats["last_error"] = f"{type(e).__name__}: {e}"
                self._log().error(f"{handle.__name__} failed: {type(e).__name__}: {e}\n"
                                  f"{traceback.format_exc(limit=4)}")

    def _gather(self, frame: Frame) -> None:
        req = self._request
        if self.trigger == "service":
            if req is None or frame.stamp < req.after:
                return  # idle: nothing requested
            if req is not self._seen_request:  # a new request: start collecting afresh
                self._seen_request = req
                if self.selector is not None:
                    self.selector.reset()
        if self.mode == "rig":
            frames = self.rig_sync.add(frame.camera, frame.stamp, frame)
            if frames is None:
                return
            items = [g for g in (self._view(f) for f in frames) if g is not None]
            if len(items) < self.min_views:
                with self._lock:
                    self._stats["incomplete_sets"] += 1
                return
            self._sets.put(ViewSet(items))
            return
        g = self._view(frame)
        if g is None:
            return
        chosen = self.selector.add(g, g.view.camera.center, g.view.stamp)
        if chosen:
            self._sets.put(ViewSet(chosen))

    def _view(self, frame: Frame) -> GatheredView | None:
        """Frame -> posed view, or None (counted and logged) when its image, intrinsics or pose is unusable."""
        cam, image, info = frame.camera, frame.image, frame.info
        extra = {}
        try:
            if self.pose_source == "topic":
                if frame.pose.header.frame_id and frame.pose.header.frame_id != self.frame_id:
                    self._fail(cam, "pose", f"pose is in frame {frame.pose.header.frame_id!r}, not {self.frame_id!r} "
                               "(no tf here: publish poses in the world frame)")
                    return None
                pose = frame.pose
            else:
                if self.pose_source == "apriltag":
                    rgb = image_to_rgb(image)
                    T_cw, extra = self.resolver.resolve(cam, rgb, camera_info_to_camera(info, source=cam))
                else:
                    T_cw, extra = self.resolver.resolve(cam, None, None)
                pose = PoseStamped()
                pose.header.stamp, pose.header.frame_id = image.header.stamp, self.frame_id
                pose.pose = rigid_to_pose(T_cw.inverse())
            view = posed_view(image, info, pose, cam)  # the same conversion as odd-one-out replay
        except PoseError as e:
            self._fail(cam, "pose", f"no camera pose: {e}")
            return None
        except ValueError as e:
            self._fail(cam, "image", f"unusable view: {e}")
            return None
        record = {"camera": cam, "stamp": view.stamp, "width": view.camera.width, "height": view.camera.height,
                  "position": [round(float(x), 6) for x in view.camera.center], "pose_source": self.pose_source,
                  **extra}
        return GatheredView(view, record, (image, info, pose), frame.received)

    def _inspect(self, vs: ViewSet) -> None:
        req = self._request
        if self.trigger == "service" and (req is None or vs.stamp < req.after):
            return
        views = [g.view for g in vs.items]
        t0 = time.perf_counter()
        try:
            result = self.inspect_fn(views)
            check_finite_result(result)  # NaN / inf anywhere: an error, never an all-clear
            inference = time.perf_counter() - t0
            self._inspection_id += 1
            report = build_report(
                inspection_id=self._inspection_id, stamp=vs.stamp, frame_id=self.frame_id, objects=result.objects,
                threshold=self.threshold, views=[g.record for g in vs.items],
                latency={"inference": inference, "pipeline": time.monotonic() - vs.received},
                model=self.model_info, node=self.get_fully_qualified_name())
            validate_report(json.loads(json.dumps(report, allow_nan=False)))
        except Exception as e:
            msg = f"inspection of {len(views)} views failed: {type(e).__name__}: {e}"
            with self._lock:
                self._stats["inference_errors"] += 1
                self._stats["last_error"] = msg
            self._log().error(msg)
            self._finish_request(vs, None, msg)
            return
        newest = max(vs.items, key=lambda g: g.view.stamp)
        header = Header(stamp=newest.messages[0].header.stamp, frame_id=self.frame_id)
        recorded = self._audit(vs, report)  # before publishing: no decision without its record
        try:
            self._publish(report, result, views, header)
        except Exception:
            if not self._shutting_down():
                raise
            if not self._shutdown_logged:  # Ctrl-C during an inspection: the context is gone, say so in one line
                self._shutdown_logged = True
                self._log().warning(f"shutting down: inspection {report['inspection_id']} was not published"
                                    + (" (it is in the audit log)" if recorded else ""))
            self._finish_request(vs, None, "the detector is shutting down")
            return
        with self._lock:
            s = self._stats
            s["inspections"] += 1
            s["last_latency_s"] = report["latency_s"]["pipeline"]
            s["latency_sum"] += report["latency_s"]["pipeline"]
            s["last_objects"], s["last_anomalous"] = report["n_objects"], report["n_anomalous"]
            s["last_error"] = ""
        self._finish_request(vs, report, "")

    def _shutting_down(self) -> bool:
        return self._stop.is_set() or not self.context.ok()

    def _publish(self, report: dict, result, views: list[PosedView], header: Header) -> None:
        objects = report["objects"]
        self.pub_markers.publish(markers_for(objects, header))
        self.pub_anomalies.publish(anomaly_poses(objects, header))
        self.pub_flag.publish(Bool(data=report["anomaly_detected"]))
        self.pub_detections.publish(String(data=json.dumps(report)))
        if self.overlay_views:
            try:
                sheet = overlay_image(views, [o.box for o in result.objects], [o.score for o in result.objects],
                                      [o["label"] == "anomalous" for o in objects], self.overlay_views)
                self.pub_overlay.publish(rgb_to_image(sheet, self.frame_id, header.stamp))
            except (ValueError, IndexError) as e:
                self._log().warning(f"no overlay for inspection {report['inspection_id']}: {e}")

    def _finish_request(self, vs: ViewSet, report: dict | None, error: str) -> None:
        with self._lock:
            req = self._request
            if req is None or vs.stamp < req.after:
                return
            self._request = None
        req.report, req.error = report, error
        req.done.set()

    def _audit(self, vs: ViewSet, report: dict) -> bool:
        """View bag and audit record of one inspection; True when the audit log holds its record."""
        bag = None
        if self.record_dir:
            try:
                stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(report["stamp"]))
                path = Path(self.record_dir).expanduser() / f"inspection_{stamp}_{report['inspection_id']:05d}"
                n = 1
                while path.exists() or (path.parent / PARTIAL_DIR / path.name).exists():
                    n += 1
                    path = path.with_name(f"{path.name.split('~')[0]}~{n}")
                keys = ("/views/image", "/views/camera_info", "/views/pose")
                views = [{k: serialize_message(m) for k, m in zip(keys, g.messages)} for g in vs.items]
                bag = write_view_bag(path, views, serialize_message(String(data=json.dumps(report))),
                                     int(round(report["stamp"] * 1e9)))
            except Exception as e:  # a full disk must not stop inspections; it shows in diagnostics
                with self._lock:
                    self._stats["audit_errors"] += 1
                self._log().error(f"cannot write the view bag of inspection {report['inspection_id']}: {e}")
        if self.audit is not None:
            try:
                self.audit.append({**report, "bag": str(bag) if bag else None})
                return True
            except (OSError, ValueError) as e:
                with self._lock:
                    self._stats["audit_errors"] += 1
                self._log().error(f"cannot append to the audit log {self.audit.path}: {e}")
        return False

    # ---------------------------------------------------------------------- diagnostics
    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        with self._lock:
            s = dict(self._stats)
            fails = {k: dict(v) for k, v in self._failures.items()}
        pose_fail = sum(fails.get("pose", {}).values())
        image_err = sum(fails.get("image", {}).values()) + sum(fails.get("encoding", {}).values())
        no_info = sum(fails.get("no_camera_info", {}).values())
        drops = self._frames.dropped + self._sets.dropped + (self.rig_sync.dropped if self.rig_sync else 0) \
            + sum(p.dropped for p in self._pose_sync.values())
        values = {
            "inspections": s["inspections"],
            "last_latency_s": f"{s['last_latency_s']:.3f}" if s["last_latency_s"] is not None else "",
            "mean_latency_s": f"{s['latency_sum'] / s['inspections']:.3f}" if s["inspections"] else "",
            "last_objects": s["last_objects"], "last_anomalous": s["last_anomalous"],
            "dropped_frames": self._frames.dropped, "dropped_view_sets": self._sets.dropped,
            "unmatched_frames": drops - self._frames.dropped - self._sets.dropped,
            "pose_failures": pose_fail, "image_errors": image_err, "missing_camera_info": no_info,
            "incomplete_sets": s["incomplete_sets"], "inference_errors": s["inference_errors"],
            "audit_errors": s["audit_errors"], "run_id": self.run_id}
        if self.selector is not None:
            values.update(views_too_close=self.selector.too_close, views_expired=self.selector.expired,
                          views_collected=len(self.selector))
        for kind, per in fails.items():
            for cam, n in per.items():
                values[f"{kind}_{cam}"] = n
        silent = [c for c in self.cameras if now - self._last_seen.get(c, -1e9) > 5.0]
        for c in self.cameras:
            values[f"last_image_age_s_{c}"] = f"{now - self._last_seen[c]:.1f}" if c in self._last_seen else "never"
        # dropped view sets are not a problem: while the model is busy the newest complete set waits
        counts = (pose_fail, image_err, no_info, drops - self._sets.dropped, s["incomplete_sets"], s["audit_errors"])
        if counts != self._last_diag_counts:
            self._last_problem = now
        self._last_diag_counts = counts
        recent = now - self._last_problem < WARN_WINDOW_S
        if s["last_error"]:
            level, message = DiagnosticStatus.ERROR, s["last_error"]
        elif recent or silent:
            level = DiagnosticStatus.WARN
            message = (f"no images for 5 s from {silent}" if silent else
                       f"views dropped or unusable in the last {WARN_WINDOW_S:.0f} s (see values)")
        else:
            level, message = DiagnosticStatus.OK, f"{s['inspections']} inspections"
        status = diagnostic_status(f"{self.get_name()}: odd-one-out detector", self.get_fully_qualified_name(),
                                   level[0] if isinstance(level, bytes) else level, message, values)
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(msg)

    # ---------------------------------------------------------------------- shutdown
    def destroy_node(self):  # also called by rclpy on a node whose __init__ failed half way
        if hasattr(self, "_stop"):
            self._stop.set()
        for t in getattr(self, "_threads", []):
            t.join(timeout=10)
        if getattr(self, "audit", None) is not None:
            problem = self.audit.close()  # never raises (e.g. on a full disk): one line instead
            if problem:
                self._log().error(problem)
        return super().destroy_node()


def main(args=None) -> int:
    return run_node(DetectorNode, "detector", args, threads=3)


if __name__ == "__main__":
    sys.exit(main())
