"""The JSON report of one inspection (schema `odd_one_out_ros/detections/3`), as published on the
detector's `~/detections` topic, appended to the audit log and stored in each view bag. Every attempted inspection
has one, also one that could not see or compare: its `status` says so, and a report whose status is not "ok" is
never a pass (docs/ros.md "For the arm").

    {"schema": "odd_one_out_ros/detections/3",
     "inspection_id": 3,                       # unique within the audit log (continues after its last id)
     "status": "ok",                           # ok | cannot_inspect | cannot_compare (STATUSES)
     "reason": "",                             # why not ok, one line ("" when ok)
     "stamp": 1764336000.25,                   # seconds: the newest view's stamp (= header.stamp of all outputs)
     "frame_id": "world",                      # frame of every centre / box (docs/frames.md)
     "anomaly_detected": true, "n_objects": 3, "n_anomalous": 1,
     "threshold": 0.5,                         # score > threshold -> "anomalous"
     "objects": [{"id": 0, "uid": "3/0",       # uid "<inspection_id>/<id>": the object's id for an arm
                  "center": [x, y, z], "size": [dx, dy, dz], "yaw": 0.3,             # metres, radians
                  "score": 0.91, "label": "anomalous",                                # score in [0, 1]
                  "box_score": 0.87}],    # the box estimator's confidence in [0, 1] (1.0: the density estimator)
     "views": [{"camera": "cam0", "stamp": 1764336000.25, "width": 256, "height": 256,
                "position": [x, y, z], "pose_source": "static"}],                   # camera centre in frame_id
     "missing_views": [{"camera": "cam4", "reason": "encoding: unsupported image encoding 'yuv422' ..."}],
     "latency_s": {"inference": 0.71, "waited": 0.02, "pipeline": 0.78},  # the model; the set waiting for it
                                                           # (busy with the previous set); last view in -> report
     "model": {"checkpoint": "/path/cpu_default.pt", "sha256": "...", "config": "cpu", "variant": "full"},
     "node": "/detector"}

Object ids are the order of the model's boxes (sorted by centre x, then y) and equal the marker ids.
`missing_views` names the rig's cameras that gave no usable view for this inspection and why. Older reports are
still read: schema 1 (no missing_views), schema 2 (no status, reason, uid). Pure: no ROS imports.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

from ..geometry import Box3D, match_truth

SCHEMA = "odd_one_out_ros/detections/3"
OLD_SCHEMAS = ("odd_one_out_ros/detections/1", "odd_one_out_ros/detections/2")  # still readable
LABELS = ("normal", "anomalous")
STATUSES = ("ok", "cannot_inspect", "cannot_compare")
"""ok: the objects were compared; cannot_inspect: no usable view set (unusable, frozen or too few views, a failed
model run, a detector deactivated); cannot_compare: fewer objects than a comparison needs"""

__all__ = ["SCHEMA", "LABELS", "STATUSES", "object_uid", "object_record", "view_record", "build_report",
           "validate_report", "is_pass", "report_boxes", "compare_objects", "match_to_truth"]


def _floats(v, n: int | None = None) -> list[float]:
    out = [float(x) for x in np.asarray(v, dtype=np.float64).reshape(-1)]
    if n is not None and len(out) != n:
        raise ValueError(f"expected {n} numbers, got {out}")
    return out


def object_uid(inspection_id: int, index: int) -> str:
    """An object's id beyond its inspection: "<inspection_id>/<index>" (the typed verdict's ObjectVerdict.id)."""
    return f"{int(inspection_id)}/{int(index)}"


def object_record(index: int, box: Box3D, score: float, anomalous: bool, box_score: float = 1.0,
                  inspection_id: int = 0) -> dict:
    return {"id": int(index), "uid": object_uid(inspection_id, index), "center": _floats(box.center, 3),
            "size": _floats(box.size, 3), "yaw": float(box.yaw),
            "score": float(score), "label": LABELS[bool(anomalous)], "box_score": float(box_score)}


def view_record(view, pose_source: str, **extra) -> dict:
    """The report's entry for one view (a views.PosedView): camera name, stamp, size, camera centre in frame_id."""
    return {"camera": view.source, "stamp": float(view.stamp), "width": int(view.camera.width),
            "height": int(view.camera.height), "position": [round(float(x), 6) for x in view.camera.center],
            "pose_source": pose_source, **extra}


