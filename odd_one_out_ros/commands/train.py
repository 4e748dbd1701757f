"""`odd-one-out train`: two-stage training (torchrun for several processes or GPUs)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..model.config import PRESETS, PRIOR_VARIANTS
from ..training.config import SCHEDULES, TrainConfig, field_help
from . import CommandError

# TrainConfig fields with a flag of their own (--name-with-dashes unless renamed in FLAG_NAMES); the default and
# the help are the field's (training/config.py). --views and --backbone set fields too, written out below.
TRAIN_FIELDS = ("stage", "split", "epochs", "max_steps", "lr", "schedule", "batch_size", "teacher", "teacher_weights",
                "lambda_occ", "rays", "feature_rays", "seed", "threads", "checkpoint_every")
FLAG_NAMES = {"max_steps": "--steps", "batch_size": "--batch"}
CHOICES = {"stage": (1, 2), "schedule": SCHEDULES, "teacher": ("mobilenet_v2", "dinov2_vits14")}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", choices=PRESETS, default="cpu",
                   help="model config (default cpu; cpu_default = the shipped checkpoint's: stages 1 and 2 train its "
                        "scene encoder with the volume matcher, train-boxes / tune-boxes / train-comparator the rest, "
                        "as scripts/train_default.sh does)")
    p.add_argument("--variant", choices=["A", "B", "C", "full"], default="full", help="ablation variant")
    p.add_argument("--data", required=True, action="append",
                   help="dataset root (with splits.json) or folder of scenes; repeat to train on several")
    p.add_argument("--out", required=True, help="run folder (log.csv, last_stage<k>.pt, stage1.pt, stage2.pt)")
    p.add_argument("--init", help="checkpoint to start from (stage 2 default: OUT/stage1.pt)")
    p.add_argument("--resume", action="store_true", help="continue exactly from OUT/last_stage<k>.pt")
    p.add_argument("--prior", choices=["on", "off"],
                   help="add the training-free comparison to the matcher's logits (scorer.matcher.prior; for a "
                        "model whose scorer is not the matcher: stage 2's auxiliary matcher; default: the config's or "
                        "the --init checkpoint's setting)")
    p.add_argument("--prior-features", choices=sorted(PRIOR_VARIANTS),
                   help="the comparison's features (scorer.comparison): teacher = a separate MobileNetV2 at "
                        "2x, trunk = the backbone's own levels, one pass per image (docs/model.md; default: the "
                        "config's or the --init checkpoint's setting)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (with torchrun: cuda uses LOCAL_RANK)")
    p.add_argument("--no-progress", action="store_true")
    defaults, helps = TrainConfig(), field_help(TrainConfig)
    for name in TRAIN_FIELDS:
        default, flag = getattr(defaults, name), FLAG_NAMES.get(name, "--" + name.replace("_", "-"))
        p.add_argument(flag, dest=name, type=type(default), default=default, choices=CHOICES.get(name),
                       metavar=None if name in CHOICES else flag[2:].replace("-", "_").upper(),
                       help=helps[name].replace("%", "%%") + " (default: %(default)s)")
    p.add_argument("--views", default=f"{defaults.n_input},{defaults.n_target}",
                   help="input,target views per scene (TrainConfig.n_input, n_target; default: %(default)s)")
    p.add_argument("--backbone", choices=["frozen", "trained"], default="frozen" if defaults.freeze_backbone
                   else "trained", help="frozen: keep the 2D backbone fixed and cache its features per image (about "
                   "2x faster on a CPU); trained: fine-tune it as the paper does (TrainConfig.freeze_backbone; "
                   "default: %(default)s)")


def run(args) -> int:
    import os

    from ..model.checkpoint import CheckpointError
    from ..model.config import of_preset, preset
    from ..training.config import continue_config
    from ..training.trainer import Trainer, close_distributed, init_distributed

    try:
        n_in, n_tgt = (int(v) for v in args.views.split(","))
    except ValueError:
        raise CommandError("--views must be two integers, e.g. 5,5") from None
    device = args.device
    if device.startswith("cuda") and "LOCAL_RANK" in os.environ:
        device = f"cuda:{os.environ['LOCAL_RANK']}"
    os.environ["ODD_DEVICE"] = device
    init_distributed()
    out = Path(args.out)
    init = args.init
    if args.stage == 2 and not init and not args.resume:
        init = str(out / "stage1.pt")
    cfg = TrainConfig(**{name: getattr(args, name) for name in TRAIN_FIELDS}, n_input=n_in, n_target=n_tgt,
                      freeze_backbone=args.backbone == "frozen")
    mcfg = preset(args.config, args.variant)
    last = out / f"last_stage{args.stage}.pt"
    source = str(last) if args.resume and last.is_file() else init if init and not args.resume else None
    if source:  # continue with that checkpoint's config (e.g. a box threshold tuned before stage 2)
        from ..model.checkpoint import read_checkpoint

        try:
            mcfg = read_checkpoint(source)["config"]
            if not of_preset(mcfg, args.config):
                raise CommandError(f"{source} is a {mcfg.name} model, not {args.config}")
            mcfg = continue_config(mcfg, args.variant, source, resuming=source == str(last))
        except (CheckpointError, ValueError) as e:
            raise CommandError(str(e)) from None
    prior = mcfg.scorer.matcher.prior
    if args.prior and (args.prior == "on") != prior:
        if source == str(last):
            raise CommandError(f"{source} was trained with --prior {'on' if prior else 'off'}; resume without --prior")
        mcfg = mcfg.changed("scorer.matcher", prior=args.prior == "on")
    features = mcfg.scorer.comparison.features
    if args.prior_features and args.prior_features != features:
        if source == str(last):
            raise CommandError(f"{source} was trained with --prior-features {features}; resume without "
                               "--prior-features")
        mcfg = mcfg.changed("scorer.comparison", **PRIOR_VARIANTS[args.prior_features])
        if mcfg.scorer.kind == "comparator" and args.prior_features == "trunk":  # its cells are one teacher map
            mcfg = mcfg.changed("scorer", kind="matcher")
    finished = False
    try:
        trainer = Trainer(mcfg, cfg, args.data, out, device, init=init, resume=args.resume)
        final = trainer.train(progress=not args.no_progress)
        finished = True
    except (CheckpointError, ValueError, FileNotFoundError) as e:
        raise CommandError(str(e)) from None
    finally:
        close_distributed(barrier=finished)  # once; the barrier only for a rank whose work is done
    if trainer.rank == 0:
        print(f"stage {args.stage}: {trainer.step} steps, {trainer.epoch} epochs -> {final}")
    return 0
