"""Which views make one inspection. Pure: no ROS imports.

- RigGatherer (`rig` mode, fixed cameras): sets of at most one frame per camera, stamped within `slop` seconds
  of the set's first frame. A set is ready when every camera is in it; or, with at least `min_views`
  frames and once `camera_timeout` seconds have passed since the first frame (or the first after the
  whole rig was quiet for that long), when every camera that is not
  *out* is in it (out: nothing delivered for `camera_timeout` seconds: a dead or broken camera is not
  waited for), or `timeout` seconds after it opened (a late or lost frame). A set that is not complete needs at
  least half of the live cameras: the set is built around the cameras whose clocks agree (the majority), not
  around a few whose stamps are off. A ready set closes every older one. A camera whose last OUT_OF_SYNC_FRAMES
  frames ended in no set, matched no recent set's stamp (within `slop`; a frame that only came late matches its
  set) and were not with half the live cameras either is *out of sync*: its clock is off the others' by more
  than `slop`. It is no longer waited for,
  and its frames are counted apart (`dropped_by`, `out_of_sync`) until one fits a set again. Written here because
  message_filters is not obtainable from PyPI.
- MovingViewSelector (`moving` mode, a camera on an arm or several moving cameras): collects views
  until `views_required` of them are pairwise at least `min_angle_deg` apart as seen from the scene
  centre; views stamped more than `max_age` seconds before (or after) the caller's clock are discarded.
- DropQueue: the bounded queue between the stages of the detector; the oldest item goes when full
  and is returned to the caller (who counts it).
Stamps are the images' header stamps (s); `now` arguments are the caller's clock (s): time.monotonic() for
the rig gatherer's timeouts, the node's ROS clock for the moving selector's ages.
"""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["RigGatherer", "RigSet", "MovingViewSelector", "view_angle_deg", "DropQueue", "OUT_OF_SYNC_FRAMES"]

OUT_OF_SYNC_FRAMES = 3  # frames in a row of one camera that match no set: its clock does not agree with the others'


@dataclass
class RigSet:
    """One rig trigger: `items` camera -> item (in camera order), `missing` the cameras not in it."""

    stamp: float  # the stamp of its first frame
    items: dict[str, Any]
    missing: list[str]


@dataclass
class _Bucket:
    stamp: float
    opened: float
    frames: dict[str, tuple[float, Any]] = field(default_factory=dict)


