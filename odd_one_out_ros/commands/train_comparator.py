"""`odd-one-out train-comparator`: stage 2 on a CPU: train the learned comparator (scorer "comparator") of a
checkpoint on cached cells of training scenes (training/comparator.py; docs/training.md "Learned comparison")."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..training.comparator import ComparatorTrainConfig
from . import CommandError
from .train_boxes import add_cache_arguments, cache_sets


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = ComparatorTrainConfig()
    add_cache_arguments(p, "trained checkpoint (scorer.comparison.features teacher) whose boxes and comparison the "
                           "comparator reads", "cells", "inspection cached")
    p.add_argument("--steps", type=int, default=d.steps, help="optimiser steps (default %(default)s)")
    p.add_argument("--batch", type=int, default=d.batch, help="scenes per step (default %(default)s)")
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (default %(default)s)")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay,
                   help="AdamW weight decay (default %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    p.add_argument("--half", action="store_true", help="store float16 weights (shipping size)")


def run(args) -> int:
    import os

    import torch

    from ..data.dataset import scene_dirs
    from ..model.checkpoint import CheckpointError, extra_items, load_checkpoint, save_checkpoint
    from ..training.comparator import cache_cells, load_cell_caches, train_comparator, with_comparator

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    if not args.cache_only and not args.out:
        raise CommandError("--out is needed (or --cache-only)")
    if args.steps < 1:
        raise CommandError("--steps must be >= 1")
    torch.manual_seed(args.seed)  # a new comparator's init (where the checkpoint has none yet)
    try:
        net, blob = load_checkpoint(args.checkpoint)
        sets = [(Path(d), scene_dirs(d, args.split)) for d in args.data]
        if net.scorer.end_to_end and "aux_scorer" not in blob:  # its trained matcher: stage 2's, kept aside
            blob["aux_scorer"] = net.scorer.state_dict()
        net = with_comparator(net)  # before caching: refuses a checkpoint the comparator cannot serve
    except (CheckpointError, ValueError) as e:
        raise CommandError(str(e)) from None
    caches = cache_sets(sets, args, lambda dirs, cache: cache_cells(net, dirs, cache, args.views, args.subsets,
                                                                     args.seed, args.shard))
    if args.cache_only:
        return 0
    cfg = ComparatorTrainConfig(steps=args.steps, batch=args.batch, lr=args.lr, weight_decay=args.weight_decay,
                                seed=args.seed)
    items = load_cell_caches(caches)
    print(f"training the comparator on {len(items)} inspections", flush=True)
    out = Path(args.out)
    train_comparator(net.scorer.comparator, items, cfg, resume_file=out.with_name(out.name + ".resume"),
                     log=lambda s: print(s, flush=True))
    meta = {**blob.get("meta", {}), "comparator_trained_on": f"{[str(d) for d in args.data]} {args.split} "
            f"({len(items)} inspections: own and true boxes x {args.subsets} view sets of {args.views}, "
            f"{cfg.steps} steps)"}
    save_checkpoint(out, net, meta=meta, half=args.half, **extra_items(blob))
    print(f"wrote {out} (objects scored by the learned comparator)")
    return 0
