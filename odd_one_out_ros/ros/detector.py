"""ROS 2 node `detector`: gathers posed views of the tray, runs the Odd-One-Out model, publishes the result.

The ROS wiring of inspection/pipeline.py (the stages: callbacks -> gather thread -> inspect thread, what is counted
and logged): parameters (ros/params.py), lifecycle, subscriptions, publishers, the ~/inspect service, threads.
A lifecycle node: configure loads and checks (parameters, pose source, checkpoint, audit log), activate starts the
subscriptions and both threads, deactivate stops them after the running inspection, cleanup frees the model;
`autostart` (default) does configure + activate at start-up (docs/ros.md "Lifecycle").
Topics, parameters, the JSON schema, the audit trail and the fault cases: docs/ros.md. Frames: docs/frames.md.
"""
from __future__ import annotations

import sys
import threading
import time
from copy import copy
from typing import Callable

from geometry_msgs.msg import PoseStamped
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.exceptions import ParameterException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import QoSPolicyKind, QoSProfile, qos_profile_sensor_data, qos_profile_system_default
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CameraInfo, Image
from std_srvs.srv import Trigger

from ..inspection.audit import AuditLog, new_run_id
from ..inspection.loader import free_cuda, node_model
from ..inspection.pipeline import Pipeline, PipelineIO, audit_warnings, rig_cameras
from ..inspection.poses import PoseResolver
from ..resources import share_dir
from .node_main import log_at, node_logger, run_node
from .params import DetectorParams, declare_params, default_audit_log, keep_parameter, read_params
from .publishers import DetectorPublishers, FaultStatus

