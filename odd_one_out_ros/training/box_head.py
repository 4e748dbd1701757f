"""Training the learned box head (estimator "heatmap", model/estimators.py, model/box_head.py) on cached frozen volumes.

1. `cache_volumes`: each training scene's inspection volume (the frozen encoder, back-projection and 3D network of
   a trained checkpoint) for `subsets` sets of `views` input views, stored as float16 head inputs
   (S, c + 2, Z, Y, X) with the scene's true boxes: one file per scene, resumable, shardable across processes.
2. `train_box_head`: the head alone on those caches (Gaussian focal loss + L1 regression, model/box_head.py), with
   the grid's symmetries as augmentation (turns by 90 degrees about z and a mirror, applied to the volume and the
   boxes alike); AdamW with a warm-up and a cosine schedule (training/loop.py); a resume file every
   `checkpoint_every` steps.
The rest of the network is not touched: the result is the input checkpoint with a box head (and the "heatmap"
estimator) added. docs/training.md "Learned boxes".
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.dataset import augment_world
from ..data.scene_meta import SceneFormatError, read_scene_meta
from ..fileio import atomic_path
from ..geometry import Box3D, boxes_from_tensor, boxes_to_tensor, match_truth
from ..model.box_head import BoxHead, decode, head_loss, refine_regions, residual_targets, targets
from ..model.checkpoint import with_parts
from ..model.inference import views_to_tensors
from ..model.network import OddOneOutNet
from .loop import PartTrainConfig, TrainLoop, fit


@dataclass(frozen=True)
class BoxHeadTrainConfig(PartTrainConfig):
    steps: int = 3000
    batch: int = 16
    """volumes per step (the refiner: scenes)"""
    lr: float = 2e-3
    weight_decay: float = 1e-4
    log_every: int = 50
    reg_weight: float = 0.5
    """weight of the L1 regression beside the heatmap's focal loss"""
    squash: float = 0.0
    """share of the training volumes squashed along z (`squashed`, by a factor drawn from squash_range): objects
    flatter than any training object, e.g. plates thinner than a voxel"""
    squash_range: tuple[float, float] = (0.25, 1.0)


def view_subsets(n_cameras: int, views: int, subsets: int, rng: np.random.Generator) -> list[list[int]]:
    """`subsets` sets of `views` view indices of a scene with n_cameras: the first spread evenly (as `evaluate`
    picks them) from a random start, the others drawn at random."""
    out = []
    for i in range(subsets):
        if i == 0:
            start = int(rng.integers(n_cameras))
            out.append(sorted({(start + int(round(j * n_cameras / views))) % n_cameras for j in range(views)}))
        else:
            out.append(sorted(rng.choice(n_cameras, size=min(views, n_cameras), replace=False).tolist()))
    return out


def cache_scene_files(dirs: list[Path], out: Path, shard: tuple[int, int], seed: int, build, progress=None) -> int:
    """The caching loop of train-boxes and train-comparator: out/<scene>.pt = build(meta, rng) for the scenes of
    this shard (every n-th from i), written atomically; scenes already cached are kept; a scene that cannot be read
    is skipped with a message (progress, or stdout). rng: seeded by seed and the scene's name. Returns the number
    written."""
    out.mkdir(parents=True, exist_ok=True)
    i, n = shard
    written = 0
    for d in dirs[i::n]:
        dest = out / f"{d.name}.pt"
        if dest.exists():
            continue
        try:
            meta = read_scene_meta(d)
        except SceneFormatError as e:
            (progress or print)(f"skipping {d}: {e}")
            continue
        blob = build(meta, np.random.default_rng([seed, int.from_bytes(d.name.encode()[-8:], "little")]))
        with atomic_path(dest) as tmp:
            torch.save(blob, tmp)
        written += 1
        if progress:
            progress(f"cached {d.name}")
    return written


@torch.no_grad()
def cache_volumes(net: OddOneOutNet, dirs: list[Path], out: Path, views: int = 5, subsets: int = 2, seed: int = 0,
                  shard: tuple[int, int] = (0, 1), progress=None) -> int:
    """Write out/<scene>.pt = {"x": (S, c + 2, Z, Y, X) float16 head inputs, "boxes": (N, 7) float32} for the scenes
    of this shard (`cache_scene_files`). Returns the number written."""
    net.eval()

    def build(meta, rng):
        xs = []
        for vs in view_subsets(len(meta.cameras), views, subsets, rng):
            images, K, T = views_to_tensors(meta.posed_views(vs), net.cfg.image_size, "cpu")
            vol = net.scene(images, K, T).volume
            xs.append(BoxHead.inputs(vol, net.grid.voxel_size)[0].half())
        return {"x": torch.stack(xs), "boxes": boxes_to_tensor([o.box for o in meta.objects])}

    return cache_scene_files(dirs, out, shard, seed, build, progress)


