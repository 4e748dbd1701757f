"""The audit trail: every inspection's report appended to a JSONL file (flushed and fsynced before the
result is published), and optionally the inspection's input views written to a rosbag2 (mcap) so that
`odd-one-out replay BAG` can run the decision again. Pure: rosbags only, no rclpy; messages arrive here
already serialised (CDR, e.g. rclpy.serialization.serialize_message).

One bag per inspection, closed at once (a bag is only readable once closed; a process that dies later
loses nothing already recorded). Topics of a view bag, message i of each view topic belongs to view i:

    /views/image        sensor_msgs/msg/Image          the image as received (any supported encoding)
    /views/camera_info  sensor_msgs/msg/CameraInfo     the intrinsics used
    /views/pose         geometry_msgs/msg/PoseStamped  the camera pose used (camera-to-world in frame_id)
    /inspection         std_msgs/msg/String            the JSON report (report.py)
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

__all__ = ["AuditLog", "read_audit_log", "VIEW_TOPICS", "REPORT_TOPIC", "write_view_bag", "read_view_bag",
           "find_view_bags", "BagFormatError"]

VIEW_TOPICS = {"/views/image": "sensor_msgs/msg/Image", "/views/camera_info": "sensor_msgs/msg/CameraInfo",
               "/views/pose": "geometry_msgs/msg/PoseStamped"}
REPORT_TOPIC = ("/inspection", "std_msgs/msg/String")


class BagFormatError(ValueError):
    """A folder that is not a view bag of this package; the message names it."""


class AuditLog:
    """Append-only JSONL file, one JSON object per line; each append is flushed and fsynced."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(self.path, "a", encoding="utf-8")
        except OSError as e:
            raise ValueError(f"{self.path}: cannot open the audit log for appending ({e.strerror})") from None
        self._lock = threading.Lock()

    def append(self, record: dict) -> None:
        line = json.dumps(record, separators=(",", ":"), allow_nan=False)
        with self._lock:
            self._f.write(line + "\n")
            self._f.flush()
            os.fsync(self._f.fileno())

    def close(self) -> None:
        with self._lock:
            if not self._f.closed:
                self._f.close()


def read_audit_log(path: str | os.PathLike) -> list[dict]:
    """All records; a torn last line (a crash while writing) is skipped, any other bad line raises ValueError."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines) - 1:
                break
            raise ValueError(f"{path}:{i + 1}: not JSON ({e})") from None
    return out


def _typestore():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


def write_view_bag(path: str | os.PathLike, views: list[dict[str, bytes]], report_cdr: bytes, stamp_ns: int) -> Path:
    """Write one inspection: views = [{topic: serialised message}] with the keys of VIEW_TOPICS, and the
    serialised std_msgs/String report. Bag timestamps are stamp_ns + view index (keeps the order)."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ts = _typestore()
    writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    try:
        conns = {t: writer.add_connection(t, typ, typestore=ts) for t, typ in VIEW_TOPICS.items()}
        report_conn = writer.add_connection(REPORT_TOPIC[0], REPORT_TOPIC[1], typestore=ts)
        for i, view in enumerate(views):
            for topic, conn in conns.items():
                writer.write(conn, stamp_ns + i, view[topic])
        writer.write(report_conn, stamp_ns + len(views), report_cdr)
    finally:
        writer.close()
    return path


def read_view_bag(path: str | os.PathLike) -> tuple[list[dict[str, bytes]], bytes]:
    """(views as written, the serialised report) of one view bag; BagFormatError for anything else."""
    from rosbags.rosbag2 import Reader, ReaderError

    path = Path(path)
    by_topic: dict[str, list[tuple[int, bytes]]] = {}
    try:
        with Reader(path) as reader:
            for conn, t, raw in reader.messages():
                by_topic.setdefault(conn.topic, []).append((t, bytes(raw)))
    except (ReaderError, OSError, KeyError, ValueError) as e:
        raise BagFormatError(f"{path}: not a readable rosbag2 ({type(e).__name__}: {e})") from None
    missing = [t for t in (*VIEW_TOPICS, REPORT_TOPIC[0]) if t not in by_topic]
    if missing:
        raise BagFormatError(f"{path}: not a view bag of odd_one_out_ros (no {', '.join(missing)})")
    for msgs in by_topic.values():
        msgs.sort(key=lambda m: m[0])
    counts = {t: len(by_topic[t]) for t in VIEW_TOPICS}
    if len(set(counts.values())) != 1 or len(by_topic[REPORT_TOPIC[0]]) != 1:
        raise BagFormatError(f"{path}: inconsistent view bag (messages per topic: {counts}, "
                             f"{len(by_topic[REPORT_TOPIC[0]])} reports)")
    n = next(iter(counts.values()))
    views = [{t: by_topic[t][i][1] for t in VIEW_TOPICS} for i in range(n)]
    return views, by_topic[REPORT_TOPIC[0]][0][1]


def find_view_bags(path: str | os.PathLike) -> list[Path]:
    """A bag folder (holds metadata.yaml) -> [it]; a folder of bags -> its bags, sorted; else BagFormatError."""
    path = Path(path)
    if (path / "metadata.yaml").is_file():
        return [path]
    if path.is_dir():
        bags = sorted(p for p in path.iterdir() if (p / "metadata.yaml").is_file())
        if bags:
            return bags
        raise BagFormatError(f"{path}: neither a rosbag2 folder (no metadata.yaml) nor a folder of them")
    raise BagFormatError(f"{path}: no such bag folder")
