"""`odd-one-out train`: two-stage training (torchrun for several processes or GPUs)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", choices=["cpu", "paper", "tiny"], default="cpu", help="model config (default cpu)")
    p.add_argument("--variant", choices=["A", "B", "C", "full"], default="full", help="ablation variant")
    p.add_argument("--data", required=True, action="append",
                   help="dataset root (with splits.json) or folder of scenes; repeat to train on several")
    p.add_argument("--split", default="train", help="split to train on (default train)")
    p.add_argument("--out", required=True, help="run folder (log.csv, last_stage<k>.pt, stage1.pt, stage2.pt)")
    p.add_argument("--stage", type=int, choices=[1, 2], default=1, help="1 reconstruction, 2 end to end")
    p.add_argument("--init", help="checkpoint to start from (stage 2 default: OUT/stage1.pt)")
    p.add_argument("--resume", action="store_true", help="continue exactly from OUT/last_stage<k>.pt")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--steps", type=int, default=0, help="stop after this many steps (0 = all epochs)")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--prior", choices=["on", "off"],
                   help="add the training-free comparison to the matcher's logits (matcher.prior; default: the "
                        "config's or the --init checkpoint's setting)")
    p.add_argument("--schedule", choices=["cosine", "constant"], default="cosine",
                   help="learning rate after the warm-up: cosine decay over --steps (default) or constant")
    p.add_argument("--batch", type=int, default=1, help="scenes per step (per process)")
    p.add_argument("--views", default="5,5", help="input,target views per scene (default 5,5)")
    p.add_argument("--teacher", choices=["mobilenet_v2", "dinov2_vits14"], default="mobilenet_v2",
                   help="distillation teacher (default: the offline ImageNet MobileNetV2)")
    p.add_argument("--teacher-weights", default="", help="local weights file (required for dinov2_vits14)")
    p.add_argument("--lambda-occ", type=float, default=10.0,
                   help="weight of the voxel occupancy loss against the visual hull (0 = the paper's losses only)")
    p.add_argument("--rays", type=int, default=512,
                   help="RGB / mask rays rendered per target view and step, a random subset of the pixels "
                        "(default 512; 0 = every pixel)")
    p.add_argument("--feature-rays", type=int, default=256,
                   help="feature rays per target view and step, drawn from the object pixels (default 256; "
                        "0 = every pixel)")
    p.add_argument("--backbone", choices=["frozen", "trained"], default="frozen",
                   help="frozen (default): keep the 2D backbone fixed and cache its features per image (about 2x "
                        "faster on a CPU); trained: fine-tune it as the paper does")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda (with torchrun: cuda uses LOCAL_RANK)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads per process (default: all)")
    p.add_argument("--checkpoint-every", type=int, default=200, help="steps between last_stage<k>.pt saves")
    p.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    import dataclasses
    import os

    from ..model.checkpoint import CheckpointError
    from ..model.config import preset
    from ..training.trainer import TrainConfig, Trainer, init_distributed

    try:
        n_in, n_tgt = (int(v) for v in args.views.split(","))
    except ValueError:
        print("odd-one-out train: --views must be two integers, e.g. 5,5", file=sys.stderr)
        return 2
    device = args.device
    if device.startswith("cuda") and "LOCAL_RANK" in os.environ:
        device = f"cuda:{os.environ['LOCAL_RANK']}"
    os.environ["ODD_DEVICE"] = device
    init_distributed()
    out = Path(args.out)
    init = args.init
    if args.stage == 2 and not init and not args.resume:
        init = str(out / "stage1.pt")
    cfg = TrainConfig(stage=args.stage, epochs=args.epochs, max_steps=args.steps, lr=args.lr, batch_size=args.batch,
                      n_input=n_in, n_target=n_tgt, seed=args.seed, checkpoint_every=args.checkpoint_every,
                      teacher=args.teacher, teacher_weights=args.teacher_weights, split=args.split,
                      threads=args.threads, lambda_occ=args.lambda_occ, rays=args.rays,
                      feature_rays=args.feature_rays, freeze_backbone=args.backbone == "frozen",
                      schedule=args.schedule)
    mcfg = preset(args.config, args.variant)
    last = out / f"last_stage{args.stage}.pt"
    source = str(last) if args.resume and last.is_file() else init if init and not args.resume else None
    if source:  # continue with that checkpoint's config (e.g. a box threshold tuned before stage 2)
        from ..model.checkpoint import read_checkpoint

        try:
            mcfg = read_checkpoint(source)["config"]
        except CheckpointError as e:
            print(f"odd-one-out train: {e}", file=sys.stderr)
            return 2
        if mcfg.name != args.config:
            print(f"odd-one-out train: {source} is a {mcfg.name} model, not {args.config}", file=sys.stderr)
            return 2
        if mcfg.variant != args.variant and source == str(last):
            print(f"odd-one-out train: {source} is variant {mcfg.variant}, not {args.variant}", file=sys.stderr)
            return 2
        if mcfg.variant != args.variant:  # ablations share stage 1: A with B, C with full (the matcher starts anew)
            switched = dataclasses.replace(mcfg, variant=args.variant)
            if switched.distill != mcfg.distill:
                print(f"odd-one-out train: {source} is variant {mcfg.variant}; variant {args.variant} can start from "
                      f"it only when both distil or both do not (A with B, C with full)", file=sys.stderr)
                return 2
            mcfg = switched
    if args.prior and (args.prior == "on") != mcfg.matcher.prior:
        if source == str(last):
            print(f"odd-one-out train: {source} was trained with --prior "
                  f"{'on' if mcfg.matcher.prior else 'off'}; resume without --prior", file=sys.stderr)
            return 2
        mcfg = dataclasses.replace(mcfg, matcher=dataclasses.replace(mcfg.matcher, prior=args.prior == "on"))
    try:
        trainer = Trainer(mcfg, cfg, args.data, out, device, init=init, resume=args.resume)
        final = trainer.train(progress=not args.no_progress)
    except (CheckpointError, ValueError, FileNotFoundError) as e:
        print(f"odd-one-out train: {e}", file=sys.stderr)
        return 2
    if trainer.rank == 0:
        print(f"stage {args.stage}: {trainer.step} steps, {trainer.epoch} epochs -> {final}")
    return 0