class RigGatherer:
    """add(camera, stamp, item, now) / poll(now) -> the sets that became ready (oldest first).

    Frames that end in no set are counted: in `superseded` when a newer set was ready first (the newest
    wins; with delivery jitter longer than the frame period this is normal), in `dropped` when their set
    closed with fewer than min_views, a closer frame of the same camera took their place, or they came
    after their set was emitted (`dropped_by`: the same per camera); `pending` frames wait in open sets.
    `out_of_sync`: the cameras whose frames keep matching no set, with the offset of their last such frame's stamp
    from the newest set's (s).
    """

    def __init__(self, cameras: list[str], slop: float, min_views: int = 1, timeout: float = 0.5,
                 camera_timeout: float = 3.0, now: float = 0.0, max_open: int = 10):
        if not cameras or len(set(cameras)) != len(cameras):
            raise ValueError(f"rig cameras must be distinct and not empty, got {cameras}")
        if not 1 <= min_views <= len(cameras) or slop < 0 or timeout <= 0 or camera_timeout <= 0:
            raise ValueError(f"bad rig gatherer settings: {min_views=}, {slop=}, {timeout=}, {camera_timeout=}")
        self.cameras = list(cameras)
        self.slop, self.min_views, self.timeout, self.camera_timeout = slop, min_views, timeout, camera_timeout
        self.max_open = max_open
        self._started: float | None = None  # the first frame's arrival: cameras not heard from since are waited for
        self._last_delivery = {c: now for c in self.cameras}
        self._open: list[_Bucket] = []
        self._emitted = float("-inf")  # stamp of the newest emitted set
        self.dropped = 0
        self.dropped_by: dict[str, int] = {c: 0 for c in self.cameras}
        self.superseded = 0
        self._misses = {c: 0 for c in self.cameras}  # frames in a row that matched no set
        self._offset = {c: 0.0 for c in self.cameras}  # its last unmatched frame's stamp - the newest set's
        self._recent: list[float] = []  # stamps of the sets emitted within `timeout` of the newest one
        self._emitted_at = float("-inf")  # `now` of the newest emitted set

    @property
    def pending(self) -> int:
        return sum(len(b.frames) for b in self._open)

    @property
    def out_of_sync(self) -> dict[str, float]:
        """camera -> the stamp of its last frame that matched no set minus the newest set's then, for the cameras
        whose last OUT_OF_SYNC_FRAMES frames matched no set."""
        return {c: self._offset[c] for c, n in self._misses.items() if n >= OUT_OF_SYNC_FRAMES}

    def _drop(self, frames: dict[str, tuple[float, Any]], now: float, judge: bool = True) -> None:
        """Frames camera -> (stamp, item) of one bucket (or one frame) that end in no set: counted. With `judge`,
        while the other cameras make sets (one within camera_timeout), each frame that matched no recent set's
        stamp (a frame that only came late does) and was not with at least half the live cameras either is a
        miss of its camera (its clock may be off the others'); any other frame clears its camera's misses."""
        agree = 2 * len(frames) >= len(self.live(now))  # these frames agree with each other: a set's worth
        others_in_sync = now - self._emitted_at <= self.camera_timeout
        for c, (stamp, _) in frames.items():
            self.dropped += 1
            self.dropped_by[c] += 1
            if not judge:
                continue
            if agree or not others_in_sync or any(abs(stamp - s) <= self.slop for s in self._recent):
                self._misses[c] = 0
            else:
                self._misses[c] += 1
                self._offset[c] = stamp - self._emitted

    def live(self, now: float) -> list[str]:
        """Cameras that delivered a frame within camera_timeout (or have not had the chance yet)."""
        return [c for c in self.cameras if now - self._last_delivery[c] <= self.camera_timeout]

    def add(self, camera: str, stamp: float, item: Any, now: float) -> list[RigSet]:
        if camera not in self._last_delivery:
            raise KeyError(f"camera {camera!r} is not in the rig {self.cameras}")
        stamp = float(stamp)
        if self._started is None or now - max(self._last_delivery.values()) > self.camera_timeout:
            # the first frame, or the first after the whole rig was quiet (a conveyor stop, triggered cameras): a
            # new start, in which every camera is waited for again
            self._started = now
            self._last_delivery = {c: now for c in self.cameras}
        self._last_delivery[camera] = now
        if stamp < self._emitted + self.slop:
            self._drop({camera: (stamp, item)}, now)  # belongs to (or before) a set already emitted: too late
            return self.poll(now)
        fits = [b for b in self._open if abs(b.stamp - stamp) <= self.slop]
        bucket = min(fits, key=lambda b: abs(b.stamp - stamp), default=None)
        if bucket is None:
            if len(self._open) >= self.max_open:
                self._drop(self._open.pop(0).frames, now)
            bucket = _Bucket(stamp, now)
            self._open.append(bucket)
            self._open.sort(key=lambda b: b.stamp)
        old = bucket.frames.get(camera)
        if old is None or abs(stamp - bucket.stamp) < abs(old[0] - bucket.stamp):
            self._drop({camera: old} if old is not None else {}, now, judge=False)
            bucket.frames[camera] = (stamp, item)
        else:
            self._drop({camera: (stamp, item)}, now, judge=False)
        return self.poll(now)

    def poll(self, now: float) -> list[RigSet]:
        live = set(self.live(now))
        in_sync = live - set(self.out_of_sync)  # the cameras a set waits for
        started = self._started is not None and now - self._started >= self.camera_timeout  # at first: complete only
        ready = None
        for i, b in enumerate(self._open):
            n = len(b.frames)
            if n == len(self.cameras) or (started and n >= self.min_views and 2 * n >= len(live) and (
                    in_sync <= set(b.frames) or now - b.opened >= self.timeout)):
                ready = i  # the newest ready set wins; older ones close with it
        out: list[RigSet] = []
        if ready is not None:
            for b in self._open[:ready]:
                self.superseded += len(b.frames)
            b = self._open[ready]
            self._open = self._open[ready + 1:]
            self._emitted = max(self._emitted, b.stamp)
            self._recent = [s for s in self._recent if s >= self._emitted - self.timeout] + [b.stamp]
            self._emitted_at = now
            for c in b.frames:
                self._misses[c] = 0
            out.append(RigSet(b.stamp, {c: b.frames[c][1] for c in self.cameras if c in b.frames},
                              [c for c in self.cameras if c not in b.frames]))
        expired = [b for b in self._open if now - b.opened >= self.timeout
                   and (len(b.frames) < self.min_views or 2 * len(b.frames) < len(live))]
        for b in expired:  # too few cameras in time: these frames will not make a set
            self._drop(b.frames, now)
            self._open.remove(b)
        return out


