"""The detector's work without ROS: frames in, posed view sets, inspections, the audit trail and the ~/inspect call.

Three stages, so that no callback ever waits for the model (ros/detector.py runs them: the callbacks and two threads):
  intake (callbacks)  nothing heavy: the encoding, the stamp against the node's clock, that a CameraInfo came
                      (pose_source topic: the image paired with its PoseStamped by stamp); the frame is queued;
  gather_loop         rig sets (gather.RigGatherer: a set of >= min_views cameras is inspected without the cameras
                      that are out) or moving-mode selection; each frame made a posed view (poses.PoseResolver);
                      view sets into a bounded queue (oldest dropped and counted);
  inspect_loop        the model (non-finite outputs are errors: guard.py), the view bag and audit record, then
                      publishing (PipelineIO.publish).
Every attempted inspection ends in one verdict (a report, report.py) that replaces the last one: status "ok", or
"cannot_inspect" (a rig set with fewer than min_views usable views, black / saturated / flat / frozen images, no
usable camera at all, a model run that failed, the detector deactivated) or "cannot_compare" (fewer than
min_objects objects), never a pass.
Every frame is counted: in an inspection, under one drop reason, or pending (diagnostics.py). Messages are read by
their fields (odd_one_out_ros.views), so this module imports no ROS package; what needs one comes in PipelineIO.
"""
from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable

from ..sync import ApproximateSync
from ..views import IMAGE_ENCODINGS, PosedView, ViewError, stamp_seconds
from .audit import AuditLog, interrupted_bags, view_bag_path, write_view_bag
from .diagnostics import DetectorHealth
from .gather import DropQueue, MovingViewSelector, RigGatherer, RigSet
from .guard import check_finite_result
from .poses import BuiltView, PoseError, PoseResolver
from .report import build_report, validate_report, view_record

INFO_GRACE_S = 2.0  # images without CameraInfo in a camera's first seconds are dropped without a complaint
POLL_S = 0.05  # the gather thread checks rig-set timeouts this often
BAG_TOPICS = ("/views/image", "/views/camera_info", "/views/pose")  # a view bag's topics, one message each per view


@dataclass
class Frame:
    """One image of one camera with what the callbacks attached to it."""

    camera: str
    image: object  # sensor_msgs/Image
    info: object  # sensor_msgs/CameraInfo
    stamp: float
    received: float  # time.monotonic() on arrival
    pose: object | None = None  # geometry_msgs/PoseStamped (pose_source topic)


@dataclass
class GatheredView:
    built: BuiltView
    frame: Frame  # the messages exactly as used: what the view bag stores
    record: dict  # the report's entry for this view

    @property
    def view(self) -> PosedView:
        return self.built.view


@dataclass
class ViewSet:
    items: list[GatheredView]
    missing: list[dict] = field(default_factory=list)  # [{"camera", "reason"}] of the report
    queued: float = 0.0  # time.monotonic() when it was queued for the model
    blocked: str = ""  # why it cannot be inspected (a verdict "cannot_inspect" without running the model)
    at: float = 0.0  # the node's clock when it was made: the stamp of a set without views

    @property
    def stamp(self) -> float:
        return max((g.view.stamp for g in self.items), default=self.at)

    @property
    def received(self) -> float:
        return max((g.frame.received for g in self.items), default=self.queued)

    @property
    def newest(self) -> GatheredView | None:
        return max(self.items, key=lambda g: g.view.stamp, default=None)


@dataclass
class Request:
    """One call of ~/inspect, waiting for an inspection of views stamped at or after `after`."""

    after: float
    done: threading.Event = field(default_factory=threading.Event)
    report: dict | None = None
    error: str = ""


@dataclass
class PipelineIO:
    """What the pipeline needs from its node."""

    log: Callable[[str, str], None]  # (level: "error" | "warning" | "info", one line)
    ros_now: Callable[[], float]  # the node's clock, seconds
    publish: Callable[[dict, object, "ViewSet"], None]
    """report, result (None when the model did not run), the view set (no view: stamped now)"""
    bag_messages: Callable[[GatheredView], dict]  # {BAG_TOPICS[i]: serialized message} of one view
    bag_report: Callable[[dict], bytes]  # the report as a serialized message of the bag
    shutting_down: Callable[[], bool]  # the stages are being stopped, or the node's context is gone (Ctrl-C)
    frame_problem: Callable[[], str] = lambda: ""  # why outputs cannot be given in target_frame now ("": they can)


