"""`odd-one-out replay BAG`: run a recorded inspection again, offline, and compare with the recorded result.

BAG is one view bag written by the detector (parameter record_views_dir), or a folder of them. The
views are rebuilt from the recorded Image, CameraInfo and PoseStamped messages by the same conversion
the detector uses (ros/conversions.py::posed_view), the model is the recorded checkpoint (or
--checkpoint), the threshold the recorded one. Every bag that cannot be read or replayed (interrupted,
not a view bag, its checkpoint missing) is reported on stderr, one line each, and the others are still
replayed. Exit codes: 0 every replay agrees with its record, 1 some differ (or the checkpoint changed),
2 bad input (some bag or folder could not be read or replayed).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import CommandError, nonnegative_float, write_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bags", nargs="+", metavar="BAG", help="a view bag folder, or a folder of them")
    p.add_argument("--checkpoint", default=None, help="model checkpoint (default: the one recorded in the bag)")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument("--tolerance", type=nonnegative_float, default=1e-4,
                   help="largest difference of scores (and of box values in m / rad) that counts as the same "
                        "(default: 1e-4)")
    p.add_argument("--json", default=None, help="write the replayed reports to this file")


def _problem(msg: str) -> None:
    """One bag that cannot be read or replayed: one line on stderr, and the others are still replayed."""
    print(f"odd-one-out replay: {msg}", file=sys.stderr)


def run(args) -> int:
    from ..env import apply_ros_env_defaults

    apply_ros_env_defaults()
    from geometry_msgs.msg import PoseStamped
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import String

    from ..inspection.audit import BagFormatError, find_view_bags, read_view_bag
    from ..inspection.report import build_report, compare_objects, validate_report
    from ..ros.conversions import posed_view

    problems: list[str] = []
    bags = []
    for p in args.bags:
        try:
            bags += find_view_bags(p, problems)
        except BagFormatError as e:
            problems.append(str(e))
    recorded = []
    for bag in bags:
        try:
            raw_views, raw_report = read_view_bag(bag)
            report = validate_report(json.loads(deserialize_message(raw_report, String).data))
            views = []
            for i, v in enumerate(raw_views):
                image = deserialize_message(v["/views/image"], Image)
                info = deserialize_message(v["/views/camera_info"], CameraInfo)
                pose = deserialize_message(v["/views/pose"], PoseStamped)
                name = report["views"][i]["camera"] if i < len(report["views"]) else f"view{i}"
                views.append(posed_view(image, info, pose, name))
        except BagFormatError as e:
            problems.append(str(e))
            continue
        except (ValueError, TypeError) as e:  # json.JSONDecodeError is a ValueError
            problems.append(f"{bag}: {e}")
            continue
        recorded.append((bag, report, views))
    for msg in problems:
        _problem(msg)

    inspectors: dict[str, object] = {}
    status, replayed = 0, []
    for bag, report, views in recorded:
        model = report["model"]
        ck = args.checkpoint or model.get("checkpoint")
        if not ck:
            problems.append(f"{bag}: the inspection was made by an injected model; pass --checkpoint")
            _problem(problems[-1])
            continue
        if ck not in inspectors:
            from ..inspection.loader import load_inspector

            try:
                inspectors[ck] = load_inspector(ck, args.device)
            except ValueError as e:  # CheckpointError is one
                inspectors[ck] = e
        loaded = inspectors[ck]
        if isinstance(loaded, Exception):
            problems.append(f"{bag}: {loaded}")
            _problem(problems[-1])
            continue
        guard = loaded.guarded
        guard.inspector.threshold = report["threshold"]
        sha = loaded.info["sha256"]
        changed = bool(model.get("sha256")) and sha != model["sha256"]
        try:
            result = guard(views)
        except (ValueError, RuntimeError) as e:  # NonFiniteOutput is a ValueError
            problems.append(f"{bag}: the replay failed ({type(e).__name__}: {str(e).splitlines()[0]})")
            _problem(problems[-1])
            continue
        again = build_report(inspection_id=report["inspection_id"], stamp=report["stamp"],
                             frame_id=report["frame_id"], objects=result.objects, threshold=report["threshold"],
                             views=report["views"], latency={"inference": result.latency_s},
                             model={**model, **loaded.info}, node="replay")  # the replaying model's own
        diffs = compare_objects(report["objects"], again["objects"], args.tolerance)
        if changed:
            diffs.insert(0, f"checkpoint {ck} differs from the recorded one (sha256 {model['sha256'][:12]}...)")
        replayed.append({"bag": str(bag), "same": not diffs, "differences": diffs, "report": again})
        _print(bag, report, again, diffs)
        status = status or (1 if diffs else 0)
    if args.json:
        write_json(args.json, replayed)
    if problems:
        raise CommandError(f"{len(problems)} bag(s) or folder(s) could not be read or replayed (above); "
                           f"{len(replayed)} bag(s) replayed")
    return status


def _fmt(o: dict | None) -> str:
    return f"{o['label']:<9} {o['score']:.6f}" if o else "-"


def _print(bag: Path, rec: dict, rep: dict, diffs: list[str]) -> None:
    print(f"{bag.name}: inspection {rec['inspection_id']}, {len(rec['views'])} views "
          f"({', '.join(v['camera'] for v in rec['views'])}), frame {rec['frame_id']}")
    print(f"  {'id':>3}  {'recorded':<22} {'replayed':<22} centre (m)")
    for i in range(max(len(rec["objects"]), len(rep["objects"]))):
        a = rec["objects"][i] if i < len(rec["objects"]) else None
        b = rep["objects"][i] if i < len(rep["objects"]) else None
        centre = " ".join(f"{x:+.3f}" for x in (a or b)["center"])
        print(f"  {i:>3}  {_fmt(a):<22} {_fmt(b):<22} {centre}")
    if not rec["objects"] and not rep["objects"]:
        print("       no objects, recorded and replayed")
    print("  same result" if not diffs else "  DIFFERENT: " + "; ".join(diffs))