def turned(x: torch.Tensor, boxes: list[Box3D], quarter_turns: int, mirror: bool
           ) -> tuple[torch.Tensor, list[Box3D]]:
    """A tensor x (..., Y, X) on the grid's columns (a head input (C, Z, Y, X) or its column features; the grid is
    centred on the world origin) and its boxes, mirrored (y -> -y) and then turned by quarter_turns x 90 degrees
    about world +z (counter-clockwise seen from above): the same scene seen in a turned world (the grid maps onto
    itself for square X = Y)."""
    if mirror:
        x = torch.flip(x, dims=(-2,))
    # a counter-clockwise turn of the world moves the content of cell (y, x) to the cell that rot90 by -1 in the
    # (Y, X) index plane gives (tests/test_box_head.py pins this against the targets of the turned boxes)
    x = torch.rot90(x, -quarter_turns, dims=(-2, -1))
    _, boxes = augment_world([], boxes, quarter_turns * math.pi / 2, np.zeros(2), mirror)
    return x, boxes


def squashed(x: torch.Tensor, boxes: list[Box3D], factor: float, grid) -> tuple[torch.Tensor, list[Box3D]]:
    """A head input x (C, Z, Y, X) on the grid and its boxes in a world scaled by `factor` (< 1: flatter) along z
    about the floor z = 0: each voxel layer takes the mean of the input over the heights that map into it (the layers
    as constant slabs; below the grid's bottom or above its top: that layer), so filled fractions keep their mass;
    each box's centre height and height x factor. With plates and keys thinner than a voxel and training objects at
    least one voxel tall, it shows the head and the refiner how the volume of a flatter object looks."""
    Z, s, z0 = x.shape[-3], grid.voxel_size, grid.lo[2]
    edges = z0 + np.arange(Z + 1) * s  # layer boundaries (m)
    lo, hi = edges[:-1, None] / factor, edges[1:, None] / factor  # each new layer's heights before the squash
    old_lo, old_hi = edges[None, :-1].copy(), edges[None, 1:].copy()
    old_lo[0, 0], old_hi[0, -1] = -np.inf, np.inf  # the bottom and top layers extend beyond the grid
    w = np.clip(np.minimum(hi, old_hi) - np.maximum(lo, old_lo), 0, None) / (hi - lo)  # (Z new, Z old)
    out = torch.einsum("kj,...jyx->...kyx", torch.as_tensor(w, dtype=x.dtype, device=x.device), x)
    return out, [Box3D(np.array([b.center[0], b.center[1], b.center[2] * factor]),
                       np.array([b.size[0], b.size[1], b.size[2] * factor]), b.yaw) for b in boxes]


def _maybe_squashed(x: torch.Tensor, boxes: list[Box3D], cfg: BoxHeadTrainConfig, grid, rng: np.random.Generator
                    ) -> tuple[torch.Tensor, list[Box3D]]:
    """`squashed` for a share cfg.squash of the calls (a factor uniform in cfg.squash_range), else (x, boxes)."""
    if cfg.squash <= 0 or rng.random() >= cfg.squash:
        return x, boxes
    return squashed(x, boxes, float(rng.uniform(*cfg.squash_range)), grid)


def load_caches(cache_dirs: list[Path]) -> list[dict]:
    """Every cache file under cache_dirs -> [{"x": (S, C, Z, Y, X) float16, "boxes": list[Box3D]}]."""
    items = []
    for d in cache_dirs:
        for f in sorted(Path(d).glob("*.pt")):
            blob = torch.load(f, map_location="cpu", weights_only=True)
            items.append({"x": blob["x"], "boxes": boxes_from_tensor(blob["boxes"])})
    if not items:
        raise ValueError(f"no cached volumes in {[str(d) for d in cache_dirs]}")
    return items


def with_box_head(net: OddOneOutNet, **heatmap_fields) -> OddOneOutNet:
    """A copy of net with the "heatmap" estimator and the given HeatmapBoxConfig fields (e.g. score_threshold,
    head_blocks, refine): its weights, and a box head (net's own when it has one and its shape is kept, else new)
    and, with refine, a box refiner (net's own when it has one, else new): model/checkpoint.py with_parts."""
    cfg = net.cfg.changed("boxes", estimator="heatmap").changed("boxes.heatmap", **heatmap_fields)
    fresh = ("boxes.head",) if any(f.startswith("head_") for f in heatmap_fields) else ()
    return with_parts(net, cfg, fresh)[0]


def batch_targets(boxes: list[list[Box3D]], grid, device) -> dict[str, torch.Tensor]:
    ts = [targets(bs, grid) for bs in boxes]
    return {k: torch.from_numpy(np.stack([t[k] for t in ts])).to(device) for k in ts[0]}