class Pipeline:
    """One configured detector's stages and state. p: the node's DetectorParams (ros/params.py); inspect_fn(views)
    -> InspectionResult (e.g. inspection.loader.load_inspector's); audit: an open AuditLog or None; last_id: the
    last inspection id this process gave (ids stay unique within the audit log, without one within the process)."""

    def __init__(self, p, cameras: list[str], resolver: PoseResolver, inspect_fn: Callable, threshold: float,
                 model_info: dict, audit: AuditLog | None, node_name: str, io: PipelineIO, last_id: int = 0):
        self.p, self.cameras, self.resolver, self.io = p, list(cameras), resolver, io
        self.inspect_fn, self.threshold, self.model_info, self.audit = inspect_fn, threshold, model_info, audit
        self.node_name = node_name
        self.min_views = p.min_views if p.mode == "rig" else 1
        self.health = DetectorHealth(self.cameras, self.min_views, p.camera_timeout, time.monotonic(),
                                     log_every=p.error_log_period)
        self.inspection_id = max(last_id, audit.last_id if audit is not None else 0)
        self.active = False  # frames and ~/inspect calls are taken only while active (set_active)
        self._lock = threading.Lock()  # the request, the frames in flight and the pose syncs
        self._requests: list[Request] = []  # waiting ~/inspect calls, oldest first
        self._seen_request: Request | None = None
        self._failing = False  # a failure's own verdict is being published (no second one if that fails too)
        self.refusing = ""  # why every ~/inspect call is answered at once (the node is shutting down)
        self._infos: dict[str, object] = {}
        self._shutdown_logged = False
        self.reset()

    def reset(self) -> None:
        """Empty queues, gatherers and pose syncs (at configure, and after stop() discarded what they held)."""
        p, now = self.p, time.monotonic()
        self.selector = (MovingViewSelector(p.views_required, p.min_view_angle_deg, p.max_view_age)
                         if p.mode == "moving" else None)
        self.rig_sync = (RigGatherer(self.cameras, p.sync_slop, self.min_views, p.set_timeout, p.camera_timeout, now)
                         if p.mode == "rig" else None)
        self._pose_sync = {c: ApproximateSync(2, slop=p.sync_slop) for c in self.cameras}
        self._frames = DropQueue(max(8, 4 * len(self.cameras)))
        self._sets = DropQueue(p.queue_size)
        self._frames_in_sets = 0  # frames in queued or running view sets
        self._frames_in_gather = 0  # frames taken off the frame queue and not yet placed
        self._first_image: dict[str, float] = {}
        self._poses_seen: set[str] = set()
        self._last_digest: dict[str, bytes] = {}  # rig: each camera's last image (frozen cameras)
        self._blind_for: object = None  # what the last verdict on a rig with no usable view answered (a request)

    def set_threshold(self, value: float, own: float) -> str:
        """anomaly_threshold changed while running: value (-1: the checkpoint's `own`) from the next verdict on;
        returns the line to log."""
        old, self.threshold = self.threshold, value if value >= 0 else own
        return (f"anomaly_threshold {old:g} -> {self.threshold:g}" + (" (the checkpoint's own)" if value < 0 else "")
                + ": from the next inspection on")

    def set_active(self, active: bool) -> bool:
        """Start or stop taking frames and ~/inspect calls; returns whether it was active."""
        with self._lock:
            was, self.active = self.active, active
        return was

    # ---------------------------------------------------------------------- counting
    def drop(self, reason: str, n: int = 1, camera: str = "", message: str = "", fault: bool = True) -> None:
        """Count n frames as dropped for `reason` (diagnostics.DROP_REASONS); log camera errors when new."""
        line = self.health.drop(reason, time.monotonic(), n, camera, message, fault)
        if line:
            self.io.log("error", line)

    def pending_frames(self) -> int:
        """Frames held anywhere between arrival and the end of their inspection."""
        with self._lock:
            n = self._frames.qsize() + self._frames_in_gather + self._frames_in_sets
            n += sum(s.pending(0) for s in self._pose_sync.values()) if self.p.pose_source == "topic" else 0
        n += self.rig_sync.pending if self.rig_sync is not None else 0
        return n + (len(self.selector) if self.selector is not None else 0)

    def diagnostics(self, extra: dict) -> tuple[int, str, dict]:
        """(level, message, values) of the /diagnostics status now."""
        if self.selector is not None:
            extra = {**extra, "views_collected": len(self.selector)}
        return self.health.status(time.monotonic(), self.pending_frames(), extra)

    def stop(self, why: str = "the detector was deactivated") -> None:
        """After the stages stopped (deactivate): what was still held is dropped as inactive, a waiting ~/inspect
        call is answered with `why`."""
        self.drop("inactive", self.pending_frames())
        self.reset()
        self.answer_waiting(why)

    def answer_waiting(self, why: str, refuse_new: bool = False) -> None:
        """Answer every waiting ~/inspect call with `why` (deactivate, shutdown); refuse_new: later calls too (the
        node is going away)."""
        with self._lock:
            self.refusing = why if refuse_new else self.refusing
            reqs, self._requests = self._requests, []
            for req in reqs:
                req.error = why
                req.done.set()

    # ---------------------------------------------------------------------- intake (the node's callbacks)
    def on_info(self, cam: str, msg) -> None:
        self._infos[cam] = msg

    def on_image(self, cam: str, msg) -> None:
        if not self.active:  # a message delivered while the subscription was being destroyed
            return
        now = time.monotonic()
        self.health.frame(cam, now)
        if msg.encoding.lower() not in IMAGE_ENCODINGS:
            self.drop("encoding", 1, cam, f"unsupported image encoding {msg.encoding!r}; supported: "
                      f"{', '.join(IMAGE_ENCODINGS)}")
            return
        stamp = stamp_seconds(msg)
        skew, max_skew = stamp - self.io.ros_now(), self.p.max_clock_skew
        if max_skew > 0 and abs(skew) > max_skew:
            what = ("is unset (0)" if stamp == 0 else
                    f"is {abs(skew):.1f} s {'ahead of' if skew > 0 else 'behind'} this node's clock")
            self.drop("clock_skew", 1, cam, f"image stamp {what} (max_clock_skew {max_skew} s): "
                      "dropping it; check the camera's time sync (PTP / NTP) or use_sim_time")
            return
        first = self._first_image.setdefault(cam, now)
        info = self._infos.get(cam)
        if info is None:  # at start-up the first images may overtake the first CameraInfo: no fault then
            self.drop("camera_info", 1, cam, f"no CameraInfo received yet on {self.p.camera_prefix}/{cam}/camera_info; "
                      "dropping its images until one arrives", fault=now - first >= INFO_GRACE_S)
            return
        self.health.arrival_ok(cam, now)
        frame = Frame(cam, msg, info, stamp, now)
        if self.p.pose_source != "topic":
            self._put_frame(frame)
        else:
            self._pair_pose(cam, 0, stamp, frame)

    def on_pose(self, cam: str, msg) -> None:
        if not self.active:
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
        topic = f"{self.p.camera_prefix}/{cam}/pose"
        self.drop("pose", n, cam, f"no PoseStamped within sync_slop {self.p.sync_slop} s of its image on "
                  f"{topic}" if cam in self._poses_seen else f"no PoseStamped received on {topic}")

    def _put_frame(self, frame: Frame) -> None:
        if self._frames.put(frame) is not None:
            self.drop("frame_queue")

    # ---------------------------------------------------------------------- ~/inspect
    def inspect_call(self) -> tuple[bool, str]:
        """One ~/inspect call: waits (up to inspect_timeout) for an inspection of views stamped from now on ->
        (success, the report as JSON or why not)."""
        req = Request(after=self.io.ros_now())
        with self._lock:
            active, waiting = self.active, len(self._requests)
            busy = waiting >= self.p.max_waiting_calls
            if active and not busy and not self.refusing:
                self._requests.append(req)
        if self.refusing:
            return False, self.refusing
        if not active:
            return False, "the detector is not active (lifecycle state)"
        if busy:
            return False, (f"{waiting} ~/inspect calls are waiting already (max_waiting_calls "
                           f"{self.p.max_waiting_calls}); try again when one is answered")
        req.done.wait(self.p.inspect_timeout)
        with self._lock:
            if req in self._requests:
                self._requests.remove(req)
            ok = req.done.is_set()  # (answered just as the wait ran out: the answer counts)
        if not ok:
            now = time.monotonic()
            out = {c: self.health.why_out(c, now) for c in self.cameras if self.health.camera_out(c, now)}
            return False, f"no inspection within {self.p.inspect_timeout} s" + (f"; cameras out: {out}" if out else "")
        if req.error:
            return False, req.error
        return req.report["status"] == "ok", json.dumps(req.report)

    def _finish_request(self, vs: ViewSet, report: dict | None, error: str) -> None:
        """Answer the waiting calls that this set's views are new enough for."""
        with self._lock:  # (answered under the lock: a call whose wait runs out sees either its answer or none)
            done = [r for r in self._requests if vs.stamp >= r.after]
            self._requests = [r for r in self._requests if r not in done]
            for req in done:
                req.report, req.error = report, error
                req.done.set()

    @property
    def _request(self) -> Request | None:
        """The oldest waiting ~/inspect call (trigger service inspects for it)."""
        with self._lock:
            return self._requests[0] if self._requests else None

    def _idle(self, frame: Frame) -> bool:
        """trigger service: True (frame dropped) while no ~/inspect call waits for views this new."""
        if self.p.trigger != "service":
            return False
        req = self._request
        if req is None or frame.stamp < req.after:
            return True
        if req is not self._seen_request:  # a new request: start collecting afresh
            self._seen_request = req
            if self.selector is not None:
                self.drop("not_requested", self.selector.reset())
        return False

    # ---------------------------------------------------------------------- gather stage
    def gather_loop(self, stop: threading.Event) -> None:
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
                self.health.gather_error(f"{one_line(e)}", time.monotonic())
                if frame is not None:  # (a bug in the gatherer itself: the frame may be lost)
                    self.drop("gather_error")
                self.io.log("error", f"gather stage failed: {one_line(e)}")
            finally:
                with self._lock:
                    self._frames_in_gather = 0

    def _tick(self, now: float) -> None:
        """Timeouts: rig sets that waited set_timeout; images that waited as long for their pose message; a blind
        rig (or moving camera): a verdict cannot_inspect, once per waiting call (continuous: once per blindness)."""
        if self.rig_sync is not None:
            self._rig(lambda: self.rig_sync.poll(now))
        blind = self.health.blind(now)
        key = self._request if self.p.trigger == "service" else True
        if blind and key is not None and key is not self._blind_for:
            self._blind_for = key  # said once (per waiting call), until a set can be inspected again
            self._queue_set(ViewSet([], [{"camera": c, "reason": self.health.why_out(c, now) or "out"}
                                         for c in self.cameras], blocked=blind, at=self.io.ros_now()))
        if self.p.pose_source == "topic":
            for cam, sync in self._pose_sync.items():
                with self._lock:
                    lost = sync.prune(0, lambda f: now - f.received < self.p.set_timeout)
                if lost:
                    self._pose_lost(cam, lost)

    def _gather(self, frame: Frame) -> None:
        if self._idle(frame):
            self.drop("not_requested")
            return
        if self.rig_sync is not None:
            self._rig(lambda: self.rig_sync.add(frame.camera, frame.stamp, frame, time.monotonic()))
            return
        g = self._view(frame)
        if g is None:
            return
        s = self.selector
        close, expired = s.too_close, s.expired
        chosen = s.add(g, g.view.camera.center, g.view.stamp, self.io.ros_now())
        self.drop("too_close", s.too_close - close)
        self.drop("expired", s.expired - expired)
        if chosen:
            self._blind_for = None
            self._queue_set(ViewSet(chosen))

    def _rig(self, step: Callable[[], list[RigSet]]) -> None:
        """One add or poll of the rig gatherer: frames it dropped are counted, the sets it made are converted."""
        g = self.rig_sync
        before, overtaken = dict(g.dropped_by), g.superseded
        sets = step()
        off, unmatched = g.out_of_sync, 0
        for cam in self.cameras:
            n = g.dropped_by[cam] - before[cam]
            if cam in off:  # a camera whose frames keep missing the sets: named (WARN), out until one fits again
                self.drop("out_of_sync", n, cam, f"its stamps are {abs(off[cam]):.1f} s "
                          f"{'ahead of' if off[cam] > 0 else 'behind'} the other cameras' (more than sync_slop "
                          f"{self.p.sync_slop} s): its frames match no set; check its time sync (PTP / NTP)")
            else:
                unmatched += n
        self.drop("unmatched", unmatched)
        self.drop("superseded", g.superseded - overtaken)
        for rs in sets:
            items, missing = [], []
            now = time.monotonic()
            for cam in self.cameras:
                g = self._view(rs.items[cam]) if cam in rs.items else None
                if g is not None:
                    items.append(g)
                else:
                    missing.append({"camera": cam, "reason": self.health.why_out(cam, now) or "no usable view"})
            items, missing = self._frozen(items, missing)
            if len(items) < self.min_views:
                why = (f"only {len(items)} of {len(self.cameras)} cameras gave a usable view (min_views "
                       f"{self.min_views}): " + "; ".join(f"{m['camera']}: {m['reason']}" for m in missing))
                self._queue_set(ViewSet(items, missing, blocked=why, at=self.io.ros_now()))
                continue
            self._blind_for = None
            self._queue_set(ViewSet(items, missing))

    def _frozen(self, items: list[GatheredView], missing: list[dict]) -> tuple[list[GatheredView], list[dict]]:
        """Rig: the cameras whose image is byte for byte their previous one while another camera's changed (a
        frozen driver re-sending its last frame with new stamps) go from `items` to `missing`. A static scene
        seen by a noiseless simulator, where every image repeats, is not frozen."""
        # every 127th byte of the message: a live camera's noise differs anywhere; under 2 KB, so that hashlib keeps
        # the GIL (giving it up means waiting up to the switch interval to get it back while the model runs)
        digests = {g.frame.camera: hashlib.blake2b(bytes(g.frame.image.data[::127]), digest_size=16).digest()
                   for g in items}
        same = {c for c, d in digests.items() if self._last_digest.get(c) == d}
        changed = {c for c, d in digests.items() if self._last_digest.get(c, d) != d}  # (a first image: neither)
        self._last_digest.update(digests)
        if not same or not changed:
            return items, missing
        kept = []
        for g in items:
            cam = g.frame.camera
            if cam not in same:
                kept.append(g)
                continue
            why = "frozen: the same image as its previous frame while the other cameras saw a new one"
            self.drop("content", 1, cam, f"unusable image content: {why}")
            missing = missing + [{"camera": cam, "reason": f"content: {why}"}]
        return kept, missing

    def _queue_set(self, vs: ViewSet) -> None:
        vs.queued = time.monotonic()
        with self._lock:
            self._frames_in_sets += len(vs.items)
        old = self._sets.put(vs)
        if old is not None:
            with self._lock:
                self._frames_in_sets -= len(old.items)
            self.drop("busy", len(old.items))

    def _view(self, frame: Frame) -> GatheredView | None:
        """Frame -> posed view, or None (counted and logged) when its image, intrinsics or pose is unusable."""
        cam = frame.camera
        try:
            built = self.resolver.build_view(cam, frame.image, frame.info, frame.pose)
        except PoseError as e:
            self.drop("pose", 1, cam, f"no camera pose: {e}")
            return None
        except ViewError as e:
            self.drop(e.kind, 1, cam, f"unusable {e.what}: {str(e).removeprefix(cam + ': ')}")
            return None
        except Exception as e:  # a bug (e.g. in a library), not a bad input: counted, logged, the set goes on
            self.drop("gather_error", 1, cam, f"making its view failed: {one_line(e)}")
            return None
        self.health.view_ok(cam, time.monotonic())
        return GatheredView(built, frame, view_record(built.view, self.p.pose_source, **built.extra))

    # ---------------------------------------------------------------------- inspect stage
    def inspect_loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                vs = self._sets.get(timeout=0.1)
            except queue.Empty:
                continue
            try:
                if stop.is_set():  # deactivated while this set waited: not inspected (counted)
                    self.drop("inactive", len(vs.items))
                    continue
                self._inspect(vs)
            except Exception as e:  # never let the thread die (a bug): counted, said, and a verdict that is no pass
                self._failed(vs, f"inspection stage failed: {one_line(e)}")
            finally:
                with self._lock:
                    self._frames_in_sets -= len(vs.items)

    def _failed(self, vs: ViewSet, msg: str, frames: int | None = None) -> None:
        """An inspection that failed after the model (its report, record or outputs): counted (an inference error;
        `frames` of its frames, default all), one line, the waiting caller answered, and a verdict "cannot_inspect"
        without views in its place, so that the last tray's verdict does not stay latched as if current."""
        self.health.inspection_failed(len(vs.items) if frames is None else frames, msg, time.monotonic())
        self.io.log("error", msg)
        self._finish_request(vs, None, msg)
        if self._failing or self.io.shutting_down():
            return
        self._failing = True
        try:
            self._verdict(ViewSet([], vs.missing, queued=time.monotonic(), at=vs.stamp), None, "cannot_inspect",
                          msg, {}, said=True)
        except Exception as e:  # its own verdict failed too: said, nothing more to try
            self.io.log("error", f"no verdict could be published for the failure: {one_line(e)}")
        finally:
            self._failing = False

    def _inspect(self, vs: ViewSet) -> None:
        req, n = self._request, len(vs.items)
        if self.p.trigger == "service" and (req is None or vs.stamp < req.after):
            self.drop("not_requested", n)
            return
        if vs.blocked:  # the model does not run on it; the verdict says why
            self.drop("incomplete_set", n)
            return self._verdict(vs, None, "cannot_inspect", vs.blocked, {})
        frame_problem = self.io.frame_problem()
        if frame_problem:  # no boxes the arm could not place
            self.drop("no_target_frame", n)
            return self._verdict(vs, None, "cannot_inspect", frame_problem, {})
        views = [g.view for g in vs.items]
        waited = time.monotonic() - vs.queued  # for the model to finish the previous set
        t0 = time.perf_counter()
        try:
            result = self.inspect_fn(views)
            check_finite_result(result)  # NaN / inf anywhere: an error, never an all-clear
        except Exception as e:
            msg = f"inspection of {n} views failed: {one_line(e)}"
            self.health.inspection_failed(n, msg, time.monotonic())
            self.io.log("error", msg)
            return self._verdict(vs, None, "cannot_inspect", msg, {}, said=True)
        inference = time.perf_counter() - t0
        found, need = len(result.objects), self.p.min_objects
        status, reason = ("ok", "") if found >= need else \
            ("cannot_compare", f"{found} object(s) found; comparing needs at least {need} (min_objects)")
        self._verdict(vs, result, status, reason, {"inference": inference, "waited": waited})

    def _verdict(self, vs: ViewSet, result, status: str, reason: str, latency: dict, said: bool = False) -> None:
        """Report, audit record and outputs of one attempted inspection. result None: the model did not run or
        failed (no objects; its frames are counted already). said: the reason is logged already."""
        n, threshold = len(vs.items), self.threshold  # (anomaly_threshold may change while this runs)
        unaccounted = n if result is not None else 0  # frames not yet counted anywhere
        objects = [replace(o, anomalous=o.score > threshold) for o in (result.objects if result is not None else [])]
        try:
            self.inspection_id += 1
            report = build_report(
                inspection_id=self.inspection_id, stamp=vs.stamp, frame_id=self.p.frame_id,
                objects=objects, threshold=threshold,
                views=[g.record for g in vs.items], missing_views=vs.missing,
                latency={**latency, "pipeline": time.monotonic() - vs.received}, model=self.model_info,
                node=self.node_name, status=status, reason=reason)
            validate_report(json.loads(json.dumps(report, allow_nan=False)))
        except Exception as e:
            return self._failed(vs, f"inspection of {n} views failed: {one_line(e)}", unaccounted)
        new = self.health.verdict(status, reason, time.monotonic())
        if new and status != "ok":
            if not said:  # once per kind of reason (numbers aside), not at the rig's frame rate
                self.io.log("warning", f"inspection {report['inspection_id']}: {status.replace('_', ' ')}: {reason}")
        recorded = self._audit(vs, report, result is not None)  # before publishing: no decision without its record
        kept = " (it is in the audit log)" if recorded else ""
        try:
            self.io.publish(report, result, vs)
        except Exception as e:
            if not self.io.shutting_down():  # recorded but not published: an error, said once, the caller answered
                return self._failed(vs, f"inspection {report['inspection_id']} could not be published: "
                                        f"{one_line(e)}{kept}", unaccounted)
            if not self._shutdown_logged:  # Ctrl-C during an inspection: the context is gone, say so in one line
                self._shutdown_logged = True
                self.io.log("warning", f"shutting down: inspection {report['inspection_id']} was not published{kept}")
            self.drop("inspection_failed", unaccounted)
            return self._finish_request(vs, None, "the detector is shutting down")
        if result is not None:
            published = time.monotonic() - vs.received  # last view's arrival -> markers out
            self.health.inspection_ok(n, {**latency, "pipeline": published}, report["n_objects"],
                                      report["n_anomalous"], [m["camera"] for m in vs.missing])
        self._finish_request(vs, report, "")

    def publish_inactive(self, why: str) -> None:
        """A verdict "cannot_inspect" (`why`) that replaces the last one, e.g. when the detector is deactivated: no
        reject of an earlier tray stays latched as if current."""
        self._verdict(ViewSet([], queued=time.monotonic(), at=self.io.ros_now()), None, "cannot_inspect", why, {})

    def _audit(self, vs: ViewSet, report: dict, ran: bool = True) -> bool:
        """View bag (when the model ran: `ran`, so that replay can run it again) and audit record of one verdict;
        True when the audit log holds its record."""
        bag = None
        if self.p.record_views_dir and ran:
            try:
                bag = write_view_bag(view_bag_path(self.p.record_views_dir, report["stamp"], report["inspection_id"]),
                                     [self.io.bag_messages(g) for g in vs.items], self.io.bag_report(report),
                                     int(round(report["stamp"] * 1e9)))
            except Exception as e:  # a full disk must not stop inspections; it shows in diagnostics
                self.health.audit_error(f"view bag: {e}", time.monotonic())
                self.io.log("error", f"cannot write the view bag of inspection {report['inspection_id']}: {e}")
        if self.audit is not None:
            try:
                moved = self.audit.append({**report, "bag": str(bag) if bag else None})
                self.health.audit_ok()
                if moved:  # recorded, in a file opened again at the path: said, counted (WARN)
                    self.health.audit_error(moved, time.monotonic())
                    self.io.log("warning", moved)
                return True
            except (OSError, ValueError) as e:
                self.health.audit_error(f"audit log: {e}", time.monotonic(), failing=isinstance(e, OSError))
                self.io.log("error", f"cannot append to the audit log {self.audit.path}: {e}")
        return False


