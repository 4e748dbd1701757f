"""The audit trail: every inspection's report appended to a JSONL file (flushed and fsynced before the
result is published), and optionally the inspection's input views written to a rosbag2 (mcap) so that
`odd-one-out replay BAG` can run the decision again. Pure: rosbags only, no rclpy; messages arrive here
already serialised (CDR, e.g. rclpy.serialization.serialize_message).

The log survives crashes and full disks:
- one writer per log: the file is locked (flock) while an AuditLog holds it; a second one is refused;
- every record carries the writer's `run_id` (and its `node`); inspection ids continue after the last
  id in the log (`AuditLog.last_id`), so they stay unique within a log across restarts;
- a torn last line (a crash or a full disk mid-write) is fenced off when the log is opened, or before the
  next append of the same run: a newline ends it and a fence record {"audit_fence": "torn line", ...}
  follows, so new records start on a fresh line; `read_audit_log` skips torn lines and reports them.

One bag per inspection, written under `<dir>/partial/<name>/` and moved to `<dir>/<name>/` once closed (a
bag is only readable once closed; partial/ is removed when empty): a bag left in `partial/` (or any bag
folder without metadata.yaml) was interrupted, and `find_view_bags` reports it. Topics of a view bag,
message i of each view topic belongs to view i:

    /views/image        sensor_msgs/msg/Image          the image as received (any supported encoding)
    /views/camera_info  sensor_msgs/msg/CameraInfo     the intrinsics used
    /views/pose         geometry_msgs/msg/PoseStamped  the camera pose used (camera-to-world in frame_id)
    /inspection         std_msgs/msg/String            the JSON report (report.py)
"""
from __future__ import annotations

import errno
import io
import json
import os
import secrets
import stat
import threading
import time
import warnings
from pathlib import Path

__all__ = ["AuditLog", "read_audit_log", "new_run_id", "AuditLogWarning", "FENCE_KEY", "VIEW_TOPICS",
           "REPORT_TOPIC", "PARTIAL_DIR", "write_view_bag", "read_view_bag", "find_view_bags", "BagFormatError",
           "view_bag_path", "interrupted_bags"]

VIEW_TOPICS = {"/views/image": "sensor_msgs/msg/Image", "/views/camera_info": "sensor_msgs/msg/CameraInfo",
               "/views/pose": "geometry_msgs/msg/PoseStamped"}
REPORT_TOPIC = ("/inspection", "std_msgs/msg/String")
FENCE_KEY = "audit_fence"
PARTIAL_DIR = "partial"  # view bags being written (or interrupted) live here until they are closed
_TAIL_BLOCK = 1 << 16


class BagFormatError(ValueError):
    """A folder that is not a view bag of this package; the message names it."""


class AuditLogWarning(UserWarning):
    """read_audit_log skipped a line (torn by a crash, or not JSON)."""


