"""`odd-one-out inspect`: trigger one inspection of a running detector (its ~/inspect service) and print the verdict.

Exit codes: 0 the tray passes (status ok, nothing anomalous); 1 it does not (a reject, or the detector could not
inspect or compare it: the reason is printed); 2 no verdict (no detector, the call refused or timed out).
"""
from __future__ import annotations

import argparse

from . import CommandError, positive_float, write_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--node", default="/detector", help="the detector's fully qualified name (default /detector)")
    p.add_argument("--timeout", type=positive_float, default=90.0,
                   help="seconds to wait for the service and the verdict (default 90)")
    p.add_argument("--json", help="write the verdict (the JSON report) here")


def run(args) -> int:
    import json

    import rclpy
    from std_srvs.srv import Trigger

    from ..inspection.report import is_pass, validate_report

    service = f"{args.node.rstrip('/')}/inspect"
    rclpy.init()
    try:
        node = rclpy.create_node("odd_one_out_inspect")
        client = node.create_client(Trigger, service)
        if not client.wait_for_service(timeout_sec=min(args.timeout, 30.0)):
            raise CommandError(f"no service {service}: is the detector running (ros2 launch odd_one_out_ros "
                               "detect.launch.py) in this ROS_DOMAIN_ID?")
        future = client.call_async(Trigger.Request())
        rclpy.spin_until_future_complete(node, future, timeout_sec=args.timeout)
        if not future.done():
            raise CommandError(f"no answer from {service} within {args.timeout:g} s")
        res = future.result()
    finally:
        rclpy.try_shutdown()
    try:
        report = validate_report(json.loads(res.message))
    except ValueError:  # not a verdict: the reason the call was refused
        raise CommandError(f"{service}: {res.message}") from None
    if args.json:
        write_json(args.json, report)
    _print(report)
    return 0 if is_pass(report) else 1


def _print(r: dict) -> None:
    from ..inspection.report import is_pass

    print(f"inspection {r['inspection_id']}: {r.get('status', 'ok')} {'PASS' if is_pass(r) else 'NO PASS'}"
          + (f" ({r['reason']})" if r.get("reason") else "")
          + f"; {r['n_objects']} objects, {r['n_anomalous']} anomalous (threshold {r['threshold']:g}), "
          f"views {', '.join(v['camera'] for v in r['views']) or 'none'}")
    for m in r.get("missing_views", []):
        print(f"  camera {m['camera']} not used: {m['reason']}")
    for o in sorted(r["objects"], key=lambda o: -o["score"]):
        print(f"  {o.get('uid', o['id']):>8} {o['label']:<10} {o['score']:.3f}  centre "
              + " ".join(f"{c:+.3f}" for c in o["center"]) + "  size " + " ".join(f"{c:.3f}" for c in o["size"]))
