"""`odd-one-out tune-threshold`: the anomaly threshold from recorded inspections of trays known to be normal.

Reads audit logs (the detector's JSONL) or JSON reports; each inspection with status ok is one tray, its largest
object score the score that decides whether the tray passes. The threshold is the lowest at which no more than
--false-rejects of these trays would be rejected (score > threshold); print it and the `ros2 param set` line that
applies it to a running detector (anomaly_threshold is settable while it runs).
"""
from __future__ import annotations

import argparse
import math

from . import CommandError, share, write_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("logs", nargs="+", help="audit logs (.jsonl) or JSON reports of inspections of normal trays")
    p.add_argument("--false-rejects", type=share, default=0.01,
                   help="share of these normal trays you accept to reject (default 0.01)")
    p.add_argument("--node", default="/detector", help="the detector to print the ros2 param set line for")
    p.add_argument("--json", help="write the threshold and the figures here")


def tray_scores(reports: list[dict]) -> list[float]:
    """Each compared tray's largest object score (a tray of no object: 0)."""
    return [max((o["score"] for o in r["objects"]), default=0.0) for r in reports if r.get("status", "ok") == "ok"]


def threshold_for(scores: list[float], false_rejects: float) -> float:
    """The lowest threshold t (in [0, 1]) with at most floor(false_rejects x n) of `scores` above t."""
    if not scores:
        raise ValueError("no inspection with status ok to tune on")
    allowed = math.floor(false_rejects * len(scores) + 1e-9)
    ranked = sorted(scores, reverse=True)
    return 0.0 if allowed >= len(ranked) else float(ranked[allowed])


def run(args) -> int:
    import json
    from pathlib import Path

    from ..inspection.audit import read_audit_log
    from ..inspection.report import validate_report

    reports, skipped = [], 0
    for name in args.logs:
        path = Path(name)
        if not path.is_file():
            raise CommandError(f"{path}: no such file")
        try:
            records = read_audit_log(path, []) if path.suffix == ".jsonl" else [json.loads(path.read_text())]
        except (OSError, ValueError) as e:
            raise CommandError(f"{path}: not an audit log or report ({e})") from None
        for rec in records:
            try:
                reports.append(validate_report(rec))
            except ValueError:
                skipped += 1
    scores = tray_scores(reports)
    try:
        t = threshold_for(scores, args.false_rejects)
    except ValueError as e:
        raise CommandError(f"{e} in {', '.join(args.logs)}") from None
    rejected = sum(s > t for s in scores)
    print(f"{len(scores)} normal trays ({len(reports) - len(scores)} not compared, {skipped} records skipped); "
          f"largest score per tray: median {sorted(scores)[len(scores) // 2]:.3f}, max {max(scores):.3f}")
    print(f"anomaly_threshold {t:.4f}: {rejected} of {len(scores)} of these trays rejected "
          f"({rejected / len(scores):.1%}, asked at most {args.false_rejects:.1%})")
    if len(scores) < 50:
        print(f"note: {len(scores)} trays are few; the false-reject rate on new trays may differ by several points")
    print(f"apply: ros2 param set {args.node} anomaly_threshold {t:.4f}")
    if args.json:
        write_json(args.json, {"anomaly_threshold": t, "trays": len(scores), "rejected": rejected,
                               "false_rejects_asked": args.false_rejects})
    return 0