def new_run_id() -> str:
    """A run id: UTC start time and 6 random hex digits, e.g. 20261201T114134Z-3fa2c1."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class AuditLog:
    """Append-only JSONL file, one JSON object per line; each append is written whole (unbuffered) and fsynced.

    AuditLog(path, node="/detector") adds `run_id` and `node` to every record; `last_id` is the highest
    `inspection_id` at the end of the log when it was opened (0 for a new log), then of this run's appends.
    Raises ValueError with one line when the file cannot be opened or another AuditLog holds it. A log whose path
    no longer names the open file (the file or its folder removed, or replaced) is opened again at its path before
    the next record (append says so), so that every record lands where the path says and the ids go on. Records
    that could not be written (a full disk) leave a gap that the next record written names: its `audit_gap`
    {"first_id", "last_id", "count", "error"}, so a reader knows which inspections have no record and why."""

    def __init__(self, path: str | os.PathLike, node: str = "", run_id: str | None = None):
        self.path = Path(path).expanduser()
        self.node = node
        self.run_id = run_id or new_run_id()
        self.last_id = 0
        self.fenced: str | None = None  # what was fenced off at open ("line N: k bytes"), if anything
        self._lock = threading.Lock()
        self._dirty = False  # an append failed part way: the file may end inside a line
        self._lost: tuple[int, int, int] | None = None  # (first id, last id, count) not written since the last record
        self._lost_error = ""
        self._closed = False  # close() was called (a file that failed to open again is retried instead)
        self._f = None
        self._open()

    def _open(self) -> None:
        """Open (or open again) self.path for appending, lock it, read the last id at its end (last_id = the
        larger of that and the ids this object wrote) and fence off a torn last line."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            f = io.FileIO(self.path, "a+")  # O_RDWR | O_APPEND | O_CREAT, unbuffered: nothing waits in a buffer
        except OSError as e:
            raise ValueError(f"{self.path}: cannot open the audit log for appending ({e.strerror})") from None
        self._regular = stat.S_ISREG(os.fstat(f.fileno()).st_mode)
        if self._regular:
            import fcntl

            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.close()
                raise ValueError(f"{self.path}: the audit log is in use by another process (another detector with "
                                 "the same audit_log?); give each detector its own file") from None
        self._f = f
        if self._regular:
            try:
                last_id, torn = _scan_tail(f.fileno())
                self.last_id = max(self.last_id, last_id)
            except OSError as e:
                self._f = None
                f.close()
                raise ValueError(f"{self.path}: cannot read the end of the audit log ({e.strerror})") from None
            if torn is not None:
                self.fenced = f"a torn last line ({torn[1]} bytes at byte {torn[0]})"
                try:
                    self._fence(torn)
                except OSError as e:  # e.g. a full disk: fence it before the next record instead
                    self._dirty = True
                    self.fenced += f", not fenced yet ({e.strerror}): fenced before the next record"

    def _moved(self) -> str | None:
        """Why self.path no longer names the open file (removed or replaced), or None when it does."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return "was removed (or its folder)"
        except OSError as e:
            return f"cannot be checked ({e.strerror})"
        fst = os.fstat(self._f.fileno())
        return None if (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino) else "was replaced by another file"

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[self._f.write(view):]
        try:
            os.fsync(self._f.fileno())
        except OSError as e:
            if e.errno != errno.EINVAL:  # a character device (e.g. /dev/null) cannot be synced
                raise

    def _fence(self, torn: tuple[int, int]) -> None:
        fence = {FENCE_KEY: "torn line", "offset": torn[0], "bytes": torn[1], "run_id": self.run_id,
                 "node": self.node, "time": _now()}
        self._write(b"\n" + _json_line(fence))

    def append(self, record: dict) -> str | None:
        """Write one record as one line. ValueError (nothing written) for a record that is not JSON (NaN, ...);
        OSError (e.g. a full disk) when the write fails: the next append starts on a fresh line. Returns None, or
        one line saying the file at the path had gone and was opened again (the record is in the new file)."""
        record = {**record, "run_id": self.run_id}
        if self.node:
            record.setdefault("node", self.node)
        line = _json_line(record)  # ValueError before anything is written or counted as lost
        with self._lock:
            if self._lost:
                first, last, count = self._lost
                record["audit_gap"] = {"first_id": first, "last_id": last, "count": count, "error": self._lost_error}
                line = _json_line(record)
            try:
                moved = self._append(line, record.get("inspection_id"))
            except OSError as e:  # no record of this inspection: the next one written names the gap
                i = record.get("inspection_id")
                if isinstance(i, int):
                    self._lost = (self._lost[0], i, self._lost[2] + 1) if self._lost else (i, i, 1)
                    self._lost_error = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise
            self._lost = None
            return (f"{self.path}: the audit log {moved} while in use; opened again at its path, records from "
                    f"inspection {record.get('inspection_id')} on are in the new file") if moved else None

    def _append(self, data: bytes, inspection_id) -> str | None:
        """append's work under the lock (data: one record's line, of inspection_id); returns how the file had gone
        (it was opened again), or None."""
        if self._closed:
            raise ValueError(f"{self.path}: the audit log is closed")
        if self._f is None:  # opening it again failed before (e.g. its folder was gone): try again
            try:
                self._open()
            except ValueError as e:
                raise OSError(str(e)) from None
        moved = self._moved() if self._regular else None
        if moved:  # write where the path says, not into a file nobody can find
            old, self._f, self._dirty = self._f, None, False
            old.close()
            try:
                self._open()
            except ValueError as e:
                raise OSError(str(e)) from None
        if self._dirty and self._regular:
            size = os.fstat(self._f.fileno()).st_size
            start = _line_start(self._f.fileno(), size)
            if size and start < size:
                self._fence((start, size - start))
            self._dirty = False
        try:
            self._write(data)
        except OSError:
            self._dirty = True
            raise
        if isinstance(inspection_id, int):
            self.last_id = max(self.last_id, inspection_id)
        return moved

    def close(self) -> str | None:
        """Close the file; never raises. Returns a one-line problem (the log ends inside a line, or the close
        failed) or None."""
        with self._lock:
            f, self._f, self._closed = self._f, None, True
            if f is None:
                return None
            problem = (f"{self.path}: the last append failed; a partial line it may have left is fenced off when "
                       "the log is opened again") if self._dirty else None
            try:
                f.close()
            except OSError as e:
                problem = f"{self.path}: closing the audit log failed ({e.strerror})"
            return problem

    def __enter__(self) -> "AuditLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _json_line(record: dict) -> bytes:
    """One audit line: compact JSON (ValueError for NaN / inf) and a newline, UTF-8."""
    return json.dumps(record, separators=(",", ":"), allow_nan=False).encode("utf-8") + b"\n"


def _line_start(fd: int, size: int) -> int:
    """Offset of the start of the last line of the file (= size when the file ends with a newline)."""
    pos = size
    while pos > 0:
        start = max(0, pos - _TAIL_BLOCK)
        nl = os.pread(fd, pos - start, start).rfind(b"\n")
        if nl >= 0:
            return start + nl + 1
        pos = start
    return 0


def _scan_tail(fd: int) -> tuple[int, tuple[int, int] | None]:
    """(the inspection_id of the last record, (offset, length) of a torn last line or None), reading the file
    backwards only as far as the last record."""
    size = os.fstat(fd).st_size
    if size == 0:
        return 0, None
    end = _line_start(fd, size)
    torn = (end, size - end) if end < size else None
    while end > 0:
        start = _line_start(fd, end - 1)
        line = os.pread(fd, end - 1 - start, start)
        end = start
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("inspection_id"), int):
            return rec["inspection_id"], torn
    return 0, torn


def read_audit_log(path: str | os.PathLike, skipped: list[str] | None = None, strict: bool = False) -> list[dict]:
    """All records of the log (fence records left out). Torn lines (the last line, or a line followed by a
    fence record) are skipped; so is any other line that is not a JSON object, unless strict=True, which
    raises ValueError for it. Each skipped line is described ("path:N: ...") in `skipped` when given, else
    in an AuditLogWarning."""
    data = Path(path).read_bytes()
    lines = data.split(b"\n")
    ends_clean = data.endswith(b"\n")
    parsed: list[tuple[int, object, str]] = []  # (line number, record or None, error)
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
            err = "" if isinstance(rec, dict) else f"a JSON {type(rec).__name__}, not an object"
        except ValueError as e:
            rec, err = None, str(e).splitlines()[0]
        parsed.append((i + 1, rec if not err else None, err))
    out = []
    for k, (n, rec, err) in enumerate(parsed):
        if not err:
            if FENCE_KEY not in rec:
                out.append(rec)
            continue
        nxt = parsed[k + 1][1] if k + 1 < len(parsed) else None
        if k == len(parsed) - 1 and not ends_clean:
            msg = f"{path}:{n}: torn last line (a crash or a full disk while writing); skipped"
        elif isinstance(nxt, dict) and FENCE_KEY in nxt:
            msg = (f"{path}:{n}: torn line (a crash or a full disk while writing), fenced off by run "
                   f"{nxt.get('run_id')} at {nxt.get('time')}; skipped")
        elif strict:
            raise ValueError(f"{path}:{n}: not JSON ({err})")
        else:
            msg = f"{path}:{n}: not a JSON record ({err}); skipped"
        if skipped is not None:
            skipped.append(msg)
        else:
            warnings.warn(msg, AuditLogWarning, stacklevel=2)
    return out


def _typestore():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


def view_bag_path(folder: str | os.PathLike, stamp: float, inspection_id: int) -> Path:
    """`<folder>/inspection_<UTC stamp>_<id>` (5 digits), with `~2`, `~3`, ... when that name is taken (as a
    closed or as an interrupted bag)."""
    path = Path(folder).expanduser() / f"inspection_{time.strftime('%Y%m%d-%H%M%S', time.gmtime(stamp))}_" \
                                       f"{inspection_id:05d}"
    base, n = path.name, 1
    while path.exists() or (path.parent / PARTIAL_DIR / path.name).exists():
        n += 1
        path = path.with_name(f"{base}~{n}")
    return path


def interrupted_bags(folder: str | os.PathLike) -> list[str]:
    """Names of the bags left in `<folder>/partial/` by a writer that stopped while writing them."""
    partial = Path(folder).expanduser() / PARTIAL_DIR
    return sorted(p.name for p in partial.iterdir() if p.is_dir()) if partial.is_dir() else []


def write_view_bag(path: str | os.PathLike, views: list[dict[str, bytes]], report_cdr: bytes, stamp_ns: int) -> Path:
    """Write one inspection: views = [{topic: serialised message}] with the keys of VIEW_TOPICS, and the
    serialised std_msgs/String report. Bag timestamps are stamp_ns + view index (keeps the order).

    The bag is written to `<parent>/partial/<name>` and moved to `path` once closed (partial/ is removed when
    empty), so that `path` only ever holds a complete bag; a process killed meanwhile leaves it in partial/
    (find_view_bags reports it). A failed write (e.g. a full disk) removes the partial bag and raises."""
    import shutil

    from rosbags.rosbag2 import StoragePlugin, Writer

    path = Path(path)
    staging = path.parent / PARTIAL_DIR / path.name
    for p in (path, staging):
        if p.exists():
            raise FileExistsError(f"{p}: exists already")
    staging.parent.mkdir(parents=True, exist_ok=True)
    ts = _typestore()
    writer = Writer(staging, version=9, storage_plugin=StoragePlugin.MCAP)
    try:
        writer.open()
        conns = {t: writer.add_connection(t, typ, typestore=ts) for t, typ in VIEW_TOPICS.items()}
        report_conn = writer.add_connection(REPORT_TOPIC[0], REPORT_TOPIC[1], typestore=ts)
        for i, view in enumerate(views):
            for topic, conn in conns.items():
                writer.write(conn, stamp_ns + i, view[topic])
        writer.write(report_conn, stamp_ns + len(views), report_cdr)
        writer.close()
        os.replace(staging, path)
    except BaseException:
        try:
            writer.abort()
        except Exception:  # the original error is the one to report
            pass
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        try:
            staging.parent.rmdir()  # only when empty: interrupted bags of other runs stay
        except OSError:
            pass
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


def _has_storage(path: Path) -> bool:
    return any(p.suffix in (".mcap", ".db3") for p in path.iterdir() if p.is_file())


def find_view_bags(path: str | os.PathLike, problems: list[str] | None = None) -> list[Path]:
    """A bag folder (holds metadata.yaml) -> [it]; a folder of bags -> its bags, sorted; else BagFormatError.

    Interrupted bags (in partial/, or a folder with a storage file but no metadata.yaml: the writer was killed
    before closing it) are never skipped silently: each is described in `problems` when given (and the
    readable bags returned), else BagFormatError is raised."""
    path = Path(path)
    if (path / "metadata.yaml").is_file():
        return [path]
    if not path.is_dir():
        raise BagFormatError(f"{path}: no such bag folder")
    bags, bad = [], []

    def interrupted(p: Path) -> None:
        bad.append(f"{p}: interrupted view bag (no metadata.yaml: its writer stopped before closing it); "
                   "not readable, and its inspection was never recorded in the audit log")

    if _has_storage(path):
        interrupted(path)
    for p in sorted(q for q in path.iterdir() if q.is_dir()):
        if (p / "metadata.yaml").is_file():
            bags.append(p)
        elif p.name == PARTIAL_DIR:
            for q in sorted(r for r in p.iterdir() if r.is_dir()):
                interrupted(q)
        elif _has_storage(p):
            interrupted(p)
    if not bags and not bad:
        raise BagFormatError(f"{path}: neither a rosbag2 folder (no metadata.yaml) nor a folder of them")
    if bad and problems is None:
        raise BagFormatError(bad[0] + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""))
    if problems is not None:
        problems.extend(bad)
    return bags