def one_line(e: BaseException) -> str:
    """An exception as one log line: its type and the first line of its message (OpenCV's run over several)."""
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"


def rig_cameras(p, resolver: PoseResolver) -> list[str]:
    """The cameras a configured detector inspects: parameter `cameras`, or with pose_source static the rig file's.
    Raises ValueError (one line) for a set that cannot work."""
    cameras = p.cameras
    if not cameras:
        if p.pose_source != "static":
            raise ValueError(f"parameter cameras is required with pose_source {p.pose_source}")
        cameras = sorted(resolver.rig)
    cameras = [str(c) for c in cameras]
    if len(set(cameras)) != len(cameras) or not all(cameras):
        raise ValueError(f"parameter cameras must be distinct non-empty names, got {cameras}")
    resolver.check_cameras(cameras)
    if p.mode == "rig" and p.min_views > len(cameras):
        raise ValueError(f"min_views {p.min_views} is more than the {len(cameras)} cameras")
    return cameras


def audit_warnings(audit: AuditLog | None, record_dir: str) -> list[str]:
    """What a detector says at configure about its audit trail: a fenced-off torn line, interrupted view bags.
    Raises ValueError (one line) for a record_views_dir that cannot be a folder of bags."""
    if record_dir and os.path.lexists(record_dir) and not os.path.isdir(record_dir):
        raise ValueError(f"parameter record_views_dir {record_dir!r} is not a folder (a file is in the way)")
    lines = []
    if audit is not None and audit.fenced:
        lines.append(f"audit log {audit.path}: {audit.fenced} (a crash while writing) was fenced off; earlier "
                     "records are intact, new ones start on a new line")
    left = interrupted_bags(record_dir) if record_dir else []
    if left:
        lines.append(f"{len(left)} interrupted view bag(s) in {record_dir}/partial (a detector stopped while writing "
                     f"them; not readable, their inspections were never recorded or published): {', '.join(left[:3])}"
                     + (" ..." if len(left) > 3 else ""))
    return lines