def view_angle_deg(a: np.ndarray, b: np.ndarray, target=(0.0, 0.0, 0.0)) -> float:
    """Angle in degrees between two camera centres (3,) seen from `target` (the scene centre)."""
    u = np.asarray(a, dtype=np.float64) - target
    v = np.asarray(b, dtype=np.float64) - target
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if nu < 1e-9 or nv < 1e-9:
        return 0.0
    return float(np.degrees(np.arccos(np.clip(u @ v / (nu * nv), -1.0, 1.0))))


@dataclass
class MovingViewSelector:
    """add(item, camera_centre, stamp, now) -> list of `views_required` items (oldest first) or None.

    A view is kept when it is at least min_angle_deg away from every kept view; otherwise it is
    rejected (counted in `too_close`). Views stamped more than `max_age` seconds before `now`, or more
    than `max_age` after it, are discarded (counted in `expired`), kept ones included: a single badly
    stamped view can never block the selector. After a set is returned, or reset(), it starts empty.
    """

    views_required: int
    min_angle_deg: float
    max_age: float
    target: tuple[float, float, float] = (0.0, 0.0, 0.0)
    too_close: int = 0
    expired: int = 0
    _kept: list = field(default_factory=list, repr=False)  # (stamp, centre, item)

    def __post_init__(self):
        if self.views_required < 1 or not 0 <= self.min_angle_deg <= 180 or self.max_age <= 0:
            raise ValueError(f"bad moving-view settings: views_required={self.views_required}, "
                             f"min_angle_deg={self.min_angle_deg}, max_age={self.max_age}")

    def __len__(self) -> int:
        return len(self._kept)

    def reset(self) -> int:
        """Forget the kept views; returns how many there were."""
        n, self._kept = len(self._kept), []
        return n

    def _fresh(self, stamp: float, now: float) -> bool:
        return abs(stamp - now) <= self.max_age

    def add(self, item: Any, centre, stamp: float, now: float) -> list[Any] | None:
        stamp, now = float(stamp), float(now)
        n = len(self._kept)
        self._kept = [k for k in self._kept if self._fresh(k[0], now)]
        self.expired += n - len(self._kept)
        if not self._fresh(stamp, now):
            self.expired += 1
            return None
        centre = np.asarray(centre, dtype=np.float64)
        if any(view_angle_deg(centre, c, self.target) < self.min_angle_deg for _, c, _ in self._kept):
            self.too_close += 1
            return None
        self._kept.append((stamp, centre, item))
        if len(self._kept) < self.views_required:
            return None
        out = [it for _, _, it in sorted(self._kept, key=lambda k: k[0])]
        self._kept = []
        return out


class DropQueue:
    """A bounded FIFO between threads: put() never blocks; when full the oldest item is dropped and returned."""

    def __init__(self, maxsize: int):
        if maxsize < 1:
            raise ValueError(f"queue size must be >= 1, got {maxsize}")
        self._q: queue.Queue = queue.Queue(maxsize)
        self._lock = threading.Lock()
        self.dropped = 0

    def put(self, item: Any) -> Any | None:
        """Enqueue; returns the item dropped to make room (None when there was room)."""
        dropped = None
        with self._lock:
            while True:
                try:
                    self._q.put_nowait(item)
                    return dropped
                except queue.Full:
                    try:
                        dropped = self._q.get_nowait()
                        self.dropped += 1
                    except queue.Empty:
                        pass

    def qsize(self) -> int:
        return self._q.qsize()

    def get(self, timeout: float) -> Any:
        """The oldest item, or raises queue.Empty after `timeout` seconds."""
        return self._q.get(timeout=timeout)

