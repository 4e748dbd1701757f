"""The one training loop helper: an optimiser over named parameter groups, a linear warm-up and a schedule, gradient
clipping, exact resume and progress lines. Stages 1 and 2 (training/trainer.py, which adds epochs, several ranks and
its log.csv around it), the box head and refiner (training/box_head.py) and the comparator (training/comparator.py)
all train through it.

    loop = TrainLoop({"network": params}, LoopConfig(lr=1e-3, steps=2000, warmup_steps=100))
    fit(module, batch_loss, loop, resume_file, log)        # batch_loss(rng) -> loss terms with "total"
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..fileio import atomic_path
from .config import SCHEDULES

OPTIMIZERS = ("adam", "adamw")


@dataclass(frozen=True)
class LoopConfig:
    lr: float = 1e-3
    steps: int = 0
    """optimiser steps in all (0: no budget; the cosine schedule is then constant)"""
    warmup_steps: int = 0
    """linear warm-up of the learning rate over these first steps"""
    schedule: str = "cosine"
    """after the warm-up: "cosine" decays the rate to min_lr_scale x lr at `steps`, "constant" keeps it"""
    min_lr_scale: float = 0.0
    optimizer: str = "adam"
    """"adam" or "adamw" (decoupled weight decay)"""
    weight_decay: float = 0.0
    clip_grad_norm: float = 0.0
    """clip the gradients' global norm to this before each step (0: no clipping)"""
    checkpoint_every: int = 500
    """`fit`: a resume file every this many steps (and at the end)"""
    log_every: int = 50
    """`fit`: a progress line with the mean loss terms every this many steps"""
    seed: int = 0
    """`fit`: the batch sampler's random generator"""


@dataclass(frozen=True)
class PartTrainConfig:
    """A part trained alone on cached inputs (the box head and its refiner, the comparator): AdamW, 100 warm-up
    steps, then a cosine decay to 0 at `steps` (`loop`)."""

    steps: int = 2000
    batch: int = 8
    """items per step"""
    lr: float = 1e-3
    weight_decay: float = 1e-3
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 100

    def loop(self) -> LoopConfig:
        return LoopConfig(lr=self.lr, steps=self.steps, warmup_steps=100, optimizer="adamw",
                          weight_decay=self.weight_decay, checkpoint_every=self.checkpoint_every,
                          log_every=self.log_every, seed=self.seed)


def lr_factor(step: int, cfg: LoopConfig) -> float:
    """Learning rate multiplier at optimiser step `step` (0-based): linear warm-up over cfg.warmup_steps, then
    cfg.schedule (cosine from 1 to cfg.min_lr_scale at cfg.steps, or constant)."""
    if cfg.schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {cfg.schedule!r}")
    w = cfg.warmup_steps
    f = min(1.0, (step + 1) / w) if w else 1.0
    if cfg.schedule == "cosine" and cfg.steps > w:
        t = min(1.0, max(0, step - w) / (cfg.steps - w))
        f *= cfg.min_lr_scale + (1 - cfg.min_lr_scale) * 0.5 * (1 + math.cos(math.pi * t))
    return f


class TrainLoop:
    """One optimiser over named parameter groups (in the given order: a resume file keeps its state by group index),
    group g at lr x lr_scales[g] x lr_factor(step)."""

    def __init__(self, groups: dict[str, list[torch.nn.Parameter]], cfg: LoopConfig,
                 lr_scales: dict[str, float] | None = None):
        if cfg.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {cfg.optimizer!r}")
        lr_factor(0, cfg)  # an unknown schedule fails here, before any step
        self.cfg = cfg
        scales = lr_scales or {}
        opt = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        self.opt = opt([{"params": params, "lr": cfg.lr * scales.get(name, 1.0)} for name, params in groups.items()],
                       weight_decay=cfg.weight_decay)
        self.base_lrs = [g["lr"] for g in self.opt.param_groups]
        self.params = [p for params in groups.values() for p in params]
        self.step = 0

    def begin(self) -> None:
        """Before a step's backward passes: the step's learning rates, gradients cleared."""
        f = lr_factor(self.step, self.cfg)
        for g, base in zip(self.opt.param_groups, self.base_lrs):
            g["lr"] = base * f
        self.opt.zero_grad(set_to_none=True)

    def update(self) -> None:
        """After the backward passes: clip, step the optimiser, count the step."""
        if self.cfg.clip_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.clip_grad_norm)
        self.opt.step()
        self.step += 1

    def lr(self, group: int = 0) -> float:
        return self.opt.param_groups[group]["lr"]

    def state_dict(self) -> dict:
        return {"optimizer": self.opt.state_dict(), "step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.opt.load_state_dict(state["optimizer"])
        self.step = int(state["step"])


def fit(module: torch.nn.Module, batch_loss, loop: TrainLoop, resume_file: Path | None = None, log=print) -> None:
    """Train module for loop.cfg.steps steps of batch_loss(rng) -> loss terms with "total" (one batch each). rng: a
    numpy generator seeded by loop.cfg.seed. resume_file: written every cfg.checkpoint_every steps and at the end,
    read at the start when it exists (same items and config: an exact resume of weights, optimiser and random
    state)."""
    cfg = loop.cfg
    module.train()
    rng = np.random.default_rng(cfg.seed)
    if resume_file is not None and Path(resume_file).exists():
        st = torch.load(resume_file, map_location="cpu", weights_only=True)
        if "loop" not in st:
            raise ValueError(f"{resume_file}: a resume file of an older version; delete it to start this part anew")
        module.load_state_dict(st["module"])
        loop.load_state_dict(st["loop"])
        rng.bit_generator.state = st["rng"]
        log(f"resumed at step {loop.step}")
    t0, acc = time.perf_counter(), {}
    while loop.step < cfg.steps:
        loop.begin()
        terms = batch_loss(rng)
        terms["total"].backward()
        loop.update()
        step = loop.step
        for k, v in terms.items():
            acc[k] = acc.get(k, 0.0) + float(v.detach())
        if resume_file is not None and (step % cfg.checkpoint_every == 0 or step == cfg.steps):
            with atomic_path(resume_file) as tmp:
                torch.save({"module": module.state_dict(), "loop": loop.state_dict(), "rng": rng.bit_generator.state},
                           tmp)
        if step % cfg.log_every == 0 or step == cfg.steps:
            n = cfg.log_every if step % cfg.log_every == 0 else step % cfg.log_every
            log(f"step {step}/{cfg.steps} " + " ".join(f"{k} {v / n:.4f}" for k, v in acc.items())
                + f" lr {loop.lr():.2e} {(time.perf_counter() - t0) / n:.2f} s/step")
            acc, t0 = {}, time.perf_counter()
    module.eval()
