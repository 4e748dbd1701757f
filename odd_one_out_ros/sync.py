"""Approximate-time matching of several message streams by stamp. Pure: no ROS imports.

Written here because message_filters is not obtainable from PyPI; it follows the idea of its
ApproximateTimeSynchronizer in a simpler form: a set is emitted when every stream has a message
within `slop` seconds of the newest arrival; matched and older messages are dropped. Every message
that leaves a queue without being matched is counted, per stream, in `dropped_by_stream`.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class ApproximateSync:
    """Match one message from each of `n_streams` streams whose stamps lie within `slop` seconds.

    add(stream, stamp, msg) returns the matched list [msg_0, ..., msg_{n-1}] or None.
    Each stream keeps at most `queue_size` messages (oldest dropped); messages older than a match are
    dropped too. Both are counted in `dropped_by_stream[stream]` (total: `dropped`).
    """

    n_streams: int
    slop: float = 0.05
    queue_size: int = 10
    dropped_by_stream: list[int] = field(default_factory=list)
    _queues: list[deque] = field(default_factory=list, repr=False)

    def __post_init__(self):
        if self.n_streams < 1 or self.slop < 0 or self.queue_size < 1:
            raise ValueError(f"bad ApproximateSync settings: {self.n_streams=}, {self.slop=}, {self.queue_size=}")
        self._queues = [deque() for _ in range(self.n_streams)]
        self.dropped_by_stream = [0] * self.n_streams

    @property
    def dropped(self) -> int:
        return sum(self.dropped_by_stream)

    def pending(self, stream: int) -> int:
        """Messages of `stream` waiting for partners."""
        return len(self._queues[stream])

    def prune(self, stream: int, keep: Callable[[Any], bool]) -> int:
        """Drop (and count) the messages of `stream` for which keep(msg) is False; returns how many."""
        q = self._queues[stream]
        kept = deque(m for m in q if keep(m[1]))
        n = len(q) - len(kept)
        self._queues[stream] = kept
        self.dropped_by_stream[stream] += n
        return n

    def add(self, stream: int, stamp: float, msg: Any) -> list[Any] | None:
        q = self._queues[stream]
        if len(q) >= self.queue_size:
            q.popleft()
            self.dropped_by_stream[stream] += 1
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
            kept = deque(m for k, m in enumerate(self._queues[i]) if k != j and m[0] >= t)
            self.dropped_by_stream[i] += len(self._queues[i]) - 1 - len(kept)
            self._queues[i] = kept
        return out
