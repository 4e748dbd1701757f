"""`odd-one-out bench`: latency and peak memory of one inspection against a same-run ResNet-18 forward over the same
images (reference_ms, ratio), and sparse vs vanilla attention;
with --train, milliseconds per training step (stage 1 and 2) against a same-run ResNet-18 reference."""
from __future__ import annotations

import argparse

from ..model.config import PRESETS
from . import CommandError, write_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", choices=PRESETS, default="cpu", help="model config (default: cpu)")
    p.add_argument("--checkpoint", help="use this checkpoint's config and weights instead of random ones")
    p.add_argument("--views", type=int, default=5, help="input views M (default 5)")
    p.add_argument("--objects", type=int, default=6, help="objects N (default 6)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default cpu)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: all cores)")
    p.add_argument("--repeat", type=int, default=5, help="timed runs after 2 warm-up runs (default 5)")
    p.add_argument("--attention", default="3,6,12", help="object counts for the attention comparison ('' = skip)")
    p.add_argument("--json", help="write the results to this file")
    p.add_argument("--train", action="store_true",
                   help="time training steps instead (stage 1 and 2, one scene per step, the shipped recipe's "
                        "settings, one thread unless --threads) and a ResNet-18 forward + backward over five "
                        "256 x 256 images in the same run")
    p.add_argument("--data", help="with --train: dataset root or scene folder (default: the shipped sample scene)")
    p.add_argument("--train-views", default="4,3", help="with --train: input,target views (default 4,3)")
    p.add_argument("--rays", type=int, help="with --train: RGB rays per target view (default: TrainConfig's)")
    p.add_argument("--feature-rays", type=int,
                   help="with --train: feature rays per target view (default: TrainConfig's)")
    p.add_argument("--backbone", choices=["frozen", "trained"],
                   help="with --train: the 2D backbone frozen (cached) or trained (default: TrainConfig's, frozen)")


def run(args) -> int:
    import os

    import torch

    from ..benchmark import bench_attention, bench_inspection
    from ..model.config import preset
    from ..model.network import OddOneOutNet

    if args.train:
        return run_train(args)
    if not 1 <= args.views <= 64 or not 1 <= args.objects <= 64:
        raise CommandError("--views and --objects must be in 1..64")
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    if args.checkpoint:
        from ..inspection.loader import load_inspector

        try:
            net = load_inspector(args.checkpoint, args.device).net
        except ValueError as e:  # CheckpointError is one
            raise CommandError(str(e)) from None
    else:
        net = OddOneOutNet(preset(args.config).changed("encoder", weights=""))  # speed does not depend on them
    result = bench_inspection(net, args.views, args.objects, args.device, repeat=args.repeat)
    counts = [int(n) for n in args.attention.split(",") if n.strip()]
    if counts:
        result["attention_ms_median"] = bench_attention(net.cfg, counts, args.device, repeat=args.repeat)
    print(f"{result['config']} ({result['variant']}) on {result['device']}, {result['threads']} threads, "
          f"M={args.views} views, N={args.objects} objects: {result['latency_ms_median']:.0f} ms median "
          f"(volume {result['stage_ms_median']['volume']:.0f}, boxes {result['stage_ms_median']['boxes']:.0f}, "
          f"prior {result['stage_ms_median']['prior']:.0f}, classify {result['stage_ms_median']['classify']:.0f}), "
          f"peak memory {result['peak_memory_mb']:.0f} MB"
          + (f" (+{result['peak_memory_increase_mb']:.0f} MB)" if "peak_memory_increase_mb" in result else ""))
    print(f"  reference (ResNet-18 forward, {args.views} x {result['image_size']} x {result['image_size']}): "
          f"{result['reference_ms']:.0f} ms median; ratio {result['ratio']:.2f}")
    for kind, row in result.get("attention_ms_median", {}).items():
        print(f"  {kind:<8} attention + head: " + ", ".join(f"N={n}: {ms:.0f} ms" for n, ms in row.items()))
    if args.json:
        write_json(args.json, result)
    return 0


def run_train(args) -> int:
    import torch

    from ..benchmark import bench_train

    try:
        views = tuple(int(v) for v in args.train_views.split(","))
        assert len(views) == 2 and min(views) >= 1
    except (ValueError, AssertionError):
        raise CommandError("--train-views must be two positive integers, e.g. 4,3") from None
    if args.checkpoint:
        raise CommandError("--train uses random weights; --checkpoint does not apply")
    torch.set_num_threads(args.threads or 1)
    overrides = {k: v for k, v in (("rays", args.rays), ("feature_rays", args.feature_rays)) if v is not None}
    if args.backbone:
        overrides["freeze_backbone"] = args.backbone == "frozen"
    try:
        from threadpoolctl import threadpool_limits  # numpy's BLAS too (the visual hull): one thread
    except ImportError:  # pragma: no cover - scikit-learn brings it
        import contextlib

        def threadpool_limits(_):
            return contextlib.nullcontext()
    try:
        with threadpool_limits(args.threads or 1):
            r = bench_train(args.config, args.data, views, max(1, args.repeat), args.device, overrides)
    except (ValueError, FileNotFoundError) as e:
        raise CommandError(str(e)) from None
    t = r["train"]
    print(f"{r['config']} ({r['variant']}) training on {r['device']}, {r['threads']} thread(s), views {views[0]},"
          f"{views[1]}, grid {'x'.join(map(str, r['grid']))}, rays {t['rays']} / feature rays {t['feature_rays']} "
          f"per target view, backbone {'frozen (cached)' if t['freeze_backbone'] else 'trained'}")
    print(f"  reference (ResNet-18 fwd + bwd, 5 x 256 x 256): {r['reference_ms']:.0f} ms CPU "
          f"({r['wall']['reference_ms']:.0f} ms wall)")
    for stage in ("stage1", "stage2"):
        b = r["breakdown_ms"][stage]
        parts = r["forward_parts_ms"][stage]
        print(f"  {stage}: {r['train_step_ms'][stage]:.0f} ms CPU per step = {r['ratio_to_reference'][stage]:.2f} x "
              f"reference (wall {r['wall']['train_step_ms'][stage]:.0f} ms = "
              f"{r['wall']['ratio_to_reference'][stage]:.2f} x); " + ", ".join(f"{k} {v:.0f}" for k, v in b.items()))
        print("    forward parts (profiled): " + ", ".join(f"{k} {v:.0f}" for k, v in parts.items()))
    print(f"  teacher, once per image (cache miss): {r['teacher_cold']['ms_per_image']:.0f} ms")
    if args.json:
        write_json(args.json, r)
    return 0
