"""Stage 2 that learns on a CPU (issue 22): the comparator (scorer "comparator", model/comparator.py) trained on
cached cells.

1. `cache_cells`: for each training scene and `subsets` sets of `views` input views, the frozen model's inspection
   (its volume, its boxes) and the comparison's 2D maps -> the comparison's cells (N, P, C) float16 and valid
   (N, P) for two sets of boxes: the model's own boxes (label = the label of the true object it overlaps at IoU
   >= OWN_MIN_IOU, else -1: ignored) and the true boxes jittered like proposals (training/box_head.py jittered).
   One file per scene, resumable, shardable.
2. `train_comparator`: the comparator alone on those caches, weighted BCE (the reference code's 0.7 / 0.3), a
   batch of scenes per step; augmentation: a random subset of at least 3 instances of a scene and a
   random quarter turn of each object's cell grid about z. The rest of the network is not touched.
docs/training.md "Learned comparison".
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..geometry import iou_matrix
from ..model.checkpoint import with_parts
from ..model.comparator import CellComparator
from ..model.comparison import Comparison
from ..model.inference import views_to_tensors
from ..model.losses import weighted_bce
from ..model.network import OddOneOutNet
from .box_head import cache_scene_files, jittered, view_subsets
from .loop import PartTrainConfig, TrainLoop, fit

OWN_MIN_IOU = 0.25
"""a box of the model's own takes the label of the true object it overlaps by at least this IoU"""


@dataclass(frozen=True)
class ComparatorTrainConfig(PartTrainConfig):
    """The comparator's training (the defaults of PartTrainConfig; a batch is that many inspections)."""


@torch.no_grad()
def cache_cells(net: OddOneOutNet, dirs: list[Path], out: Path, views: int = 5, subsets: int = 2, seed: int = 0,
                shard: tuple[int, int] = (0, 1), progress=None) -> int:
    """Write out/<scene>.pt = {"own" / "gt": per view set {"cells": (N, P, C) float16, "valid": (N, P) bool,
    "labels": (N,) long (1 anomalous, 0 normal, -1 ignored)}} for the scenes of this shard
    (training/box_head.py `cache_scene_files`); the cells of the comparison net's config names (scorer.comparison).
    Returns the number written."""
    net.eval()
    comparison = Comparison(net.cfg.scorer.comparison)

    def build(meta, rng):
        truth = [o.box for o in meta.objects]
        truth_labels = np.array([int(o.anomalous) for o in meta.objects])
        blob = {"own": [], "gt": []}
        for vs in view_subsets(len(meta.cameras), views, subsets, rng):
            images, K, T = views_to_tensors(meta.posed_views(vs), net.cfg.image_size, "cpu")
            insp = net(images, K, T, score=False)  # the inspection up to its boxes
            insp.encoding.maps = comparison.maps(insp.encoding)  # once for both box lists below
            own = insp.boxes[0]
            jit = [jittered(b, rng) for b in truth]
            labels_own = np.full(len(own), -1)
            if own and truth:
                M = iou_matrix(own, truth)
                best = M.argmax(1)
                ok = M[np.arange(len(own)), best] >= OWN_MIN_IOU
                labels_own[ok] = truth_labels[best[ok]]
            for key, boxes, labels in (("own", own, labels_own), ("gt", jit, truth_labels)):
                cells, valid = comparison.cells(insp.encoding, [boxes])[0]
                blob[key].append({"cells": cells.half(), "valid": valid,
                                  "labels": torch.as_tensor(labels, dtype=torch.long)})
        return blob

    return cache_scene_files(dirs, out, shard, seed, build, progress)


def load_cell_caches(cache_dirs: list[Path], keys: tuple[str, ...] = ("own", "gt")) -> list[dict]:
    """Every cache file under cache_dirs -> one item per (file, box set, view set) with >= 3 boxes and >= 1 label:
    {"cells": (N, P, C) float16, "valid": (N, P), "labels": (N,)}."""
    items = []
    for d in cache_dirs:
        for f in sorted(Path(d).glob("*.pt")):
            blob = torch.load(f, map_location="cpu", weights_only=True)
            for k in keys:
                for it in blob[k]:
                    if it["cells"].shape[0] >= 3 and (it["labels"] >= 0).any():
                        items.append(it)
    if not items:
        raise ValueError(f"no cached cells in {[str(d) for d in cache_dirs]}")
    return items


def augmented(item: dict, comparator: CellComparator, rng: np.random.Generator
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random subset of >= 3 of the scene's instances, each object's cell grid turned by a random quarter turn:
    -> cells (n, P, C) float32, valid (n, P), labels (n,)."""
    N = item["cells"].shape[0]
    keep = np.sort(rng.choice(N, size=int(rng.integers(3, N + 1)), replace=False))
    turns = comparator.perms[torch.from_numpy(rng.integers(4, size=len(keep)))]  # (n, P)
    cells = item["cells"][keep].float().gather(1, turns[..., None].expand(-1, -1, item["cells"].shape[-1]))
    valid = item["valid"][keep].gather(1, turns)
    return cells, valid, item["labels"][keep]


def train_comparator(comparator: CellComparator, items: list[dict], cfg: ComparatorTrainConfig,
                     resume_file: Path | None = None, log=print) -> CellComparator:
    """Train the comparator on cached items (`load_cell_caches`). resume_file: training/loop.py `fit`."""

    def batch_loss(rng):
        logits, labels = [], []
        for i in rng.integers(len(items), size=cfg.batch):
            cells, valid, y = augmented(items[i], comparator, rng)
            logits.append(comparator(cells, valid)[0])
            labels.append(y)
        logits, labels = torch.cat(logits), torch.cat(labels)
        keep = labels >= 0
        return {"total": weighted_bce(logits[keep], labels[keep])}

    loop = TrainLoop({"comparator": list(comparator.parameters())}, cfg.loop())
    fit(comparator, batch_loss, loop, resume_file, log)
    return comparator


def with_comparator(net: OddOneOutNet, **fields) -> OddOneOutNet:
    """A copy of net with the comparator as its scorer (and the given ComparatorConfig fields, e.g. dim): its
    weights, and its comparator when it has one of the same shape, else a new one (which ranks as the comparison):
    model/checkpoint.py with_parts."""
    cfg = net.cfg.changed("scorer", kind="comparator").changed("scorer.comparator", **fields).validate()
    return with_parts(net, cfg, ("scorer.comparator",) if fields else ())[0]
