"""Latency and memory of one inspection (encoder to scores, no rendering), and of the attention alone.

Random weights (or a checkpoint's) on synthetic input: M views of a ring rig, N boxes laid out on
the grid. The box estimator runs on the predicted density (timed), but the N synthetic boxes are
classified so that N is what the caller asks for. Used by `odd-one-out bench` and benchmarks/.
"""
from __future__ import annotations

import math
import resource
import statistics
import time

import numpy as np
import torch

from ..geometry import Box3D, look_at
from .config import ModelConfig
from .matcher import CrossInstanceMatcher, boxes_to_tensor
from .network import OddOneOutNet


def synthetic_inputs(cfg: ModelConfig, views: int, objects: int, device) -> tuple:
    S = cfg.image_size
    K = torch.tensor([[0.83 * S, 0, S / 2 - 0.5], [0, 0.83 * S, S / 2 - 0.5], [0, 0, 1]], device=device)
    K = K.expand(1, views, 3, 3).contiguous()
    reach = min(cfg.grid.shape[0], cfg.grid.shape[1]) * cfg.grid.voxel_size / 2
    T = torch.stack([torch.tensor(look_at([2.2 * reach * math.cos(a), 2.2 * reach * math.sin(a), 1.5 * reach],
                                          [0, 0, 0]).as_matrix(), dtype=torch.float32)
                     for a in np.linspace(0, 2 * math.pi, views, endpoint=False)])[None].to(device)
    images = torch.rand(1, views, 3, S, S, device=device)
    side = math.ceil(math.sqrt(objects))
    pitch = 1.6 * reach / side
    boxes = [Box3D([(i % side - (side - 1) / 2) * pitch, (i // side - (side - 1) / 2) * pitch, 0.06],
                   [0.6 * pitch, 0.4 * pitch, 0.1], 0.3 * i) for i in range(objects)]
    return images, K, T, boxes_to_tensor(boxes, device)


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device, warmup: int, repeat: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return times


@torch.no_grad()
def bench_inspection(net: OddOneOutNet, views: int, objects: int, device="cpu", warmup: int = 2,
                     repeat: int = 5) -> dict:
    """Median latency (ms) of build_volume + box estimation + classification of `objects` boxes, peak memory."""
    net = net.to(device).eval()
    images, K, T, boxes = synthetic_inputs(net.cfg, views, objects, device)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    stages: dict[str, list[float]] = {"volume": [], "boxes": [], "classify": []}

    def once():
        _sync(device)
        t0 = time.perf_counter()
        vol = net.build_volume(images, K, T)
        _sync(device)
        t1 = time.perf_counter()
        net.estimate_boxes(vol)
        t2 = time.perf_counter()
        net.classify(vol, [boxes])
        _sync(device)
        t3 = time.perf_counter()
        for k, v in zip(stages, (t1 - t0, t2 - t1, t3 - t2)):
            stages[k].append(v)

    times = _timed(once, device, warmup, repeat)
    out = {"config": net.cfg.name, "variant": net.cfg.variant, "device": str(device), "views": views,
           "objects": objects, "image_size": net.cfg.image_size, "threads": torch.get_num_threads(),
           "latency_ms_median": 1000 * statistics.median(times), "latency_ms_all": [1000 * t for t in times],
           "stage_ms_median": {k: 1000 * statistics.median(v[warmup:]) for k, v in stages.items()}}
    if torch.device(device).type == "cuda":
        out["peak_memory_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out["peak_memory_mb"] = peak  # process peak RSS (includes Python and libraries)
        out["peak_memory_increase_mb"] = peak - rss0
    return out


@torch.no_grad()
def bench_attention(cfg: ModelConfig, objects: list[int], device="cpu", repeat: int = 5) -> dict:
    """Median time (ms) of the matcher (correspondences + attention blocks + head) per object count,
    for sparse voxel attention ("full") and vanilla attention ("B")."""
    results = {}
    for variant in ("full", "B"):
        c = ModelConfig.from_dict({**cfg.to_dict(), "variant": variant})
        in_ch = c.volume_channels + 1 + c.teacher_dim
        matcher = CrossInstanceMatcher(c, in_ch).to(device).eval()
        r = c.matcher.roi_size
        row = {}
        for n in objects:
            z = torch.randn(n, in_ch, r, r, r, device=device)
            feats = z[:, -c.teacher_dim:].flatten(2).transpose(1, 2)
            row[n] = 1000 * statistics.median(_timed(lambda: matcher(z, feats), device, 1, repeat))
        results["sparse" if variant == "full" else "vanilla"] = row
    return results