INSPECT_QUEUE = 1000  # ~/inspect requests DDS keeps until the node takes them


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
        self.pipeline: Pipeline | None = None  # the stages and their state: made on configure
        self.inspect_fn: Callable | None = None  # the model (FiniteGuard(Inspector)): loaded on configure
        self.audit: AuditLog | None = None
        self.transition_error = ""  # why the last configure or activate failed ("" when it did not)
        self._stop = threading.Event()  # set: the stages stop (deactivate, shutdown)
        self._stop.set()
        self._threads: list[threading.Thread] = []
        self._subs: list = []
        self._timer = None
        self.outputs: DetectorPublishers | None = None
        self._last_id = 0  # inspection ids go on across reconfigures
        # rclpy's own use_sim_time is not read-only; the clock the stamps are checked against must not change here
        keep_parameter(self, "use_sim_time", "its stamps are checked against that clock")
        # ~/inspect lives as long as the node (answered false unless active): no transition destroys it under a call
        # being answered; its queue holds every caller (DDS's default of 10 dropped the rest unanswered)
        self._inspect_srv = self.create_service(Trigger, "~/inspect", self._on_inspect,
                                                qos_profile=QoSProfile(depth=INSPECT_QUEUE),
                                                callback_group=ReentrantCallbackGroup())
        self._own_threshold = 0.5  # the checkpoint's own anomaly threshold (anomaly_threshold -1)
        self._fault = FaultStatus(self)  # a failed configure / activate: said on /diagnostics
        self.add_post_set_parameters_callback(self._apply)
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
        """A configure or activate that failed: the one line (logged, or raised by __init__ with autostart), and
        /diagnostics ERROR with it until a configure succeeds."""
        self.transition_error = str(e) if isinstance(e, (ValueError, ParameterException)) else \
            f"{type(e).__name__}: {e}"
        if not self._autostart:
            self._log().error(f"{what} failed: {self.transition_error}")
            self._fault.set(f"{what} failed: {self.transition_error}")
        return TransitionCallbackReturn.FAILURE

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._configure()
        except Exception as e:  # a bad parameter or file: FAILURE (stays unconfigured) with one line
            self._release()
            return self._failed("configure", e)
        self.transition_error = ""
        self._fault.clear()
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
        self._fault.clear()
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivate()  # a running inspection is published before the publishers are disabled
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._fault.clear()
        self._deactivate(why="the detector is shutting down")
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
        if not p.frame_id:
            raise ValueError("parameter frame_id must not be empty")
        resolver = PoseResolver.create(
            p.pose_source, p.rig_file or str(share_dir() / "calibration" / "rig.yaml"),
            p.board_file or str(share_dir() / "calibration" / "tray_board_12tags.yaml"),
            p.max_reprojection_error_px, p.min_tags, p.frame_id,
            (p.rig_tolerance_m, p.rig_tolerance_deg) if p.rig_check else None, p.rig_check_period)
        self.cameras = rig_cameras(p, resolver)
        self.inspect_fn, self._own_threshold, model_info = node_model(p.checkpoint, p.device, self._injected)
        threshold = p.anomaly_threshold if p.anomaly_threshold >= 0 else self._own_threshold
        self.audit = AuditLog(p.audit_log, node=self.get_fully_qualified_name()) if p.audit_log else None
        self.run_id = self.audit.run_id if self.audit else new_run_id()
        for line in audit_warnings(self.audit, p.record_views_dir):
            self.get_logger().warning(line)

        # outputs (published only while active); qos_overrides.<topic>.<publisher|subscription>.<policy> (docs/ros.md)
        self._overridable = QoSOverridingOptions([QoSPolicyKind.HISTORY, QoSPolicyKind.DEPTH,
                                                  QoSPolicyKind.RELIABILITY, QoSPolicyKind.DURABILITY])
        self.outputs = out = DetectorPublishers(self, p.frame_id, p.overlay_max_views, self._overridable, self._log,
                                                static_poses=p.pose_source == "static", target_frame=p.target_frame)
        io = PipelineIO(log=lambda level, line: log_at(self._log(), level, line),
                        ros_now=lambda: self.get_clock().now().nanoseconds * 1e-9,
                        publish=out.inspection, bag_messages=out.bag_messages, bag_report=out.bag_report,
                        shutting_down=lambda: self._stop.is_set() or not self.context.ok(),
                        frame_problem=out.frame_problem)
        self.pipeline = Pipeline(p, self.cameras, resolver, self.inspect_fn, threshold, model_info, self.audit,
                                 self.get_fully_qualified_name(), io, self._last_id)
        first = self.pipeline.inspection_id
        self.get_logger().info(
            f"{len(self.cameras)} camera(s) {self.cameras} on {p.camera_prefix}/<camera>/, poses: {p.pose_source}, "
            f"mode: {p.mode}, trigger: {p.trigger}, frame: {p.frame_id}"
            + (f" (verdicts in {p.target_frame})" if p.target_frame else "") + ", model: "
            f"{model_info.get('checkpoint') or 'injected'}, audit log: {p.audit_log or 'off'}, run {self.run_id}"
            + (f", inspection ids from {first + 1}" if first else ""))

    def _activate(self) -> None:
        """Subscriptions, the gather and inspect threads, the diagnostics timer."""
        p, pipe = self.params, self.pipeline
        pipe.health.restart(time.monotonic())  # a new start-up grace: cameras get camera_timeout to deliver
        self._stop = stop = threading.Event()  # one per activation: stages of an earlier one never see it cleared
        self._threads = [threading.Thread(target=pipe.gather_loop, args=(stop,), daemon=True, name="detector-gather"),
                         threading.Thread(target=pipe.inspect_loop, args=(stop,), daemon=True,
                                          name="detector-inspect")]
        for t in self._threads:
            t.start()
        # a copy per entity below: QoS overriding changes the profile it is given, which must not leak to the next
        qos = {"sensor_data": qos_profile_sensor_data, "reliable": QoSProfile(depth=10),
               "system_default": qos_profile_system_default}[p.image_qos]

        # no QoS event handlers: rclpy's MultiThreadedExecutor can be adding one to a wait set in another thread
        # while deactivate destroys its entity, and then dies (InvalidHandle); the handles themselves are guarded
        def sub(typ, topic, cb):
            self._subs.append(self.create_subscription(
                typ, topic, cb, copy(qos), qos_overriding_options=self._overridable,
                event_callbacks=SubscriptionEventCallbacks(use_default_callbacks=False)))

        for cam in self.cameras:
            base = f"{p.camera_prefix}/{cam}" if p.camera_prefix else cam
            sub(Image, f"{base}/image_raw", lambda m, c=cam: pipe.on_image(c, m))
            sub(CameraInfo, f"{base}/camera_info", lambda m, c=cam: pipe.on_info(c, m))
            if p.pose_source == "topic":
                sub(PoseStamped, f"{base}/pose", lambda m, c=cam: pipe.on_pose(c, m))
        # on the steady clock: diagnostics keep coming when ROS time stands still (use_sim_time with no /clock)
        self._timer = self.create_timer(p.diagnostics_period, self._publish_diagnostics,
                                        clock=Clock(clock_type=ClockType.STEADY_TIME))
        pipe.set_active(True)
        self.get_logger().info(f"active: inspecting {', '.join(self.cameras)}")

    def _deactivate(self, wait: float | None = None, why: str = "the detector was deactivated") -> None:
        """Stop taking frames; the running inspection finishes (audited and published: the publishers are still
        enabled), view sets not yet started and frames still gathering are dropped (counted); a waiting ~/inspect
        call is answered (`why`). Idempotent. wait: seconds to wait for the stages (None: as long as it takes)."""
        was_active = self.pipeline is not None and self.pipeline.set_active(False)
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
        self.pipeline.stop(why)
        if self.context.ok():
            try:
                self.pipeline.publish_inactive(why)  # a verdict that replaces the last tray's: no stale reject
                self._publish_diagnostics()  # the counts as they stand when it stops
            except Exception:  # a context shut down meanwhile: nothing to report to
                pass
            self.get_logger().info("inactive: no frames are taken until activated again")

    def _release(self) -> None:
        """Undo configure: the outputs go, the model is freed, the audit log closed. Idempotent."""
        if self.outputs is not None:
            self.outputs.destroy()
            self.outputs = None
        if self.pipeline is not None:
            self._last_id = self.pipeline.inspection_id
        had_model, self.inspect_fn, self.pipeline = self.inspect_fn is not None, None, None
        if had_model and self._injected is None and self.params is not None:
            free_cuda(self.params.device)
        if self.audit is not None:
            problem = self.audit.close()  # never raises (e.g. on a full disk): one line instead
            self.audit = None
            if problem:
                self._log().error(problem)

    def _log(self):
        return node_logger(self)

    def _apply(self, params) -> None:
        """A run-time change of anomaly_threshold (rclpy checked its range): from the next inspection on, logged."""
        for prm in params:
            if prm.name == "anomaly_threshold" and self.pipeline is not None:
                self.get_logger().info(self.pipeline.set_threshold(float(prm.value), self._own_threshold))

    # ---------------------------------------------------------------------- service and outputs
    def _on_inspect(self, request, response):
        pipe = self.pipeline
        response.success, response.message = pipe.inspect_call() if pipe is not None else \
            (False, "the detector is not active (lifecycle state)")
        return response

    def _publish_diagnostics(self) -> None:
        self.outputs.diagnostics(*self.pipeline.diagnostics({"run_id": self.run_id}))

    def answer_waiting_calls(self, why: str) -> None:
        """Answer the waiting ~/inspect calls now, refuse new ones (run_node, on SIGINT / SIGTERM)."""
        if self.pipeline is not None:
            self.pipeline.answer_waiting(why, refuse_new=True)

    def executor_threads(self) -> int:
        """Threads its executor needs: one per waiting ~/inspect call, and three for everything else."""
        return int(self.get_parameter("max_waiting_calls").value) + 3

    def destroy_node(self):  # also called by rclpy on a node whose __init__ failed half way
        """Whatever the state: stop the stages (a running inspection gets 10 s to finish), free the model, close
        the audit log. (Ctrl-C: the context is already shut down, so no shutdown transition can be published.)"""
        if hasattr(self, "_threads"):
            self._deactivate(wait=10, why="the detector is shutting down")
            self._release()
        return super().destroy_node()


def main(args=None) -> int:
    return run_node(DetectorNode, "detector", args, threads=DetectorNode.executor_threads)


if __name__ == "__main__":
    sys.exit(main())