def build_report(*, inspection_id: int, stamp: float, frame_id: str, objects: Iterable, threshold: float,
                 views: list[dict], latency: dict, model: dict, node: str = "",
                 missing_views: list[dict] = (), status: str = "ok", reason: str = "") -> dict:
    """objects: anything with .box, .score, .anomalous (model.inference.ObjectResult); views: view_record()s;
    missing_views: [{"camera": name, "reason": text}] of the cameras that gave no usable view; status (STATUSES)
    and the reason when it is not "ok"."""
    if status not in STATUSES or (status == "ok") != (not reason):
        raise ValueError(f"status {status!r} with reason {reason!r}: a status of {STATUSES}, a reason when not ok")
    objs = [object_record(i, o.box, o.score, o.anomalous, getattr(o, "box_score", 1.0), inspection_id)
            for i, o in enumerate(objects)]
    n_anom = sum(o["label"] == "anomalous" for o in objs)
    return {"schema": SCHEMA, "inspection_id": int(inspection_id), "status": status, "reason": str(reason),
            "stamp": float(stamp), "frame_id": str(frame_id),
            "anomaly_detected": n_anom > 0, "n_objects": len(objs), "n_anomalous": n_anom,
            "threshold": float(threshold), "objects": objs, "views": list(views),
            "missing_views": [{"camera": str(m["camera"]), "reason": str(m["reason"])} for m in missing_views],
            "latency_s": {k: float(v) for k, v in latency.items()}, "model": dict(model), "node": str(node)}


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(f"not a valid {SCHEMA} report: {msg}")


def _finite_list(v: Any, n: int) -> bool:
    return isinstance(v, list) and len(v) == n and all(isinstance(x, (int, float)) and math.isfinite(x) for x in v)


def validate_report(d: Any) -> dict:
    """Check a decoded report against the schema; returns it, or raises ValueError saying what is wrong."""
    _check(isinstance(d, dict), f"expected a JSON object, got {type(d).__name__}")
    _check(d.get("schema") == SCHEMA or d.get("schema") in OLD_SCHEMAS,
           f"schema is {d.get('schema')!r}, expected {SCHEMA!r}")
    for key, typ in (("inspection_id", int), ("stamp", (int, float)), ("frame_id", str), ("anomaly_detected", bool),
                     ("n_objects", int), ("n_anomalous", int), ("threshold", (int, float)), ("objects", list),
                     ("views", list), ("latency_s", dict), ("model", dict)):
        _check(isinstance(d.get(key), typ), f"{key!r} missing or not {getattr(typ, '__name__', typ)}")
    for i, o in enumerate(d["objects"]):
        _check(isinstance(o, dict), f"objects[{i}] is not an object")
        _check(o.get("id") == i, f"objects[{i}].id is {o.get('id')!r}, expected {i}")
        _check(_finite_list(o.get("center"), 3) and _finite_list(o.get("size"), 3), f"objects[{i}] centre/size")
        _check(all(s >= 0 for s in o["size"]), f"objects[{i}].size has a negative extent")
        _check(isinstance(o.get("yaw"), (int, float)) and math.isfinite(o["yaw"]), f"objects[{i}].yaw")
        _check(isinstance(o.get("score"), (int, float)) and 0.0 <= o["score"] <= 1.0, f"objects[{i}].score")
        _check(o.get("label") in LABELS, f"objects[{i}].label is {o.get('label')!r}")
        _check("box_score" not in o or (isinstance(o["box_score"], (int, float)) and 0.0 <= o["box_score"] <= 1.0),
               f"objects[{i}].box_score")
    n_anom = sum(o["label"] == "anomalous" for o in d["objects"])
    _check(d["n_objects"] == len(d["objects"]) and d["n_anomalous"] == n_anom, "counts disagree with objects")
    _check(d["anomaly_detected"] == (n_anom > 0), "anomaly_detected disagrees with the labels")
    for i, v in enumerate(d["views"]):
        _check(isinstance(v, dict) and isinstance(v.get("camera"), str), f"views[{i}].camera")
    if d["schema"] == SCHEMA:
        _check(d.get("status") in STATUSES, f"status is {d.get('status')!r}, expected one of {STATUSES}")
        _check(isinstance(d.get("reason"), str) and (d["status"] == "ok") == (not d["reason"]),
               "reason must be a string, empty exactly when the status is ok")
        for i, o in enumerate(d["objects"]):
            _check(o.get("uid") == object_uid(d["inspection_id"], i), f"objects[{i}].uid is {o.get('uid')!r}")
    if d["schema"] != OLD_SCHEMAS[0]:
        missing = d.get("missing_views")
        _check(isinstance(missing, list) and all(isinstance(m, dict) and isinstance(m.get("camera"), str)
                                                 and isinstance(m.get("reason"), str) for m in missing),
               "missing_views must be a list of {camera, reason}")
        _check(not {m["camera"] for m in missing} & {v["camera"] for v in d["views"]},
               "a camera is both in views and in missing_views")
    return d


