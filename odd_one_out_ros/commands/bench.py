"""`odd-one-out bench`: latency and peak memory of one inspection, and sparse vs vanilla attention."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", choices=["cpu", "paper", "tiny"], default="cpu", help="model config (default: cpu)")
    p.add_argument("--checkpoint", help="use this checkpoint's config and weights instead of random ones")
    p.add_argument("--views", type=int, default=5, help="input views M (default 5)")
    p.add_argument("--objects", type=int, default=6, help="objects N (default 6)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default cpu)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: all cores)")
    p.add_argument("--repeat", type=int, default=5, help="timed runs after 2 warm-up runs (default 5)")
    p.add_argument("--attention", default="3,6,12", help="object counts for the attention comparison ('' = skip)")
    p.add_argument("--json", help="write the results to this file")


def run(args) -> int:
    import os

    import torch

    from ..model.bench import bench_attention, bench_inspection
    from ..model.config import preset
    from ..model.network import OddOneOutNet

    if not 1 <= args.views <= 64 or not 1 <= args.objects <= 64:
        print("odd-one-out bench: --views and --objects must be in 1..64", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    if args.checkpoint:
        from ..model.checkpoint import CheckpointError, load_checkpoint

        try:
            net, _ = load_checkpoint(args.checkpoint, args.device)
        except CheckpointError as e:
            print(f"odd-one-out bench: {e}", file=sys.stderr)
            return 2
    else:
        cfg = preset(args.config)
        cfg.encoder.weights = ""  # speed does not depend on the weights
        net = OddOneOutNet(cfg)
    result = bench_inspection(net, args.views, args.objects, args.device, repeat=args.repeat)
    counts = [int(n) for n in args.attention.split(",") if n.strip()]
    if counts:
        result["attention_ms_median"] = bench_attention(net.cfg, counts, args.device, repeat=args.repeat)
    print(f"{result['config']} ({result['variant']}) on {result['device']}, {result['threads']} threads, "
          f"M={args.views} views, N={args.objects} objects: {result['latency_ms_median']:.0f} ms median "
          f"(volume {result['stage_ms_median']['volume']:.0f}, boxes {result['stage_ms_median']['boxes']:.0f}, "
          f"classify {result['stage_ms_median']['classify']:.0f}), peak memory {result['peak_memory_mb']:.0f} MB")
    for kind, row in result.get("attention_ms_median", {}).items():
        print(f"  {kind:<8} attention + head: " + ", ".join(f"N={n}: {ms:.0f} ms" for n, ms in row.items()))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0
