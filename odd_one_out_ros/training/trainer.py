"""Two-stage training (paper A.2): stage 1 reconstruction (image + mask + feature distillation), stage 2
end to end with the anomaly BCE, on boxes predicted by the model and matched to the ground truth by IoU.

Stage 1 trains the scene encoder; stage 2 the scene encoder and the scorer, when it trains through the volume (the
volume matcher: ObjectScorer.end_to_end). A model whose scorer trains apart (the comparator, on cached cells:
training/comparator.py) or has nothing to train (the comparison) gets the anomaly BCE of stage 2 through an
auxiliary volume matcher (`stage2_scorer`, its config's scorer.matcher settings) that only the run's resume files
keep: stage<k>.pt is always the model of the config asked for, its own scorer as it was. The optimiser, the schedule
and its state are training/loop.py's TrainLoop.

Run folder: config.json, log.csv (one row per step), last_stage<k>.pt (periodic, everything needed to
resume exactly: model, optimiser, step, RNG state), stage<k>.pt (the final model of a stage, a plain
inference checkpoint). Data order and augmentation depend only on (seed, epoch, index), so a resumed
run continues exactly where it stopped. Multi-process training (torchrun, DistributedDataParallel)
splits every epoch's scene order between the ranks; rank 0 writes.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.dataset import DatasetConfig, SceneDataset, scene_dirs
from ..geometry import Box3D, boxes_from_tensor, match_truth
from ..model.baseline import extract
from ..model.checkpoint import FORMAT_V1, load_fitting, read_checkpoint, save_checkpoint, with_parts
from ..model.config import ModelConfig
from ..model.losses import LossWeights
from ..model.network import PRIOR_SCALARS, OddOneOutNet
from ..model.scorers import MatcherScorer, ObjectScorer
from ..model.teacher import FeatureCache, FeaturePCA, MobileNetTeacher, TeacherCache, TrunkTeacherCache, build_teacher
from .config import TrainConfig
from .loop import LoopConfig, TrainLoop


def stage2_scorer(net: OddOneOutNet, state: dict | None = None) -> ObjectScorer | None:
    """The auxiliary scorer stage 2 trains through the volume when net's own scorer does not (module docstring): a
    volume matcher of net's scorer.matcher settings, with the weights `state` (a checkpoint's "aux_scorer": the
    one its stage 2 trained) where they fit; None when net's scorer trains end to end."""
    if net.scorer.end_to_end:
        return None
    aux = MatcherScorer(net.cfg.changed("scorer", kind="matcher"), net.scene.feature_channels)
    if state:
        load_fitting(aux, state)  # else it starts at its init
    return aux


def loop_config(cfg: TrainConfig) -> LoopConfig:
    """The optimiser settings of a training config: Adam, warm-up and schedule, gradients clipped to norm 5."""
    return LoopConfig(lr=cfg.lr, steps=cfg.max_steps, warmup_steps=cfg.warmup_steps, schedule=cfg.schedule,
                      min_lr_scale=cfg.min_lr_scale, optimizer="adam", clip_grad_norm=5.0,
                      checkpoint_every=cfg.checkpoint_every)


def _rank() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def match_boxes(pred: list[Box3D], gt: list[Box3D], min_iou: float, rng: np.random.Generator) -> list[Box3D]:
    """For each ground-truth box, its predicted box (geometry.match_truth: one-to-one, IoU > min_iou) or a
    jittered copy of the ground truth. Returns one box per ground-truth object, in ground-truth order."""
    out = []
    for g, j in zip(gt, match_truth(gt, pred, min_iou)):
        if j >= 0:
            out.append(pred[j])
        else:
            out.append(Box3D(g.center + rng.normal(scale=0.01, size=3), g.size * rng.uniform(0.9, 1.1, 3),
                             g.yaw + rng.normal(scale=0.1)))
    return out


