"""Approximate-time matching of several message streams by stamp. Pure: no ROS imports.

Written here because message_filters is not obtainable from PyPI; it follows the idea of its
ApproximateTimeSynchronizer in a simpler form: a set is emitted when every stream has a message
within `slop` seconds of the newest arrival; matched and older messages are dropped.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class ApproximateSync:
    """Match one message from each of `n_streams` streams whose stamps lie within `slop` seconds.

    add(stream, stamp, msg) returns the matched list [msg_0, ..., msg_{n-1}] or None.
    Each stream keeps at most `queue_size` messages (oldest dropped, counted in `dropped`).
    """

    n_streams: int
    slop: float = 0.05
    queue_size: int = 10
    on_match: Callable[[list[Any]], None] | None = None
    dropped: int = 0
    _queues: list[deque] = field(default_factory=list, repr=False)

    def __post_init__(self):
        if self.n_streams < 1 or self.slop < 0 or self.queue_size < 1:
            raise ValueError(f"bad ApproximateSync settings: {self.n_streams=}, {self.slop=}, {self.queue_size=}")
        self._queues = [deque() for _ in range(self.n_streams)]

    def add(self, stream: int, stamp: float, msg: Any) -> list[Any] | None:
        q = self._queues[stream]
        if len(q) >= self.queue_size:
            q.popleft()
            self.dropped += 1
        q.append((float(stamp), msg))
        match = []
        for i, other in enumerate(self._queues):
            if i == stream:
                match.append(len(q) - 1)
                continue
            best = min(range(len(other)), key=lambda j: abs(other[j][0] - stamp), default=None)
            if best is None or abs(other[best][0] - stamp) > self.slop:
                return None
            match.append(best)
        out = [self._queues[i][j][1] for i, j in enumerate(match)]
        for i, j in enumerate(match):  # drop the matched message and everything stamped before it
            t = self._queues[i][j][0]
            self._queues[i] = deque(m for k, m in enumerate(self._queues[i]) if k != j and m[0] >= t)
        if self.on_match is not None:
            self.on_match(out)
        return out
