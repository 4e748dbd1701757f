"""Training settings (TrainConfig) and which checkpoint a run can start from. Pure: no torch, so the `train`
command builds its flags from these fields (defaults and help here, one place) without loading torch."""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..model.config import ModelConfig

SCHEDULES = ("cosine", "constant")
"""TrainConfig.schedule: learning rate after the warm-up"""


@dataclass
class TrainConfig:
    stage: int = 1
    """1: reconstruction only; 2: end to end with the BCE"""
    epochs: int = 10
    """passes over the training scenes"""
    max_steps: int = 0
    """stop after this many optimiser steps in total (0 = run all epochs)"""
    lr: float = 2e-4
    """learning rate (Adam) after the warm-up"""
    backbone_lr_scale: float = 0.5
    """learning rate factor for the pretrained 2D backbone"""
    prior_lr_scale: float = 50.0
    """learning rate factor for the two scalars of the training-free prior (scorer.matcher.prior)"""
    warmup_steps: int = 50
    """steps of linear learning-rate warm-up"""
    schedule: str = "cosine"
    """learning rate after the warm-up: "cosine" decays it to min_lr_scale x lr over max_steps (Efficient
    Odd-One-Out's schedule; constant when max_steps is 0), "constant" keeps it"""
    min_lr_scale: float = 0.05
    batch_size: int = 1
    """scenes per step (per process)"""
    n_input: int = 5
    """input views per scene"""
    n_target: int = 5
    """render-target views per scene (disjoint from the inputs)"""
    lambda_sigma: float = 1.0
    """mask loss weight (Eq. 3)"""
    lambda_f: float = 1.0
    """feature distillation weight (Eq. 4)"""
    lambda_occ: float = 10.0
    """weight of the voxel occupancy BCE against the visual hull of all views' object masks (not in the
    paper: a direct 3D target that makes the density, and so the boxes, converge in a CPU budget; 0 = off)"""
    lambda_r_stage2: float = 0.1
    """reconstruction weight in stage 2 (reference code: 0.1)"""
    match_iou: float = 0.25
    """stage 2: a ground-truth box takes the predicted box of highest IoU if it exceeds this; otherwise the
    ground-truth box itself (jittered) is classified, so that every object is supervised"""
    seed: int = 0
    """seed of the initialisation, the data order and the augmentation"""
    checkpoint_every: int = 200
    """steps between last_stage<k>.pt saves"""
    teacher: str = "mobilenet_v2"
    """distillation teacher: mobilenet_v2 (the offline ImageNet MobileNetV2) or dinov2_vits14"""
    teacher_weights: str = ""
    """local weights file of the teacher (required for dinov2_vits14)"""
    split: str = "train"
    """split to train on"""
    threads: int = 0
    """torch CPU threads per process (0 = all)"""
    rays: int = 512
    """RGB / mask rays rendered per target view and step: a random subset of the render.rgb_size^2 pixels
    (uniform, without repetition), compared with the same pixels of the ground truth; the loss is an unbiased
    estimate of the full-image loss (docs/training.md "Training speed"); 0 = every pixel (the paper)"""
    feature_rays: int = 256
    """feature rays per target view and step, drawn without repetition from the pixels of the
    render.feature_size^2 map where the object mask is non-zero (the feature loss counts only those) and
    weighted so the loss is an unbiased estimate of the full-image loss; 0 = every pixel (the paper)"""
    freeze_backbone: bool = True
    """keep the 2D backbone (ImageNet, or the --init checkpoint's) fixed and cache its levels per image
    (RUN/backbone_cache, fp16; a mirrored image has its own entry); the feature pyramid, the 3D network and the
    heads still train. False fine-tunes it at backbone_lr_scale, as the paper does (docs/model.md)"""


def field_help(cls=TrainConfig) -> dict[str, str]:
    """Each field's docstring (the string under it in the class body), whitespace collapsed: the help of the
    `train` flags. Read from the source (inspect + ast): dataclasses keep no attribute docstrings."""
    import ast
    import inspect

    body = ast.parse(inspect.getsource(cls)).body[0].body
    out = {}
    for stmt, nxt in zip(body, body[1:]):
        if isinstance(stmt, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            out[stmt.target.id] = re.sub(r"\s+", " ", str(nxt.value.value)).strip()
    return out


def continue_config(cfg: ModelConfig, variant: str, source: str, resuming: bool) -> ModelConfig:
    """The model config to train `variant` from the checkpoint `source` of config `cfg` (its own config: e.g. a box
    threshold tuned before stage 2). The ablations share stage 1 when both distil or both do not (A with B, C with
    full: the same network but the matcher, which starts anew: model/checkpoint.py with_parts); a run resumes
    (`resuming`) only its own variant. ValueError otherwise."""
    if cfg.variant == variant:
        return cfg
    if resuming:
        raise ValueError(f"{source} is variant {cfg.variant}, not {variant}")
    switched = dataclasses.replace(cfg, variant=variant)
    if switched.distill != cfg.distill:
        raise ValueError(f"{source} is variant {cfg.variant}; variant {variant} can start from it only when both "
                         f"distil or both do not (A with B, C with full)")
    return switched