def train_box_head(net: OddOneOutNet, items: list[dict], cfg: BoxHeadTrainConfig, resume_file: Path | None = None,
                   log=print, device: str = "cpu") -> OddOneOutNet:
    """Train net.boxes.head (net must have the "heatmap" estimator, e.g. `with_box_head`) on cached items
    (`load_caches`); only the head's parameters change. resume_file: training/loop.py `fit`."""
    head = getattr(net.boxes, "head", None)
    if head is None:
        raise ValueError("the network has no box head (boxes.estimator is not 'heatmap')")
    head.to(device)

    def batch_loss(rng):
        picks = rng.integers(len(items), size=cfg.batch)
        xs, squashed_boxes = [], []
        for i in picks:
            x = items[i]["x"][int(rng.integers(items[i]["x"].shape[0]))].to(device, torch.float32)
            x, boxes = _maybe_squashed(x, items[i]["boxes"], cfg, net.grid, rng)
            xs.append(x)
            squashed_boxes.append(boxes)
        col = head.columns(torch.stack(xs))  # per voxel, so it commutes with the turns below
        cols, bs = [], []
        for j in range(len(picks)):
            c, boxes = turned(col[j], squashed_boxes[j], int(rng.integers(4)), bool(rng.integers(2)))
            cols.append(c)
            bs.append(boxes)
        heat, reg = head.from_columns(torch.stack(cols))
        return head_loss(heat, reg, batch_targets(bs, net.grid, device), cfg.reg_weight)

    fit(head, batch_loss, TrainLoop({"head": list(head.parameters())}, cfg.loop()), resume_file, log)
    return net


PROPOSAL_THRESHOLD, PROPOSAL_MIN_IOU = 0.1, 0.1
"""the refiner trains on the head's boxes above this heatmap score that overlap a true box by this IoU"""


@torch.no_grad()
def proposals(net: OddOneOutNet, items: list[dict], device: str = "cpu") -> list[list[tuple[list, list]]]:
    """For each cached item and view set: (the trained head's boxes, their true boxes), the pairs of
    geometry.match_truth at IoU PROPOSAL_MIN_IOU among the head's peaks above PROPOSAL_THRESHOLD."""
    head = net.boxes.head.eval()
    out = []
    for it in items:
        per = []
        for x in it["x"]:
            found = decode(*head(x[None].to(device, torch.float32)), net.grid, PROPOSAL_THRESHOLD,
                           net.cfg.boxes.max_objects)[0][0]
            pairs = [(found[j], g) for g, j in zip(it["boxes"], match_truth(it["boxes"], found, PROPOSAL_MIN_IOU))
                     if j >= 0]
            per.append(([p for p, _ in pairs], [g for _, g in pairs]))
        out.append(per)
    return out


def jittered(box: Box3D, rng: np.random.Generator) -> Box3D:
    """A true box moved by about a centimetre, scaled by about 10 % and turned by about 0.15 rad: a proposal."""
    return Box3D(box.center + rng.normal(0, 0.01, 3), box.size * np.exp(rng.normal(0, 0.1, 3)),
                 box.yaw + rng.normal(0, 0.15))


def train_box_refiner(net: OddOneOutNet, items: list[dict], cfg: BoxHeadTrainConfig, resume_file: Path | None = None,
                      log=print, device: str = "cpu") -> OddOneOutNet:
    """Train net.boxes.refiner (HeatmapBoxConfig.refine) on cached items: the trained head's boxes (`proposals`) and
    jittered true boxes, each regressed to its true box (smooth L1 of model/box_head.py residual_targets), with the
    head's symmetries as augmentation; cfg.batch scenes per step. Only the refiner's parameters change."""
    refiner = getattr(net.boxes, "refiner", None)
    if refiner is None:
        raise ValueError("the network has no box refiner (boxes.heatmap.refine is off)")
    props = proposals(net, items, device)
    log(f"proposals: {sum(len(p) for per in props for p, _ in per)} boxes of the head matched to true boxes")
    refiner.to(device)
    r = net.cfg.boxes.heatmap.refine_size

    def batch_loss(rng):
        rois, boxes, truth = [], [], []
        for i in rng.integers(len(items), size=cfg.batch):
            s = int(rng.integers(items[i]["x"].shape[0]))
            found, gts = props[i][s]
            gt_all = items[i]["boxes"]
            pb = list(found) + [jittered(g, rng) for g in gt_all]
            tb = list(gts) + list(gt_all)
            k, mirror = int(rng.integers(4)), bool(rng.integers(2))
            x, both = _maybe_squashed(items[i]["x"][s].to(device, torch.float32), pb + tb, cfg, net.grid, rng)
            pb, tb = both[:len(pb)], both[len(pb):]
            x, pb = turned(x, pb, k, mirror)
            _, tb = turned(x[:0], tb, k, mirror)
            pt = boxes_to_tensor(pb, device)
            rois.append(refine_regions(x[None], pt, net.grid, r))
            boxes.append(pt)
            truth.append(boxes_to_tensor(tb, device))
        boxes, truth = torch.cat(boxes), torch.cat(truth)
        res = refiner(torch.cat(rois), boxes)
        loss = torch.nn.functional.smooth_l1_loss(res, residual_targets(boxes, truth), beta=0.05,
                                                  reduction="none").sum(1).mean()
        return {"total": loss}

    fit(refiner, batch_loss, TrainLoop({"refiner": list(refiner.parameters())}, cfg.loop()), resume_file, log)
    return net