def is_pass(report: dict) -> bool:
    """The tray passes: it was inspected and compared (status ok; a report before schema 3 had no other) and no
    object is anomalous."""
    return report.get("status", "ok") == "ok" and not report["anomaly_detected"]


def report_boxes(report: dict) -> list[Box3D]:
    return [Box3D(o["center"], o["size"], o["yaw"]) for o in report["objects"]]


def _yaw_diff(a: float, b: float) -> float:
    """Difference of two box yaws modulo pi (a box turned by 180 degrees is the same box)."""
    d = (a - b) % math.pi
    return min(d, math.pi - d)


def compare_objects(recorded: list[dict], replayed: list[dict], tol: float = 1e-4) -> list[str]:
    """Differences between two object lists of reports (same order); [] when they agree within tol
    (metres, radians, score units) and have the same labels."""
    if len(recorded) != len(replayed):
        return [f"{len(recorded)} objects recorded, {len(replayed)} replayed"]
    out = []
    for a, b in zip(recorded, replayed):
        i = a["id"]
        if a["label"] != b["label"]:
            out.append(f"object {i}: label {a['label']} recorded, {b['label']} replayed")
        if abs(a["score"] - b["score"]) > tol:
            out.append(f"object {i}: score {a['score']:.6f} recorded, {b['score']:.6f} replayed")
        dc = float(np.max(np.abs(np.subtract(a["center"], b["center"]))))
        ds = float(np.max(np.abs(np.subtract(a["size"], b["size"]))))
        if dc > tol or ds > tol or _yaw_diff(a["yaw"], b["yaw"]) > tol:
            out.append(f"object {i}: box differs (centre {dc:.2e} m, size {ds:.2e} m, "
                       f"yaw {_yaw_diff(a['yaw'], b['yaw']):.2e} rad)")
    return out


def match_to_truth(truth: list[Box3D], detected: list[Box3D], min_iou: float = 0.1
                   ) -> tuple[list[int | None], list[int]]:
    """Greedy one-to-one matching by 3D IoU (highest first, at least min_iou).

    Returns (for each truth box the index of its detection or None, indices of unmatched detections).
    """
    match = match_truth(truth, detected, min_iou)
    return [m if m >= 0 else None for m in match], [d for d in range(len(detected)) if d not in match]
