"""Which views make one inspection. Pure: no ROS imports.

- RigGatherer (`rig` mode, fixed cameras): one frame per camera, all stamped within `slop` seconds
  of each other, by odd_one_out_ros.sync.ApproximateSync (message_filters is not obtainable from PyPI).
- MovingViewSelector (`moving` mode, a camera on an arm or several moving cameras): collects views
  until `views_required` of them are pairwise at least `min_angle_deg` apart as seen from the scene
  centre; views older than `max_age` seconds (relative to the newest view) are discarded.
- DropQueue: the bounded queue between the stages of the detector; the oldest item goes when full
  and is counted.
"""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..sync import ApproximateSync

__all__ = ["RigGatherer", "MovingViewSelector", "view_angle_deg", "DropQueue"]


class RigGatherer:
    """Synchronised sets of one frame per camera: add(camera, stamp, item) -> [item per camera] or None."""

    def __init__(self, cameras: list[str], slop: float, queue_size: int = 10):
        if not cameras or len(set(cameras)) != len(cameras):
            raise ValueError(f"rig cameras must be distinct and not empty, got {cameras}")
        self.cameras = list(cameras)
        self._index = {c: i for i, c in enumerate(self.cameras)}
        self._sync = ApproximateSync(len(self.cameras), slop=slop, queue_size=queue_size)

    @property
    def dropped(self) -> int:
        """Frames pushed out of a camera's queue before they found partners."""
        return self._sync.dropped

    def add(self, camera: str, stamp: float, item: Any) -> list[Any] | None:
        return self._sync.add(self._index[camera], stamp, item)


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
    """add(item, camera_centre, stamp) -> list of `views_required` items (oldest first) or None.

    A view is kept when it is at least min_angle_deg away from every kept view; otherwise it is
    rejected (counted in `too_close`). Kept views older than `max_age` seconds behind the newest stamp
    seen are discarded (counted in `expired`), as is a view that arrives that late. After a set is
    returned the selector starts empty.
    """

    views_required: int
    min_angle_deg: float
    max_age: float
    target: tuple[float, float, float] = (0.0, 0.0, 0.0)
    too_close: int = 0
    expired: int = 0
    _kept: list = field(default_factory=list, repr=False)  # (stamp, centre, item)
    _newest: float = float("-inf")

    def __post_init__(self):
        if self.views_required < 1 or not 0 <= self.min_angle_deg <= 180 or self.max_age <= 0:
            raise ValueError(f"bad moving-view settings: views_required={self.views_required}, "
                             f"min_angle_deg={self.min_angle_deg}, max_age={self.max_age}")

    def __len__(self) -> int:
        return len(self._kept)

    def reset(self) -> None:
        self._kept = []

    def add(self, item: Any, centre, stamp: float) -> list[Any] | None:
        stamp = float(stamp)
        self._newest = max(self._newest, stamp)
        horizon = self._newest - self.max_age
        n = len(self._kept)
        self._kept = [k for k in self._kept if k[0] >= horizon]
        self.expired += n - len(self._kept)
        if stamp < horizon:
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
    """A bounded FIFO between threads: put() never blocks; when full the oldest item is dropped and counted."""

    def __init__(self, maxsize: int):
        if maxsize < 1:
            raise ValueError(f"queue size must be >= 1, got {maxsize}")
        self._q: queue.Queue = queue.Queue(maxsize)
        self._lock = threading.Lock()
        self.dropped = 0

    def put(self, item: Any) -> None:
        with self._lock:
            while True:
                try:
                    self._q.put_nowait(item)
                    return
                except queue.Full:
                    try:
                        self._q.get_nowait()
                        self.dropped += 1
                    except queue.Empty:
                        pass

    def get(self, timeout: float) -> Any:
        """The oldest item, or raises queue.Empty after `timeout` seconds."""
        return self._q.get(timeout=timeout)

