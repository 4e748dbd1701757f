"""`odd-one-out train-boxes`: train the learned box head (estimator "heatmap") of a checkpoint on cached
frozen volumes of training scenes (training/box_head.py; docs/training.md "Learned boxes")."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..training.box_head import BoxHeadTrainConfig
from . import CommandError, share


def shard_arg(text: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N (e.g. 0/2), got {text!r}") from None
    if not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"expected 0 <= I < N, got {text!r}")
    return i, n


def add_cache_arguments(p: argparse.ArgumentParser, checkpoint_help: str, what: str, per: str) -> None:
    """The flags train-boxes and train-comparator share: the checkpoint, the scenes, the cache of `what` (one per
    `per`) and its sharding."""
    p.add_argument("--checkpoint", required=True, help=checkpoint_help)
    p.add_argument("--data", required=True, action="append",
                   help="dataset root or folder of scenes to train on (repeat for several; its train split when "
                        "it has a splits.json)")
    p.add_argument("--split", default="train", help="split of --data to use (default train; never a test split)")
    p.add_argument("--cache", required=True, help=f"folder of the cached {what} (kept; rerun to reuse)")
    p.add_argument("--out", help="checkpoint to write (the input is not changed); needed unless --cache-only")
    p.add_argument("--views", type=int, default=5, help=f"input views per {per} (default 5)")
    p.add_argument("--subsets", type=int, default=2, help="view sets cached per scene (default 2)")
    p.add_argument("--shard", type=shard_arg, default=(0, 1),
                   help="I/N: cache every N-th scene from the I-th (run N processes to share the caching)")
    p.add_argument("--cache-only", action="store_true", help=f"only cache the {what} (e.g. one shard)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = BoxHeadTrainConfig()
    add_cache_arguments(p, "trained checkpoint whose frozen volumes the head reads", "volumes", "cached volume")
    p.add_argument("--steps", type=int, default=d.steps,
                   help="optimiser steps of the heatmap head (default %(default)s; 0 = keep the checkpoint's head)")
    p.add_argument("--refine-steps", type=int, default=0,
                   help="then train the box refiner (HeatmapBoxConfig.refine) this many steps on the head's boxes "
                        "(default 0: the checkpoint's refiner as it is, or none)")
    p.add_argument("--refine-batch", type=int, default=8, help="scenes per refiner step (default %(default)s)")
    p.add_argument("--batch", type=int, default=d.batch, help="volumes per step (default %(default)s)")
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (default %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    p.add_argument("--half", action="store_true", help="store float16 weights (shipping size)")
    p.add_argument("--head-channels", type=int, help="HeatmapBoxConfig.head_channels (default: the checkpoint's)")
    p.add_argument("--head-blocks", type=int, help="HeatmapBoxConfig.head_blocks (default: the checkpoint's)")
    p.add_argument("--squash", type=share, default=d.squash,
                   help="share of the training volumes squashed along z by 0.25-1x (flatter objects than the "
                        "training scenes have, e.g. plates thinner than a voxel; default %(default)s)")
    p.add_argument("--reg-weight", type=float, default=d.reg_weight,
                   help="weight of the box regression beside the heatmap loss (default %(default)s)")


def cache_sets(sets: list[tuple[Path, list[Path]]], args, cache_fn) -> list[Path]:
    """Cache each (root, scene dirs) of --data into CACHE/<root name> with cache_fn(dirs, folder) -> number newly
    written (train-boxes, train-comparator); -> the cache folders."""
    caches = []
    for root, dirs in sets:
        cache = Path(args.cache) / root.name
        n = cache_fn(dirs, cache)
        print(f"{root}: {len(dirs)} scenes, {n} newly cached in {cache}", flush=True)
        caches.append(cache)
    return caches


def run(args) -> int:
    import dataclasses
    import os

    import torch

    from ..data.dataset import scene_dirs
    from ..model.checkpoint import CheckpointError, extra_items, load_checkpoint, save_checkpoint
    from ..training.box_head import cache_volumes, load_caches, train_box_head, train_box_refiner, with_box_head

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    if not args.cache_only and not args.out:
        raise CommandError("--out is needed (or --cache-only)")
    try:
        net, blob = load_checkpoint(args.checkpoint)
        sets = [(Path(d), scene_dirs(d, args.split)) for d in args.data]
    except (CheckpointError, ValueError) as e:
        raise CommandError(str(e)) from None
    # before any caching or loading
    if not args.cache_only and args.steps == 0 and getattr(net.boxes, "head", None) is None:
        raise CommandError("--steps 0 keeps the checkpoint's box head, but it has none")
    caches = cache_sets(sets, args, lambda dirs, cache: cache_volumes(net, dirs, cache, args.views, args.subsets,
                                                                       args.seed, args.shard))
    if args.cache_only:
        return 0
    cfg = BoxHeadTrainConfig(steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed,
                             reg_weight=args.reg_weight, squash=args.squash)
    items = load_caches(caches)
    print(f"training the box head on {len(items)} scenes", flush=True)
    shape = {k: v for k, v in (("head_channels", args.head_channels), ("head_blocks", args.head_blocks))
             if v is not None}
    net = with_box_head(net, **shape)
    out = Path(args.out)
    log = lambda s: print(s, flush=True)  # noqa: E731
    if args.steps > 0:
        train_box_head(net, items, cfg, resume_file=out.with_name(out.name + ".resume"), log=log)
    if args.refine_steps > 0:
        print("training the box refiner on the head's boxes", flush=True)
        net = with_box_head(net, refine=True)
        train_box_refiner(net, items, dataclasses.replace(cfg, steps=args.refine_steps, batch=args.refine_batch),
                          log=log,
                          resume_file=out.with_name(out.name + ".refine.resume"))
    extra = extra_items(blob)
    meta = {**blob.get("meta", {}), "box_head_trained_on": f"{[str(d) for d in args.data]} {args.split} "
            f"({len(items)} scenes x {args.subsets} view sets of {args.views}, {cfg.steps} steps, refiner "
            f"{args.refine_steps} steps" + (f", {args.squash:.0%} squashed" if args.squash > 0 else "") + ")"}
    save_checkpoint(out, net, meta=meta, half=args.half, **extra)
    print(f"wrote {out} (box estimator: heatmap, score threshold {net.cfg.boxes.heatmap.score_threshold}; set it "
          f"with tune-boxes)")
    return 0