def sample_pixels(n_pixels: int, n: int, views: int, rng: np.random.Generator) -> torch.Tensor:
    """n of n_pixels pixel indices per view, uniform without repetition: (1, views, n) long (all, in order,
    when n is 0 or >= n_pixels)."""
    if n <= 0 or n >= n_pixels:
        return torch.arange(n_pixels).expand(1, views, n_pixels).clone()
    return torch.from_numpy(np.stack([rng.choice(n_pixels, n, replace=False) for _ in range(views)]))[None]


def sample_object_pixels(mask: torch.Tensor, n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels for a loss that counts only object pixels: mask (V, P) in [0, 1] -> idx (1, V, n) long and
    weights (1, V, 1, n). Each view takes n of its pixels with mask > 0, uniformly without repetition, each
    weighted by mask * (object pixels / n), so that sum(weights * x) is an unbiased estimate of sum(mask * x)
    over all P pixels (exact when a view has at most n object pixels: then all of them, padded with other
    pixels of weight 0)."""
    V, P = mask.shape
    idx, wts = np.zeros((V, n), np.int64), np.zeros((V, n), np.float32)
    m = mask.detach().cpu().numpy()
    for v in range(V):
        pos = np.flatnonzero(m[v] > 0)
        if len(pos) > n:
            idx[v] = rng.choice(pos, n, replace=False)
            wts[v] = m[v, idx[v]] * (len(pos) / n)
        else:
            rest = np.setdiff1d(np.arange(P), pos, assume_unique=True)
            fill = rng.choice(rest, n - len(pos), replace=len(rest) < n - len(pos)) if n > len(pos) else rest[:0]
            idx[v] = np.concatenate([pos, fill])
            wts[v, :len(pos)] = m[v, pos]
    return torch.from_numpy(idx)[None], torch.from_numpy(wts)[None, :, None]


def _uint8_images(images: torch.Tensor) -> list[np.ndarray]:
    """images (V, 3, H, W) in [0, 1] -> V contiguous (H, W, 3) uint8 RGB arrays (what the feature caches key on)."""
    return [np.ascontiguousarray(im) for im in (images * 255).round().byte().permute(0, 2, 3, 1).numpy()]


def _gather(maps: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """maps (B, V, C, h, w), idx (B, V, P) row-major pixel indices -> (B, V, C, P)."""
    flat = maps.flatten(3)
    return torch.gather(flat, 3, idx[:, :, None, :].expand(-1, -1, flat.shape[2], -1))


def loss_weights(cfg: TrainConfig) -> LossWeights:
    """The loss weights of a training config (stage 1 never computes the BCE)."""
    return LossWeights(sigma=cfg.lambda_sigma, feature=cfg.lambda_f, occupancy=cfg.lambda_occ,
                       reconstruction_stage2=cfg.lambda_r_stage2)


def lr_scales(cfg: TrainConfig) -> dict[str, float]:
    """The learning-rate factor of each of OddOneOutNet.param_groups' groups."""
    # the prior's two scalars: Adam moves each by about lr per step, too little to recalibrate at lr
    return {"backbone": cfg.backbone_lr_scale, "network": 1.0, "prior": cfg.prior_lr_scale}


def enc_views(enc) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A scene encoding's posed views: (images, K, T_cw)."""
    return enc.images, enc.K, enc.T_cw


class StepLoss(torch.nn.Module):
    """forward(item, teacher_features, rng) -> loss terms of one scene (the whole differentiable step).

    Renders cfg.rays random pixels of each target view (cfg.feature_rays object pixels for the features), or
    every pixel when those are 0; the ground truth is compared at the same pixels of its render-resolution
    version.
    """

    def __init__(self, net: OddOneOutNet, cfg: TrainConfig, device: torch.device, aux: ObjectScorer | None = None):
        super().__init__()
        self.net, self.cfg, self.device, self.aux = net, cfg, device, aux
        self.weights = loss_weights(cfg)

    def forward(self, item: dict, target: torch.Tensor | None, rng: np.random.Generator,
                levels: list[torch.Tensor] | None = None, prior_feats: list[torch.Tensor] | None = None
                ) -> dict[str, torch.Tensor]:
        """item: a SceneDataset item; target (1, Vt, d_f, f, f) teacher features of the target views (or None);
        levels: the frozen backbone's levels of the input views (or None: the backbone runs here); prior_feats:
        the comparison's maps of the input views, one (n_input, C, h, w) per scale (stage 2 with the matcher's
        prior, cached; None: computed in the inspection)."""
        cfg, m, net, dev = self.cfg, self.net.cfg, self.net, self.device
        n_in = cfg.n_input
        images, K, T = item["images"][None].to(dev), item["K"][None].to(dev), item["T_cw"][None].to(dev)
        masks = item["masks"][None].to(dev)
        enc = net.scene(images[:, :n_in], K[:, :n_in], T[:, :n_in], levels, full=True)
        enc.maps = None if prior_feats is None else [prior_feats]
        vol = enc.volume
        S = m.image_size
        r, f = m.render.rgb_size, m.render.feature_size
        Vt = images.shape[1] - n_in
        gt_rgb = F.interpolate(images[0, n_in:], size=(r, r), mode="area")[None]  # (1, Vt, 3, r, r)
        gt_mask = F.interpolate(masks[0, n_in:], size=(r, r), mode="area")[None]
        pixels = feat_pixels = feat_weights = None
        if 0 < cfg.rays < r * r:
            pixels = sample_pixels(r * r, cfg.rays, Vt, rng).to(dev)
            gt_rgb, gt_mask = _gather(gt_rgb, pixels), _gather(gt_mask, pixels)
        distil = net.scene.projector is not None and target is not None
        if distil:
            mask_f = F.interpolate(masks[0, n_in:], size=(f, f), mode="area")[None]  # (1, Vt, 1, f, f)
            if 0 < cfg.feature_rays < f * f:
                feat_pixels, feat_weights = sample_object_pixels(mask_f[0, :, 0].flatten(1), cfg.feature_rays, rng)
                feat_pixels, feat_weights = feat_pixels.to(dev), feat_weights.to(dev)
                target = _gather(target, feat_pixels)
            else:
                feat_weights = mask_f
        out = net.scene.render(vol, K[:, n_in:], T[:, n_in:], (S, S), stratified=True, pixels=pixels,
                               feature_pixels=feat_pixels)
        targets = {"rgb": gt_rgb, "mask": gt_mask}
        if distil:
            targets["feat"], targets["feat_weights"] = target, feat_weights
        if cfg.lambda_occ > 0:
            targets["occupancy"] = item["occupancy"][None].to(dev)
        metrics = {}
        if cfg.stage == 2:  # the inspection sequence on this volume, scoring the predicted boxes matched to the truth
            gt = boxes_from_tensor(item["boxes"])
            insp = net(*enc_views(enc), encoding=enc, scorer=self.aux,
                       select=lambda b, found: match_boxes(found.boxes, gt, cfg.match_iou, rng))
            pred = insp.found[0].boxes
            metrics["predicted_match"] = torch.tensor(
                float(np.mean([j >= 0 for j in match_truth(gt, pred)])) if gt else 0.0)
            out["logits"] = insp.logits[0]
            targets["labels"] = item["labels"].to(dev)
        return {**net.get_loss_dict(vol, out, targets, self.weights), **metrics}


class Trainer:
    def __init__(self, model_cfg: ModelConfig, train_cfg: TrainConfig, data: str | Path | list, out: str | Path,
                 device: str = "cpu", init: str | None = None, resume: bool = False):
        self.mcfg, self.cfg = model_cfg, train_cfg
        self.device = torch.device(device)
        self.out = Path(out)
        self.rank, self.world = _rank()
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        torch.manual_seed(self.cfg.seed)
        self.pca_state, self.aux_state = None, None
        if init:  # its scene encoder, and each part of its boxes and scorer that fits (another variant's matcher,
            # or a prior's two scalars switched on for stage 2, start at their init: model/checkpoint.py with_parts)
            blob = read_checkpoint(init)
            other = blob["config"].variant != model_cfg.variant  # another ablation's matcher starts anew
            try:
                self.net = with_parts(blob["model"], model_cfg, ("scorer.matcher",) if other else ())[0]
            except ValueError as e:
                raise ValueError(f"{init}: does not fit variant {model_cfg.variant}: {e}") from None
            self.pca_state = blob.get("teacher_pca")
            self.aux_state = None if other else blob.get("aux_scorer")
        else:
            self.net = OddOneOutNet(model_cfg)
        self.net.to(self.device)
        if self.cfg.freeze_backbone:
            self.net.scene.encoder.freeze_backbone()
        self.aux = stage2_scorer(self.net, self.aux_state) if self.cfg.stage == 2 else None
        if self.aux is not None:
            self.aux.to(self.device)
        self.stage_params()
        self.loop = TrainLoop(self.param_groups(), loop_config(self.cfg), lr_scales(self.cfg))
        self.step_loss = StepLoss(self.net, train_cfg, self.device, self.aux)
        if self.world > 1:  # DDP wraps the loss module: its forward is the whole differentiable step
            self.step_loss = torch.nn.parallel.DistributedDataParallel(self.step_loss, find_unused_parameters=True)
        roots = list(data) if isinstance(data, (list, tuple)) else [data]
        dirs = [d for root in roots for d in scene_dirs(root, self.cfg.split)]
        if not dirs:
            raise ValueError(f"{data}: no scenes in split {self.cfg.split!r}")
        g = self.net.grid
        self.dataset = SceneDataset(dirs, DatasetConfig(
            n_input=self.cfg.n_input, n_target=self.cfg.n_target, image_size=model_cfg.image_size,
            occupancy_grid=(g.shape, g.voxel_size, g.origin) if self.cfg.lambda_occ > 0 else None), seed=self.cfg.seed)
        self.teacher = None
        self.pca = None
        teacher_net = None
        if model_cfg.distill:
            teacher_net = build_teacher(self.cfg.teacher, self.cfg.teacher_weights)
            self.pca = FeaturePCA(teacher_net.dim, model_cfg.teacher_dim).to(self.device)
            if self.pca_state is not None:
                self.pca.load_state_dict(self.pca_state)
        self.epoch, self.batch_in_epoch = 0, 0
        if resume:
            self._load_state(self.last_path)
        elif self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.json").write_text(json.dumps(
                {"model": model_cfg.to_dict(), "train": dataclasses.asdict(train_cfg), "data": [str(r) for r in roots],
                 "init": init, "world_size": self.world}, indent=1))
        self.backbone_cache = None
        if self.cfg.freeze_backbone:
            # entries belong to these backbone weights (after --init / --resume): other weights, another folder
            enc = self.net.scene.encoder
            digest = hashlib.sha1(b"".join(v.detach().cpu().numpy().tobytes()
                                           for v in enc.backbone.state_dict().values())).hexdigest()[:12]
            self.backbone_cache = FeatureCache(enc.backbone_levels, f"backbone-{digest}",
                                               self.out / "backbone_cache" / digest, self.device)
        if teacher_net is not None:
            enc = self.net.scene.encoder
            if (self.backbone_cache is not None and isinstance(teacher_net, MobileNetTeacher)
                    and teacher_net.is_trunk_of(enc)):  # the teacher is the frozen backbone: one network, one cache
                self.teacher = TrunkTeacherCache(self.backbone_cache, enc.level_strides)
            else:
                self.teacher = TeacherCache(teacher_net, self.out / "teacher_cache" / teacher_net.name, self.device)
        self.prior_cache = None
        comparison = (self.aux or self.net.scorer).comparison
        if self.cfg.stage == 2 and comparison is not None and not comparison.trunk:
            # the comparison's frozen features at each of its scales, cached per image like the backbone's (the trunk
            # comparison's maps are the cached backbone levels themselves)
            ext, scales = comparison.extractor(self.device), comparison.baseline_cfg.scales
            self.prior_cache = FeatureCache(lambda x: extract(ext, x, scales), f"prior-{'-'.join(map(str, scales))}",
                                            self.out / "prior_cache", self.device)

    def _cached_maps(self, cache, item: dict) -> list[torch.Tensor]:
        """cache's maps of the item's input views, stacked per map: list of (n_input, C, h, w)."""
        per_image = [cache(im) for im in _uint8_images(item["images"][:self.cfg.n_input])]
        return [torch.stack(maps).to(self.device) for maps in zip(*per_image)]

    def prior_features(self, item: dict) -> list[torch.Tensor] | None:
        """The comparison's maps of the item's input views (Comparison.maps), one (n_input, C, h, w) per map, from its
        cache ("teacher" features); None when nothing is cached (no comparison, or "trunk": its maps are made from
        the backbone levels in the step)."""
        if self.prior_cache is None:
            return None
        return self._cached_maps(self.prior_cache, item)

    @property
    def last_path(self) -> Path:
        return self.out / f"last_stage{self.cfg.stage}.pt"

    # ------------------------------------------------------------------ parameters
    def stage_params(self) -> None:
        """Stage 1 trains the scene encoder; stage 2 the scene encoder and the scorer that trains end to end (the
        model's, or the auxiliary one). The box estimator and a scorer trained apart are kept as they are
        (`odd-one-out train-boxes`, `train-comparator`)."""
        self.net.scorer.requires_grad_(self.cfg.stage == 2 and self.net.scorer.end_to_end)
        self.net.boxes.requires_grad_(False)

    def param_groups(self) -> dict[str, list[torch.nn.Parameter]]:
        """OddOneOutNet.param_groups, with the auxiliary scorer's parameters in "network" and "prior"."""
        groups = self.net.param_groups()
        if self.aux is not None:
            named = [(n, p) for n, p in self.aux.named_parameters() if p.requires_grad]
            groups["network"] += [p for n, p in named if n.split(".")[-1] not in PRIOR_SCALARS]
            prior = [p for n, p in named if n.split(".")[-1] in PRIOR_SCALARS]
            if prior:
                groups.setdefault("prior", []).extend(prior)
        return groups

    @property
    def step(self) -> int:
        return self.loop.step

    def aux_items(self) -> dict:
        """The checkpoint item of stage 2's auxiliary matcher ("aux_scorer": its state, the one trained here or the
        --init checkpoint's), so that a later stage 2 (a fine-tune) continues it; not run in inspections."""
        state = self.aux.state_dict() if self.aux is not None else self.aux_state
        return {"aux_scorer": state} if state else {}

    def train_mode(self) -> None:
        """The network in training mode, but for what this stage keeps as it is (the box estimator; a scorer that
        trains apart): their batch norms keep their statistics."""
        self.net.train()
        self.net.boxes.eval()
        if not (self.cfg.stage == 2 and self.net.scorer.end_to_end):
            self.net.scorer.eval()

    # ------------------------------------------------------------------ one step
    def teacher_targets(self, item: dict, views: slice, size: int) -> torch.Tensor:
        """Teacher features of the target views: (1, Vt, d_f, size, size); PCA fitted on the first batch."""
        feats = torch.stack([self.teacher(im) for im in _uint8_images(item["images"][views])]).to(self.device)
        if self.pca_state is None and self.pca.components.shape[1] != self.pca.components.shape[0]:
            self.pca.fit(feats)
            self.pca_state = self.pca.state_dict()
        elif self.pca_state is None:
            self.pca_state = self.pca.state_dict()  # same dimension: identity
        feats = self.pca(feats)
        if feats.shape[-1] != size:
            feats = F.interpolate(feats, size=(size, size), mode="bilinear", align_corners=False)
        return feats[None]

    def backbone_levels(self, item: dict) -> list[torch.Tensor]:
        """The frozen backbone's levels of the item's input views, from the cache: list of (n_input, C_l, h_l, w_l)."""
        return self._cached_maps(self.backbone_cache, item)

    def run_step(self, indices: list[int], timings: dict[str, float] | None = None, clock=time.perf_counter
                 ) -> dict[str, float]:
        """One optimiser step on the dataset items `indices` (of the current epoch); returns the mean loss terms.
        With `timings`, adds the seconds spent in data, teacher (and cached backbone levels), forward, backward and
        optimizer to it, read from `clock` (e.g. time.process_time for CPU seconds)."""
        cfg = self.cfg
        self.loop.begin()
        sums: dict[str, float] = {}
        spent = dict.fromkeys(("data", "teacher", "forward", "backward", "optimizer"), 0.0)
        for idx in indices:
            t0 = clock()
            item = self.dataset[idx]
            t1 = clock()
            rng = np.random.default_rng([cfg.seed, self.epoch, idx, 17])
            target = None
            if self.mcfg.distill:
                target = self.teacher_targets(item, slice(cfg.n_input, None), self.mcfg.render.feature_size)
            levels = self.backbone_levels(item) if self.backbone_cache is not None else None
            prior_feats = self.prior_features(item)
            t2 = clock()
            terms = self.step_loss(item, target, rng, levels, prior_feats)
            t3 = clock()
            (terms["total"] / len(indices)).backward()
            t4 = clock()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) / len(indices)
            spent["data"] += t1 - t0
            spent["teacher"] += t2 - t1
            spent["forward"] += t3 - t2
            spent["backward"] += t4 - t3
        t5 = clock()
        self.loop.update()
        spent["optimizer"] = clock() - t5
        if timings is not None:
            for k, v in spent.items():
                timings[k] = timings.get(k, 0.0) + v
        return sums

    # ------------------------------------------------------------------ loop
    def epoch_order(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.cfg.seed * 100003 + epoch)
        order = torch.randperm(len(self.dataset), generator=g).tolist()
        per_rank = math.ceil(len(order) / self.world)
        order = (order * self.world)[:per_rank * self.world]  # pad by wrapping: every rank takes as many steps
        return order[self.rank::self.world]

    def train(self, progress: bool = True) -> Path:
        cfg = self.cfg
        self.train_mode()
        log_path = self.out / "log.csv"
        fields = ["step", "epoch", "stage", "total", "image", "feature", "bce", "predicted_match", "lr", "seconds",
                  "occupancy"]
        if self.rank == 0 and not log_path.exists():
            with open(log_path, "w", newline="") as f:
                csv.writer(f).writerow(fields)
        bar = None
        if progress and self.rank == 0:
            from tqdm import tqdm

            total = cfg.max_steps or cfg.epochs * math.ceil(len(self.epoch_order(0)) / cfg.batch_size)
            bar = tqdm(total=total, initial=self.step, unit="step", desc=f"stage {cfg.stage}")
        while self.epoch < cfg.epochs and not (cfg.max_steps and self.step >= cfg.max_steps):
            self.dataset.set_epoch(self.epoch)
            order = self.epoch_order(self.epoch)
            batches = [order[i:i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
            while self.batch_in_epoch < len(batches):
                if cfg.max_steps and self.step >= cfg.max_steps:
                    break
                t0 = time.perf_counter()
                sums = self.run_step(batches[self.batch_in_epoch])
                self.batch_in_epoch += 1
                if self.rank == 0:
                    with open(log_path, "a", newline="") as f:
                        csv.writer(f).writerow([self.step, self.epoch, cfg.stage] +
                                               [f"{sums[k]:.6f}" if k in sums else "" for k in fields[3:8]] +
                                               [f"{self.loop.lr(1):.3g}",
                                                f"{time.perf_counter() - t0:.2f}",
                                                f"{sums['occupancy']:.6f}" if "occupancy" in sums else ""])
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{sums['total']:.4f}")
                if self.step % cfg.checkpoint_every == 0:
                    self.save_state()
            else:
                self.epoch += 1
                self.batch_in_epoch = 0
                self.save_state()
                continue
            break
        self.save_state()
        final = self.out / f"stage{cfg.stage}.pt"
        if self.rank == 0:
            save_checkpoint(final, self.net, meta={"stage": cfg.stage, "steps": self.step, "epochs": self.epoch,
                                                   "train": dataclasses.asdict(cfg)},
                            teacher_pca=self.pca_state or {}, **self.aux_items())
        if bar is not None:
            bar.close()
        return final

    # ------------------------------------------------------------------ exact resume
    def save_state(self) -> None:
        if self.rank != 0:
            return
        save_checkpoint(self.last_path, self.net, meta={"stage": self.cfg.stage}, **self.aux_items(),
                        optimizer=self.loop.opt.state_dict(), step=self.step, epoch=self.epoch,
                        batch_in_epoch=self.batch_in_epoch, torch_rng=torch.get_rng_state(),
                        teacher_pca=self.pca_state or {}, train=dataclasses.asdict(self.cfg))

    def _load_state(self, path: Path) -> None:
        blob = read_checkpoint(path)
        if blob.get("upgraded_from") == FORMAT_V1:  # its optimiser state follows the parameter order of then
            raise ValueError(f"{path}: a resume file of the model before its stages (2026-12-07) cannot resume "
                             f"exactly; start this stage again (--init its start checkpoint)")
        if blob["config"] != self.mcfg:
            raise ValueError(f"{path}: model config differs from this run's; resume with the same --config")
        self.net.load_state_dict(blob["model"])
        if self.aux is not None:
            self.aux.load_state_dict(blob["aux_scorer"])
        else:
            self.aux_state = blob.get("aux_scorer", self.aux_state)
        self.loop.load_state_dict({"optimizer": blob["optimizer"], "step": blob["step"]})
        self.epoch, self.batch_in_epoch = int(blob["epoch"]), int(blob["batch_in_epoch"])
        torch.set_rng_state(blob["torch_rng"])
        log = self.out / "log.csv"
        if self.rank == 0 and log.exists():  # drop rows logged after this checkpoint by the stopped run
            with open(log, newline="") as f:
                rows = list(csv.reader(f))
            keep = [rows[0]] + [r for r in rows[1:] if r[2] != str(self.cfg.stage) or int(r[0]) <= self.step]
            with open(log, "w", newline="") as f:
                csv.writer(f).writerows(keep)
        if blob.get("teacher_pca"):
            self.pca_state = blob["teacher_pca"]
            if self.pca is not None:
                self.pca.load_state_dict(self.pca_state)


def init_distributed() -> None:
    """Join a torchrun process group (gloo on CPU, nccl on CUDA) when WORLD_SIZE > 1."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and os.environ.get("ODD_DEVICE", "cpu").startswith("cuda") \
            else "gloo"
        torch.distributed.init_process_group(backend)


def close_distributed(barrier: bool = False) -> None:
    """Leave the torchrun process group, if any, before the process exits (barrier: once every rank is here, for a
    rank that finished its work; not after an error, where the others may never come): a gloo group left to the
    interpreter's exit can abort a rank ("terminate called without an active exception") after its work is done."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        try:
            if barrier:
                torch.distributed.barrier()
        finally:
            torch.distributed.destroy_process_group()
