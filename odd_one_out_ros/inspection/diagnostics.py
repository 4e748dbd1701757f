"""The detector's health: named counters, per-camera state, when to log, and the OK / WARN / ERROR rule of its
/diagnostics status. Pure: no ROS imports (the node turns `DetectorHealth.status()` into a DiagnosticStatus).

Every image the detector receives ends in exactly one place: in an inspection (`frames_inspected`), under one
drop reason of DROP_REASONS (`dropped/<reason>`), or still pending (waiting in a queue, a rig set, the moving
selector or for its pose message). `frames_unaccounted` = received - inspected - dropped - pending is 0 when
the node is idle; anything else is a bug.

Camera-attributable problems (CAMERA_ERRORS) are logged the first time they happen for each (camera, kind), again at
once when the message changes (other than in its numbers), and otherwise at most every `log_every` seconds with the
count since the last line. A camera is *out* when it has had no frame that passed the arrival checks for
`camera_timeout` seconds, or when its latest view failed (bad pose, bad image, ...). Level: ERROR when the last
inspection failed (until one succeeds), the last verdict was "cannot_inspect", or fewer than `min_views` cameras are
usable (after a start-up grace of `camera_timeout`); WARN when the last verdict was "cannot_compare", a camera is
out, or frames were dropped for a problem (not for back-pressure) in the last `warn_window` seconds, or the audit
trail could not be written; OK otherwise. Times are time.monotonic()
seconds.
"""
from __future__ import annotations

import functools
import re
import threading
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["DROP_REASONS", "CAMERA_ERRORS", "DetectorHealth", "CameraState", "OK", "WARN", "ERROR"]

OK, WARN, ERROR = 0, 1, 2  # = diagnostic_msgs/DiagnosticStatus levels

DROP_REASONS = {  # reason -> what it means; every frame not inspected is counted under exactly one
    "encoding": "unsupported image encoding",
    "image": "malformed image (size, step, data length)",
    "content": "an image without usable content: black, saturated or flat (a covered lens, a dead sensor), or frozen "
               "(rig: the same image as its previous frame while the other cameras saw a new one)",
    "camera_info": "no CameraInfo yet, or an unusable one (K all zeros, wrong size)",
    "clock_skew": "stamped further than max_clock_skew from the node's clock (or unset: 0)",
    "pose": "no usable camera pose (no pose message within sync_slop, board not found, bad quaternion, frame)",
    "frame_queue": "the gather stage was behind: oldest frame dropped",
    "unmatched": "rig: no set of min_views cameras formed around it within sync_slop / set_timeout, or it came "
                 "after its set was inspected",
    "out_of_sync": "rig: its camera's stamps have matched none of the last sets of the other cameras (its clock is "
                   "off theirs by more than sync_slop, though within max_clock_skew)",
    "superseded": "rig: a newer set was complete first (the newest wins; back-pressure)",
    "incomplete_set": "rig: its set had fewer than min_views usable views",
    "no_target_frame": "target_frame: no transform from frame_id to it on /tf or /tf_static yet",
    "too_close": "moving: closer than min_view_angle_deg to a view already kept",
    "expired": "moving: stamped longer ago than max_view_age, or too far ahead",
    "busy": "its view set was replaced by a newer one while the model was busy (back-pressure)",
    "not_requested": "trigger service: no ~/inspect call was waiting",
    "inspection_failed": "its inspection failed or could not be published (see inference_errors)",
    "gather_error": "an unexpected error while making its view (a bug; see gather_errors and the log)",
    "inactive": "the detector was deactivated (lifecycle) before it was inspected",
}
CAMERA_ERRORS = ("encoding", "image", "content", "camera_info", "clock_skew", "pose", "gather_error",
                 "out_of_sync")  # of one camera's input
# not a fault, no WARN: back-pressure, and rig frames that missed their set (delivery jitter; a camera that keeps
# missing is named in missing_views and goes out)
BACK_PRESSURE = ("busy", "not_requested", "too_close", "frame_queue", "superseded", "inactive", "unmatched")


