"""ROS 2 node `detector`: gathers posed views of the tray, runs the Odd-One-Out model, publishes the result.

Three stages, so that no callback ever waits for the model:
  callbacks      convert nothing heavy: check the encoding, the stamp against the node's clock and that a CameraInfo
                 came (for pose_source topic, pair the image with its PoseStamped by stamp), enqueue the frame;
  gather thread  rig sets (inspection/gather.RigGatherer: a set of >= min_views cameras is inspected without the
                 cameras that are out) or moving-mode selection; image -> RGB, camera pose (static | apriltag |
                 topic); view sets into a bounded queue (oldest dropped and counted);
  worker thread  Inspector.inspect(views) (non-finite outputs are errors: inspection/guard.py), audit trail
                 (JSONL + optional view bag), publishing.
A lifecycle node: configure loads and checks (parameters, pose source, checkpoint, audit log), activate starts the
subscriptions and both threads, deactivate stops them after the running inspection, cleanup frees the model;
`autostart` (default) does configure + activate at start-up (docs/ros.md "Lifecycle").
Every frame is counted: in an inspection, under one drop reason, or pending (inspection/diagnostics.py, which also
decides what is logged and the diagnostics level). Parameters: ros/params.py. Everything that is not message
conversion or wiring lives in odd_one_out_ros.inspection (pure, unit-tested).
Topics, parameters, the JSON schema, the audit trail and the fault cases: docs/ros.md. Frames: docs/frames.md.
"""
from __future__ import annotations

import json
import queue
import sys
import threading
import time
from copy import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseArray, PoseStamped
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.exceptions import ParameterException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import (
    DurabilityPolicy,
    QoSPolicyKind,
    QoSProfile,
    qos_profile_sensor_data,
    qos_profile_system_default,
)
from rclpy.qos_overriding_options import QoSOverridingOptions
from rclpy.serialization import serialize_message
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Bool, Header, String
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from ..inspection.audit import AuditLog, interrupted_bags, new_run_id, view_bag_path, write_view_bag
from ..inspection.diagnostics import DetectorHealth
from ..inspection.gather import DropQueue, MovingViewSelector, RigGatherer, RigSet
from ..inspection.guard import FiniteGuard, check_finite_result
from ..inspection.overlay import overlay_image
from ..inspection.poses import PoseError, PoseResolver
from ..inspection.report import build_report, validate_report, view_record
from ..resources import DEFAULT_CHECKPOINT, share_dir
from ..sync import ApproximateSync
from ..views import PosedView
from .conversions import (
    IMAGE_ENCODINGS,
    ViewError,
    camera_info_to_camera,
    image_to_rgb,
    posed_view,
    rgb_to_image,
    rigid_to_pose,
    stamp_seconds,
)
from .node_main import run_node
from .outputs import anomaly_poses, diagnostic_status, markers_for
from .params import DetectorParams, declare_params, default_audit_log, read_params

INFO_GRACE_S = 2.0  # images without CameraInfo in a camera's first seconds are dropped without a complaint
POLL_S = 0.05  # the gather thread checks rig-set timeouts this often


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
    missing: list[dict] = field(default_factory=list)  # [{"camera", "reason"}] of the report
    queued: float = 0.0  # time.monotonic() when it was queued for the model

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