_NUMBER = re.compile(r"\d+(\.\d+)?")


def _shape(text: str) -> str:
    """A message with its numbers aside (each one "#"): two messages of one shape are the same problem."""
    return _NUMBER.sub("#", text)


@dataclass
class CameraState:
    last_ok: float  # last frame that passed the arrival checks (encoding, CameraInfo, clock)
    last_frame: float | None = None  # last image of any kind
    last_view_ok: float | None = None  # last frame that became a usable view
    last_view_fail: float | None = None  # last frame whose view failed (pose, image, camera_info)
    errors: Counter = field(default_factory=Counter)
    last_error: str = ""
    last_error_kind: str = ""
    last_error_at: float | None = None


@dataclass
class _LogState:
    at: float
    message: str
    since: int = 0  # occurrences since the last line


def _locked(method):
    """Run a DetectorHealth method under the health's own (reentrant) lock: callers need no lock of their own."""
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return run


class DetectorHealth:
    """Counters and state of one detector; every method is thread-safe (each takes the health's own lock)."""

    def __init__(self, cameras: list[str], min_views: int, camera_timeout: float, now: float,
                 log_every: float = 30.0, warn_window: float = 10.0):
        self.cameras = list(cameras)
        self.min_views = min_views
        self.camera_timeout = camera_timeout
        self.log_every = log_every
        self.warn_window = warn_window
        self.started = now
        self.cams = {c: CameraState(last_ok=now) for c in self.cameras}
        self.dropped = Counter({r: 0 for r in DROP_REASONS})
        self.received = 0
        self.inspected = 0
        self.inspections = 0
        self.inference_errors = 0
        self.gather_errors = 0
        self.audit_errors = 0
        self.audit_failing = ""  # the audit log cannot be written now (ERROR until a record is written again)
        self.last_error = ""  # the last inspection failure; cleared by a successful inspection
        self.last_problem = float("-inf")  # last drop for a fault, audit or gather error
        self.last_problem_text = ""
        self.latency: dict[str, float] = {}
        self.latency_sum = 0.0
        self.last_objects = self.last_anomalous = 0
        self.last_missing: list[str] = []
        self.last_verdict = ("ok", "")  # (status, reason) of the last verdict (report.STATUSES)
        self.verdicts: Counter = Counter()  # verdicts by status
        self._logs: dict[tuple[str, str], _LogState] = {}
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ events
    @_locked
    def restart(self, now: float) -> None:
        """A new start (lifecycle activate): cameras get `camera_timeout` again to deliver; counters are kept."""
        self.started = now
        self.last_verdict = ("ok", "")  # a deactivation's verdict is not the new start's
        for st in self.cams.values():
            st.last_ok = max(st.last_ok, now)

    @_locked
    def frame(self, camera: str, now: float) -> None:
        """An image of `camera` arrived (counted in frames_received)."""
        self.received += 1
        self.cams[camera].last_frame = now

    @_locked
    def arrival_ok(self, camera: str, now: float) -> None:
        self.cams[camera].last_ok = now

    @_locked
    def view_ok(self, camera: str, now: float) -> None:
        self.cams[camera].last_view_ok = now

    @_locked
    def drop(self, reason: str, now: float, n: int = 1, camera: str = "", message: str = "",
             fault: bool = True) -> str | None:
        """Count n frames under `reason` (one of DROP_REASONS); for camera errors also record the camera's error.
        Returns the line to log now, or None while throttled (or when `message` is empty: counted, not logged).
        fault=False: expected (e.g. images overtaking the first CameraInfo at start-up): counted only."""
        if reason not in DROP_REASONS:
            raise KeyError(f"unknown drop reason {reason!r}")
        if n <= 0:
            return None
        self.dropped[reason] += n
        if not fault:
            if camera:  # still the camera's reason for the report, but no error
                st = self.cams[camera]
                st.last_error, st.last_error_kind, st.last_error_at = message, reason, now
            return None
        if reason not in BACK_PRESSURE:
            self.last_problem = now
            self.last_problem_text = f"{reason}" + (f" ({camera})" if camera else "")
        if reason not in CAMERA_ERRORS or not camera:
            return None
        st = self.cams[camera]
        st.errors[reason] += n
        st.last_error, st.last_error_kind, st.last_error_at = message, reason, now
        if reason in ("pose", "image", "content", "camera_info", "gather_error", "out_of_sync"):
            st.last_view_fail = now
        if reason == "gather_error":
            self.gather_errors += n
        return self._throttle((camera, reason), message, now, n) if message else None

    def _throttle(self, key: tuple[str, str], message: str, now: float, n: int = 1) -> str | None:
        cam, kind = key
        log = self._logs.get(key)
        shape = _shape(message)  # "7199.8 s ahead" and "7200.0 s ahead": the same error
        if log is None or log.message != shape:
            self._logs[key] = _LogState(now, shape)
            return f"{cam}: {message}"
        log.since += n
        if now - log.at < self.log_every:
            return None
        line = f"{cam}: {message} ({log.since} more {kind} drop(s) in the last {now - log.at:.0f} s)"
        log.at, log.since = now, 0
        return line

    @_locked
    def verdict(self, status: str, reason: str, now: float) -> bool:
        """A verdict went out; True when its status or the shape of its reason (numbers aside) is new."""
        new = (status, _shape(reason)) != (self.last_verdict[0], _shape(self.last_verdict[1]))
        self.last_verdict = (status, reason)
        self.verdicts[status] += 1
        return new

    @_locked
    def inspection_ok(self, n_frames: int, latency: dict[str, float], n_objects: int, n_anomalous: int,
                      missing: list[str]) -> None:
        """The model ran on n_frames views (its verdict: `verdict`)."""
        self.inspections += 1
        self.inspected += n_frames
        self.latency = dict(latency)
        self.latency_sum += latency.get("pipeline", 0.0)
        self.last_objects, self.last_anomalous = n_objects, n_anomalous
        self.last_missing = list(missing)
        self.last_error = ""

    @_locked
    def inspection_failed(self, n_frames: int, message: str, now: float) -> None:
        self.inference_errors += 1
        self.last_error = message
        self.drop("inspection_failed", now, n_frames)

    @_locked
    def gather_error(self, message: str, now: float) -> None:
        """An unexpected exception in the gather stage (a bug, not a bad input): WARN, not an inference error."""
        self.gather_errors += 1
        self.last_problem, self.last_problem_text = now, f"gather error: {message}"

    @_locked
    def audit_error(self, message: str, now: float, failing: bool = False) -> None:
        """A problem with the audit trail; failing: a record could not be written (ERROR until `audit_ok`)."""
        self.audit_errors += 1
        self.last_problem, self.last_problem_text = now, f"audit trail: {message}"
        if failing:
            self.audit_failing = message

    @_locked
    def audit_ok(self) -> None:
        """A record was written: the audit log works again."""
        self.audit_failing = ""

    # ------------------------------------------------------------------ state
    @_locked
    def blind(self, now: float) -> str:
        """Why no view set can be inspected: fewer than min_views cameras usable (after the start-up grace); ''
        otherwise."""
        return self._blind([c for c in self.cameras if self.camera_out(c, now)], now)

    def _blind(self, out: list[str], now: float) -> str:
        """blind() of the cameras `out` (found out at `now`)."""
        usable = len(self.cameras) - len(out)
        if usable >= self.min_views or now - self.started < self.camera_timeout:
            return ""
        return (f"only {usable} of {len(self.cameras)} cameras usable (min_views {self.min_views}); out: "
                + "; ".join(f"{c} ({self.why_out(c, now)})" for c in out))

    @_locked
    def camera_out(self, camera: str, now: float) -> bool:
        st = self.cams[camera]
        if now - st.last_ok > self.camera_timeout:
            return True
        return st.last_view_fail is not None and (st.last_view_ok is None or st.last_view_fail > st.last_view_ok)

    @_locked
    def why_out(self, camera: str, now: float) -> str:
        """Why `camera` gives no usable view (for the report and diagnostics); '' when it is fine."""
        st = self.cams[camera]
        recent = st.last_error_at is not None and now - st.last_error_at <= max(self.camera_timeout, 1.0)
        if recent:
            return f"{st.last_error_kind}: {st.last_error}"
        if st.last_frame is None:
            return "no image received"
        if now - st.last_frame > self.camera_timeout:
            return f"no image for {now - st.last_frame:.1f} s"
        return "no frame within sync_slop of the set" if not self.camera_out(camera, now) else st.last_error

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    @_locked
    def status(self, now: float, pending: int, extra: dict | None = None) -> tuple[int, str, dict]:
        """(level, message, values) of the diagnostics; `pending` = frames held in queues, sets and selectors."""
        out = [c for c in self.cameras if self.camera_out(c, now)]
        usable = len(self.cameras) - len(out)
        grace = now - self.started < self.camera_timeout
        blind = self._blind(out, now)
        status, reason = self.last_verdict
        if self.last_error:
            level, message = ERROR, self.last_error
        elif blind:
            level, message = ERROR, blind
        elif self.audit_failing:
            level, message = ERROR, f"audit log not written: {self.audit_failing}"
        elif status != "ok":
            level, message = (ERROR if status == "cannot_inspect" else WARN), f"{status.replace('_', ' ')}: {reason}"
        elif out and not grace:
            level = WARN
            message = "camera(s) out: " + "; ".join(f"{c} ({self.why_out(c, now)})" for c in out)
        elif self.last_missing and not grace:  # a set that closed without them changes decisions: say so
            level = WARN
            message = (f"last inspection without {', '.join(self.last_missing)}: their views missed the set "
                       "(missing_views)")
        elif now - self.last_problem < self.warn_window:
            level, message = WARN, f"{self.last_problem_text} in the last {self.warn_window:.0f} s (see values)"
        else:
            level, message = OK, f"{self.inspections} inspections"
        lat = self.latency
        values: dict = {
            "inspections": self.inspections, "inference_errors": self.inference_errors,
            "gather_errors": self.gather_errors, "audit_errors": self.audit_errors,
            "cameras_usable": f"{usable}/{len(self.cameras)}",
            "frames_received": self.received, "frames_inspected": self.inspected, "frames_pending": pending,
            "frames_dropped": self.dropped_total,
            "frames_unaccounted": self.received - self.inspected - self.dropped_total - pending,
            **{f"dropped/{r}": n for r, n in self.dropped.items()},
            "last_latency_s": f"{lat['pipeline']:.3f}" if "pipeline" in lat else "",
            "last_inference_s": f"{lat['inference']:.3f}" if "inference" in lat else "",
            "last_waited_s": f"{lat['waited']:.3f}" if "waited" in lat else "",
            "last_node_overhead_s": f"{lat['pipeline'] - lat['inference'] - lat.get('waited', 0.0):.3f}"
            if "pipeline" in lat and "inference" in lat else "",
            "mean_latency_s": f"{self.latency_sum / self.inspections:.3f}" if self.inspections else "",
            "last_verdict": status, **{f"verdicts/{k}": n for k, n in sorted(self.verdicts.items())},
            "last_objects": self.last_objects, "last_anomalous": self.last_anomalous,
            "last_missing_cameras": ",".join(self.last_missing)}
        for c in self.cameras:
            st = self.cams[c]
            values[f"{c}/state"] = "out" if c in out else "ok"
            values[f"{c}/last_good_frame_age_s"] = f"{now - st.last_view_ok:.1f}" if st.last_view_ok else "never"
            values[f"{c}/last_image_age_s"] = f"{now - st.last_frame:.1f}" if st.last_frame else "never"
            values[f"{c}/errors"] = ", ".join(f"{k}={v}" for k, v in sorted(st.errors.items())) or "none"
            if c in out:
                values[f"{c}/why"] = self.why_out(c, now)
        values.update(extra or {})
        return level, message, values