class DetectorNode(LifecycleNode):
    """A managed (lifecycle) node. __init__ declares the parameters; configure reads and checks them, loads the
    model and the pose source and opens the audit log; activate subscribes and starts the stages; deactivate stops
    taking frames and lets a running inspection finish (published and audited); cleanup frees the model. With
    `autostart` (default) __init__ configures and activates, and raises ValueError (one line) when that fails."""

    def __init__(self, inspect_fn: Callable | None = None, **kwargs):
        """inspect_fn(views: list[PosedView]) -> InspectionResult replaces the checkpoint's model (tests)."""
        super().__init__("detector", **kwargs)
        # ranges and types are checked here (ParameterException); choices, files and the model on configure
        declare_params(self, DetectorParams, {"audit_log": default_audit_log(self.get_fully_qualified_name())},
                       read=False)
        self._injected = inspect_fn
        self.params: DetectorParams | None = None
        self.inspect_fn: Callable | None = None  # the model (FiniteGuard(Inspector)): loaded on configure
        self.model_info: dict = {}
        self.audit: AuditLog | None = None
        self.transition_error = ""  # why the last configure or activate failed ("" when it did not)
        self._lock = threading.Lock()  # guards health, the pose syncs, the request and the frame counts
        self._stop = threading.Event()  # set: the stages stop (deactivate, shutdown)
        self._stop.set()
        self._active = False  # frames and ~/inspect calls are taken only while active
        self._threads: list[threading.Thread] = []
        self._subs: list = []
        self._timer = None
        self._pubs: list = []
        self._inspect_srv = None
        self._request: Request | None = None
        self._seen_request: Request | None = None
        self._inspection_id = 0
        self._shutdown_logged = False
        self._autostart = bool(self.get_parameter("autostart").value)
        if self._autostart:  # standalone (ros2 run): one line and exit 2 when configure fails (node_main.run_node)
            try:
                if self.trigger_configure() != TransitionCallbackReturn.SUCCESS or \
                        self.trigger_activate() != TransitionCallbackReturn.SUCCESS:
                    self._release()  # the model and the audit log's lock are not kept by a node that did not start
                    raise ValueError(self.transition_error or "the detector could not start")
            finally:
                self._autostart = False

    # ---------------------------------------------------------------------- lifecycle transitions
    def _failed(self, what: str, e: Exception) -> TransitionCallbackReturn:
        """A configure or activate that failed: the one line (logged, or raised by __init__ with autostart)."""
        self.transition_error = str(e) if isinstance(e, (ValueError, ParameterException)) else \
            f"{type(e).__name__}: {e}"
        if not self._autostart:
            self._log().error(f"{what} failed: {self.transition_error}")
        return TransitionCallbackReturn.FAILURE

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._configure()
        except Exception as e:  # a bad parameter or file: FAILURE (stays unconfigured) with one line
            self._release()
            return self._failed("configure", e)
        self.transition_error = ""
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        super().on_activate(state)  # enables the lifecycle publishers
        try:
            self._activate()
        except Exception as e:  # e.g. a bad qos_overrides.* value: FAILURE (stays inactive)
            self._deactivate()
            super().on_deactivate(state)
            return self._failed("activate", e)
        self.transition_error = ""
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivate()  # a running inspection is published before the publishers are disabled
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivate()
        self._release()
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """A transition raised (a bug): stop everything and free the model; SUCCESS = back to unconfigured."""
        self._log().error(f"error in a transition from {state.label}: stopping and freeing the model")
        try:
            self._deactivate()
        finally:
            self._release()
        return TransitionCallbackReturn.SUCCESS

    def _configure(self) -> None:
        """Read and check the parameters, load the pose source and the model, open the audit log, create the
        publishers and ~/inspect. Raises ValueError (ParameterException) with one clear line."""
        p = self.params = read_params(self, DetectorParams)
        self.prefix, self.pose_source, self.mode, self.trigger = p.camera_prefix, p.pose_source, p.mode, p.trigger
        self.frame_id, self.min_views = p.frame_id, p.min_views
        if not self.frame_id:
            raise ValueError("parameter frame_id must not be empty")
        self.resolver = PoseResolver.create(
            self.pose_source, p.rig_file or str(share_dir() / "calibration" / "rig.yaml"),
            p.board_file or str(share_dir() / "calibration" / "tray_board_12tags.yaml"),
            p.max_reprojection_error_px, p.min_tags)
        cameras = p.cameras
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
        if self._injected is None:
            self.inspect_fn, self.threshold, self.model_info = self._load_model(p.checkpoint, p.device,
                                                                                p.anomaly_threshold)
        else:
            self.inspect_fn = self._injected
            self.threshold = p.anomaly_threshold if p.anomaly_threshold >= 0 else 0.5
            self.model_info = {"checkpoint": None, "injected": True}
        self.audit = AuditLog(p.audit_log, node=self.get_fully_qualified_name()) if p.audit_log else None
        self.run_id = self.audit.run_id if self.audit else new_run_id()
        if self.audit is not None and self.audit.fenced:
            self.get_logger().warning(f"audit log {self.audit.path}: {self.audit.fenced} (a crash while writing) "
                                      "was fenced off; earlier records are intact, new ones start on a new line")
        self.record_dir = p.record_views_dir
        left = interrupted_bags(self.record_dir) if self.record_dir else []
        if left:
            self.get_logger().warning(
                f"{len(left)} interrupted view bag(s) in {self.record_dir}/partial (a detector stopped while writing "
                f"them; not readable, their inspections were never recorded or published): {', '.join(left[:3])}"
                + (" ..." if len(left) > 3 else ""))
        if self.audit is not None:  # ids stay unique within the audit log (without one: within this process)
            self._inspection_id = max(self._inspection_id, self.audit.last_id)

        # ------------------------------------------------------------------ state shared by the stages
        self._infos: dict[str, CameraInfo] = {}
        self.health = DetectorHealth(self.cameras, self.min_views if self.mode == "rig" else 1, p.camera_timeout,
                                     time.monotonic())
        self._new_gather_state()

        # ------------------------------------------------------------------ outputs (published only while active)
        # qos_overrides.<topic>.<publisher|subscription>.<policy> parameters (docs/ros.md)
        self._overridable = QoSOverridingOptions([QoSPolicyKind.HISTORY, QoSPolicyKind.DEPTH,
                                                  QoSPolicyKind.RELIABILITY, QoSPolicyKind.DURABILITY])
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        def pub(typ, topic, qos_profile, **kw):  # no QoS event handlers: see _activate (cleanup destroys these)
            return self.create_lifecycle_publisher(typ, topic, qos_profile, **kw,
                                                   event_callbacks=PublisherEventCallbacks(use_default_callbacks=False))

        self.pub_markers = pub(MarkerArray, "~/markers", copy(latched), qos_overriding_options=self._overridable)
        self.pub_anomalies = pub(PoseArray, "~/anomalies", copy(latched), qos_overriding_options=self._overridable)
        self.pub_flag = pub(Bool, "~/anomaly_detected", copy(latched), qos_overriding_options=self._overridable)
        self.pub_overlay = pub(Image, "~/overlay", copy(latched), qos_overriding_options=self._overridable)
        self.pub_detections = pub(String, "~/detections", 10, qos_overriding_options=self._overridable)
        self.pub_diag = pub(DiagnosticArray, "/diagnostics", 10)
        self._pubs = [self.pub_markers, self.pub_anomalies, self.pub_flag, self.pub_overlay, self.pub_detections,
                      self.pub_diag]
        self._inspect_srv = self.create_service(Trigger, "~/inspect", self._on_inspect,
                                                callback_group=ReentrantCallbackGroup())
        self.get_logger().info(
            f"{len(self.cameras)} camera(s) {self.cameras} on {self.prefix}/<camera>/, poses: {self.pose_source}, "
            f"mode: {self.mode}, trigger: {self.trigger}, frame: {self.frame_id}, model: "
            f"{self.model_info.get('checkpoint') or 'injected'}, audit log: {p.audit_log or 'off'}, run {self.run_id}"
            + (f", inspection ids from {self._inspection_id + 1}" if self._inspection_id else ""))

    def _new_gather_state(self) -> None:
        """Empty queues, gatherers and pose syncs (at configure, and after deactivate discarded what they held)."""
        p, now = self.params, time.monotonic()
        self.selector = (MovingViewSelector(p.views_required, p.min_view_angle_deg, p.max_view_age)
                         if self.mode == "moving" else None)
        self.rig_sync = (RigGatherer(self.cameras, p.sync_slop, self.min_views, p.set_timeout, p.camera_timeout, now)
                         if self.mode == "rig" else None)
        self._pose_sync = {c: ApproximateSync(2, slop=p.sync_slop) for c in self.cameras}
        self._frames = DropQueue(max(8, 4 * len(self.cameras)))
        self._sets = DropQueue(p.queue_size)
        self._frames_in_sets = 0  # frames in queued or running view sets
        self._frames_in_gather = 0  # frames taken off the frame queue and not yet placed
        self._first_image: dict[str, float] = {}
        self._poses_seen: set[str] = set()

    def _activate(self) -> None:
        """Subscriptions, the gather and inspect threads, the diagnostics timer."""
        p, now = self.params, time.monotonic()
        with self._lock:  # a new start-up grace: cameras get camera_timeout to deliver (inactive is not "out")
            self.health.restart(now)
        self._stop = stop = threading.Event()  # one per activation: stages of an earlier one never see it cleared
        self._threads = [threading.Thread(target=self._gather_loop, args=(stop,), daemon=True, name="detector-gather"),
                         threading.Thread(target=self._inspect_loop, args=(stop,), daemon=True,
                                          name="detector-inspect")]
        for t in self._threads:
            t.start()
        # a copy per entity below: QoS overriding changes the profile it is given, which must not leak to the next
        qos = {"sensor_data": qos_profile_sensor_data, "reliable": QoSProfile(depth=10),
               "system_default": qos_profile_system_default}[p.image_qos]
        # no QoS event handlers: rclpy's MultiThreadedExecutor can be adding one to a wait set in another thread
        # while deactivate destroys its subscription, and then dies (InvalidHandle); the subscription handles
        # themselves are guarded by rclpy
        def sub(typ, topic, cb):
            self._subs.append(self.create_subscription(
                typ, topic, cb, copy(qos), qos_overriding_options=self._overridable,
                event_callbacks=SubscriptionEventCallbacks(use_default_callbacks=False)))

        for cam in self.cameras:
            base = f"{self.prefix}/{cam}" if self.prefix else cam
            sub(Image, f"{base}/image_raw", lambda m, c=cam: self._on_image(c, m))
            sub(CameraInfo, f"{base}/camera_info", lambda m, c=cam: self._on_info(c, m))
            if self.pose_source == "topic":
                sub(PoseStamped, f"{base}/pose", lambda m, c=cam: self._on_pose(c, m))
        self._timer = self.create_timer(p.diagnostics_period, self._publish_diagnostics)
        with self._lock:
            self._active = True
        self.get_logger().info(f"active: inspecting {', '.join(self.cameras)}")

    def _deactivate(self, wait: float | None = None) -> None:
        """Stop taking frames; the running inspection finishes (audited and published: the publishers are still
        enabled), view sets not yet started and frames still gathering are dropped (counted); a waiting ~/inspect
        call is answered. Idempotent. wait: seconds to wait for the stages (None: as long as the model takes)."""
        with self._lock:
            was_active, self._active = self._active, False
        for s in self._subs:
            self.destroy_subscription(s)
        self._subs = []
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None
        self._stop.set()
        for t in self._threads:
            t.join(timeout=wait)
        still = any(t.is_alive() for t in self._threads)  # destroy_node's bounded wait ran out (shutdown only)
        self._threads = []
        if not was_active or still:
            return
        with self._lock:
            pending = self.pending_frames()
        self._drop("inactive", pending)
        self._new_gather_state()
        with self._lock:
            req, self._request = self._request, None
        if req is not None:
            req.error = "the detector was deactivated"
            req.done.set()
        if self.context.ok():
            try:
                self._publish_diagnostics()  # the counts as they stand when it stops
            except Exception:  # a context shut down meanwhile: nothing to report to
                pass
            self.get_logger().info("inactive: no frames are taken until activated again")

    def _release(self) -> None:
        """Undo configure: the outputs and ~/inspect go, the model is freed, the audit log closed. Idempotent."""
        if self._inspect_srv is not None:
            self.destroy_service(self._inspect_srv)
            self._inspect_srv = None
        for pub in self._pubs:
            self.destroy_lifecycle_publisher(pub)
        self._pubs = []
        model, self.inspect_fn, self.model_info, self.resolver = self.inspect_fn, None, {}, None
        if model is not None and self._injected is None and self.params is not None \
                and self.params.device.startswith("cuda"):
            import gc

            import torch

            del model
            gc.collect()  # the guard's hooks hold the network in a reference cycle
            torch.cuda.empty_cache()
        if self.audit is not None:
            problem = self.audit.close()  # never raises (e.g. on a full disk): one line instead
            self.audit = None
            if problem:
                self._log().error(problem)

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

    # ---------------------------------------------------------------------- failures: counted, logged when new
    def _now_ros(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _drop(self, reason: str, n: int = 1, camera: str = "", message: str = "", fault: bool = True) -> None:
        """Count n frames as dropped for `reason` (inspection/diagnostics.DROP_REASONS); log camera errors when new."""
        with self._lock:
            line = self.health.drop(reason, time.monotonic(), n, camera, message, fault)
        if line:
            self._log().error(line)

    # ---------------------------------------------------------------------- callbacks (cheap)
    def _on_info(self, cam: str, msg: CameraInfo) -> None:
        self._infos[cam] = msg

    def _on_image(self, cam: str, msg: Image) -> None:
        if not self._active:  # a message delivered while the subscription was being destroyed
            return
        now = time.monotonic()
        with self._lock:
            self.health.frame(cam, now)
        if msg.encoding.lower() not in IMAGE_ENCODINGS:
            self._drop("encoding", 1, cam, f"unsupported image encoding {msg.encoding!r}; supported: "
                       f"{', '.join(IMAGE_ENCODINGS)}")
            return
        stamp = stamp_seconds(msg)
        skew = stamp - self._now_ros()
        if self.params.max_clock_skew > 0 and abs(skew) > self.params.max_clock_skew:
            what = ("is unset (0)" if stamp == 0 else
                    f"is {abs(skew):.1f} s {'ahead of' if skew > 0 else 'behind'} this node's clock")
            self._drop("clock_skew", 1, cam, f"image stamp {what} (max_clock_skew {self.params.max_clock_skew} s): "
                       "dropping it; check the camera's time sync (PTP / NTP) or use_sim_time")
            return
        first = self._first_image.setdefault(cam, now)
        info = self._infos.get(cam)
        if info is None:  # at start-up the first images may overtake the first CameraInfo: no fault then
            self._drop("camera_info", 1, cam, f"no CameraInfo received yet on {self.prefix}/{cam}/camera_info; "
                       "dropping its images until one arrives", fault=now - first >= INFO_GRACE_S)
            return
        with self._lock:
            self.health.arrival_ok(cam, now)
        frame = Frame(cam, msg, info, stamp, now)
        if self.pose_source != "topic":
            self._put_frame(frame)
            return
        self._pair_pose(cam, 0, stamp, frame)

    def _on_pose(self, cam: str, msg: PoseStamped) -> None:
        if not self._active:
            return
        self._poses_seen.add(cam)
        self._pair_pose(cam, 1, stamp_seconds(msg), msg)

    def _pair_pose(self, cam: str, stream: int, stamp: float, msg) -> None:
        sync = self._pose_sync[cam]
        with self._lock:
            before = sync.dropped_by_stream[0]
            match = sync.add(stream, stamp, msg)
            lost = sync.dropped_by_stream[0] - before
        if lost:
            self._pose_lost(cam, lost)
        if match:
            match[0].pose = match[1]
            self._put_frame(match[0])

    def _pose_lost(self, cam: str, n: int) -> None:
        topic = f"{self.prefix}/{cam}/pose"
        self._drop("pose", n, cam, f"no PoseStamped within sync_slop {self.params.sync_slop} s of its image on "
                   f"{topic}" if cam in self._poses_seen else f"no PoseStamped received on {topic}")

    def _put_frame(self, frame: Frame) -> None:
        if self._frames.put(frame) is not None:
            self._drop("frame_queue")

    def _on_inspect(self, request, response):
        req = Request(after=self._now_ros())
        with self._lock:
            active, busy = self._active, self._request is not None
            if active and not busy:
                self._request = req
        if not active:
            response.success, response.message = False, "the detector is not active (lifecycle state)"
            return response
        if busy:
            response.success, response.message = False, "another ~/inspect call is waiting; try again later"
            return response
        ok = req.done.wait(self.params.inspect_timeout)
        with self._lock:
            if self._request is req:
                self._request = None
        if not ok:
            now = time.monotonic()
            with self._lock:
                out = {c: self.health.why_out(c, now) for c in self.cameras if self.health.camera_out(c, now)}
            response.success = False
            response.message = (f"no inspection within {self.params.inspect_timeout} s"
                                + (f"; cameras out: {out}" if out else ""))
        elif req.error:
            response.success, response.message = False, req.error
        else:
            response.success, response.message = True, json.dumps(req.report)
        return response

    # ---------------------------------------------------------------------- gather thread
    def _gather_loop(self, stop: threading.Event) -> None:
        last_tick = 0.0
        while not stop.is_set():
            try:
                frame = self._frames.get(timeout=POLL_S)
                with self._lock:
                    self._frames_in_gather = 1
            except queue.Empty:
                frame = None
            try:
                if frame is not None:
                    self._gather(frame)
                if time.monotonic() - last_tick >= POLL_S:
                    last_tick = time.monotonic()
                    self._tick(last_tick)
            except Exception as e:  # never let the thread die: a bug, not a bad input; count it, log it, carry on
                with self._lock:
                    self.health.gather_error(f"{type(e).__name__}: {e}", time.monotonic())
                if frame is not None:  # (a bug in the gatherer itself: the frame may be lost)
                    self._drop("gather_error")
                self._log().error(f"gather stage failed: {type(e).__name__}: {e}")
            finally:
                with self._lock:
                    self._frames_in_gather = 0

    def _tick(self, now: float) -> None:
        """Timeouts: rig sets that waited set_timeout; images that waited as long for their pose message."""
        if self.rig_sync is not None:
            self._rig(lambda: self.rig_sync.poll(now))
        if self.pose_source == "topic":
            for cam, sync in self._pose_sync.items():
                with self._lock:
                    lost = sync.prune(0, lambda f: now - f.received < self.params.set_timeout)
                if lost:
                    self._pose_lost(cam, lost)

    def _idle(self, frame: Frame) -> bool:
        """trigger service: True (frame dropped) while no ~/inspect call waits for views this new."""
        if self.trigger != "service":
            return False
        req = self._request
        if req is None or frame.stamp < req.after:
            return True
        if req is not self._seen_request:  # a new request: start collecting afresh
            self._seen_request = req
            if self.selector is not None:
                self._drop("not_requested", self.selector.reset())
        return False

    def _gather(self, frame: Frame) -> None:
        if self._idle(frame):
            self._drop("not_requested")
            return
        if self.rig_sync is not None:
            self._rig(lambda: self.rig_sync.add(frame.camera, frame.stamp, frame, time.monotonic()))
            return
        g = self._view(frame)
        if g is None:
            return
        s = self.selector
        close, expired = s.too_close, s.expired
        chosen = s.add(g, g.view.camera.center, g.view.stamp, self._now_ros())
        self._drop("too_close", s.too_close - close)
        self._drop("expired", s.expired - expired)
        if chosen:
            self._queue_set(ViewSet(chosen))

    def _rig(self, step: Callable[[], list[RigSet]]) -> None:
        """One add or poll of the rig gatherer: frames it dropped are counted, the sets it made are converted."""
        before, overtaken = self.rig_sync.dropped, self.rig_sync.superseded
        sets = step()
        self._drop("unmatched", self.rig_sync.dropped - before)
        self._drop("superseded", self.rig_sync.superseded - overtaken)
        for rs in sets:
            items, missing = [], []
            now = time.monotonic()
            for cam in self.cameras:
                if cam in rs.items:
                    g = self._view(rs.items[cam])
                    if g is not None:
                        items.append(g)
                        continue
                with self._lock:
                    missing.append({"camera": cam, "reason": self.health.why_out(cam, now) or "no usable view"})
            if len(items) < self.min_views:
                self._drop("incomplete_set", len(items))
                continue
            self._queue_set(ViewSet(items, missing))

    def _queue_set(self, vs: ViewSet) -> None:
        vs.queued = time.monotonic()
        with self._lock:
            self._frames_in_sets += len(vs.items)
        old = self._sets.put(vs)
        if old is not None:
            with self._lock:
                self._frames_in_sets -= len(old.items)
            self._drop("busy", len(old.items))

    def _view(self, frame: Frame) -> GatheredView | None:
        """Frame -> posed view, or None (counted and logged) when its image, intrinsics or pose is unusable."""
        cam, image, info = frame.camera, frame.image, frame.info
        extra, rgb = {}, None
        try:
            if self.pose_source == "topic":
                if frame.pose.header.frame_id and frame.pose.header.frame_id != self.frame_id:
                    raise PoseError(f"pose is in frame {frame.pose.header.frame_id!r}, not {self.frame_id!r} "
                                    "(no tf here: publish poses in the world frame)")
                pose = frame.pose
            else:
                if self.pose_source == "apriltag":
                    try:
                        rgb = image_to_rgb(image)
                    except ValueError as e:
                        raise ViewError("image", f"{cam}: {e}") from None
                    try:
                        intrinsics = camera_info_to_camera(info, source=f"{cam}/camera_info")
                    except ValueError as e:
                        raise ViewError("camera_info", str(e)) from None
                    T_cw, extra = self.resolver.resolve(cam, rgb, intrinsics)
                else:
                    T_cw, extra = self.resolver.resolve(cam, None, None)
                pose = PoseStamped()
                pose.header.stamp, pose.header.frame_id = image.header.stamp, self.frame_id
                pose.pose = rigid_to_pose(T_cw.inverse())
            view = posed_view(image, info, pose, cam, rgb)  # the same conversion as odd-one-out replay
        except PoseError as e:
            self._drop("pose", 1, cam, f"no camera pose: {e}")
            return None
        except ViewError as e:
            self._drop(e.kind, 1, cam, f"unusable {e.kind.replace('_', ' ')}: {str(e).removeprefix(cam + ': ')}")
            return None
        except Exception as e:  # a bug (e.g. in a library), not a bad input: counted, logged, the set goes on
            self._drop("gather_error", 1, cam, f"making its view failed: {type(e).__name__}: {e}")
            return None
        with self._lock:
            self.health.view_ok(cam, time.monotonic())
        return GatheredView(view, view_record(view, self.pose_source, **extra), (image, info, pose), frame.received)

    # ---------------------------------------------------------------------- worker thread
    def _inspect_loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                vs = self._sets.get(timeout=0.1)
            except queue.Empty:
                continue
            try:
                if stop.is_set():  # deactivated while this set waited: not inspected (counted)
                    self._drop("inactive", len(vs.items))
                    continue
                self._inspect(vs)
            except Exception as e:  # never let the thread die
                with self._lock:
                    self.health.inspection_failed(len(vs.items), f"{type(e).__name__}: {e}", time.monotonic())
                self._log().error(f"inspection stage failed: {type(e).__name__}: {e}")
            finally:
                with self._lock:
                    self._frames_in_sets -= len(vs.items)

    def _inspect(self, vs: ViewSet) -> None:
        req = self._request
        n = len(vs.items)
        if self.trigger == "service" and (req is None or vs.stamp < req.after):
            self._drop("not_requested", n)
            return
        views = [g.view for g in vs.items]
        waited = time.monotonic() - vs.queued  # for the model to finish the previous set
        t0 = time.perf_counter()
        try:
            result = self.inspect_fn(views)
            check_finite_result(result)  # NaN / inf anywhere: an error, never an all-clear
            inference = time.perf_counter() - t0
            self._inspection_id += 1
            report = build_report(
                inspection_id=self._inspection_id, stamp=vs.stamp, frame_id=self.frame_id, objects=result.objects,
                threshold=self.threshold, views=[g.record for g in vs.items], missing_views=vs.missing,
                latency={"inference": inference, "waited": waited, "pipeline": time.monotonic() - vs.received},
                model=self.model_info, node=self.get_fully_qualified_name())
            validate_report(json.loads(json.dumps(report, allow_nan=False)))
        except Exception as e:
            msg = f"inspection of {n} views failed: {type(e).__name__}: {e}"
            with self._lock:
                self.health.inspection_failed(n, msg, time.monotonic())
            self._log().error(msg)
            self._finish_request(vs, None, msg)
            return
        newest = max(vs.items, key=lambda g: g.view.stamp)
        header = Header(stamp=newest.messages[0].header.stamp, frame_id=self.frame_id)
        recorded = self._audit(vs, report)  # before publishing: no decision without its record
        try:
            self._publish(report, result, views, header)
        except Exception as e:
            if not self._shutting_down():  # recorded but not published: an error, said once, the caller answered
                msg = (f"inspection {report['inspection_id']} could not be published: {type(e).__name__}: {e}"
                       + (" (it is in the audit log)" if recorded else ""))
                with self._lock:
                    self.health.inspection_failed(n, msg, time.monotonic())
                self._log().error(msg)
                self._finish_request(vs, None, msg)
                return
            if not self._shutdown_logged:  # Ctrl-C during an inspection: the context is gone, say so in one line
                self._shutdown_logged = True
                self._log().warning(f"shutting down: inspection {report['inspection_id']} was not published"
                                    + (" (it is in the audit log)" if recorded else ""))
            self._drop("inspection_failed", n)
            self._finish_request(vs, None, "the detector is shutting down")
            return
        published = time.monotonic() - vs.received  # last view's arrival -> markers out
        with self._lock:
            self.health.inspection_ok(n, {"inference": inference, "waited": waited, "pipeline": published},
                                      report["n_objects"], report["n_anomalous"], [m["camera"] for m in vs.missing])
        self._finish_request(vs, report, "")

    def _shutting_down(self) -> bool:
        return self._stop.is_set() or not self.context.ok()

    def _publish(self, report: dict, result, views: list[PosedView], header: Header) -> None:
        objects = report["objects"]
        self.pub_markers.publish(markers_for(objects, header))
        self.pub_anomalies.publish(anomaly_poses(objects, header))
        self.pub_flag.publish(Bool(data=report["anomaly_detected"]))
        self.pub_detections.publish(String(data=json.dumps(report)))
        if self.params.overlay_max_views:
            try:
                sheet = overlay_image(views, [o.box for o in result.objects], [o.score for o in result.objects],
                                      [o["label"] == "anomalous" for o in objects], self.params.overlay_max_views)
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
                keys = ("/views/image", "/views/camera_info", "/views/pose")
                views = [{k: serialize_message(m) for k, m in zip(keys, g.messages)} for g in vs.items]
                bag = write_view_bag(view_bag_path(self.record_dir, report["stamp"], report["inspection_id"]), views,
                                     serialize_message(String(data=json.dumps(report))),
                                     int(round(report["stamp"] * 1e9)))
            except Exception as e:  # a full disk must not stop inspections; it shows in diagnostics
                with self._lock:
                    self.health.audit_error(f"view bag: {e}", time.monotonic())
                self._log().error(f"cannot write the view bag of inspection {report['inspection_id']}: {e}")
        if self.audit is not None:
            try:
                self.audit.append({**report, "bag": str(bag) if bag else None})
                return True
            except (OSError, ValueError) as e:
                with self._lock:
                    self.health.audit_error(f"audit log: {e}", time.monotonic())
                self._log().error(f"cannot append to the audit log {self.audit.path}: {e}")
        return False

    # ---------------------------------------------------------------------- diagnostics
    def pending_frames(self) -> int:
        """Frames held anywhere between arrival and the end of their inspection (call under self._lock)."""
        n = self._frames.qsize() + self._frames_in_gather + self._frames_in_sets
        n += sum(s.pending(0) for s in self._pose_sync.values()) if self.pose_source == "topic" else 0
        n += self.rig_sync.pending if self.rig_sync is not None else 0
        return n + (len(self.selector) if self.selector is not None else 0)

    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        extra = {"run_id": self.run_id}
        if self.selector is not None:
            extra["views_collected"] = len(self.selector)
        with self._lock:
            level, message, values = self.health.status(now, self.pending_frames(), extra)
        status = diagnostic_status(f"{self.get_name()}: odd-one-out detector", self.get_fully_qualified_name(),
                                   level, message, values)
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(msg)

    # ---------------------------------------------------------------------- shutdown
    def destroy_node(self):  # also called by rclpy on a node whose __init__ failed half way
        """Whatever the state: stop the stages (a running inspection gets 10 s to finish), free the model, close
        the audit log. (Ctrl-C: the context is already shut down, so no shutdown transition can be published.)"""
        if hasattr(self, "_threads"):
            self._deactivate(wait=10)
            self._release()
        return super().destroy_node()


def main(args=None) -> int:
    return run_node(DetectorNode, "detector", args, threads=3)


if __name__ == "__main__":
    sys.exit(main())
