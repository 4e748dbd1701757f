"""Latency and memory of one inspection (encoder to scores, no rendering), and of the attention alone.

Random weights (or a checkpoint's) on synthetic input: M views of a ring rig, N boxes laid out on
the grid. The box estimator runs on the predicted density (timed), but the N synthetic boxes are
classified so that N is what the caller asks for. Used by `odd-one-out bench` and benchmarks/.
"""
from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from .geometry import Box3D, look_at
from .model.checkpoint import save_checkpoint
from .model.config import ModelConfig
from .model.matcher import CrossInstanceMatcher
from .model.network import STAGES, OddOneOutNet


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
    return images, K, T, boxes


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
def _inspect(net: OddOneOutNet, images, K, T, box_list: list[Box3D]) -> list[float]:
    """One inspection: the model's own sequence (OddOneOutNet.forward: the backbone once, the box estimator on its
    volume), except that the given boxes are scored; returns the seconds of each of its STAGES."""
    seconds = net(images, K, T, select=lambda b, found: box_list, timed=True).seconds
    return [seconds[k] for k in STAGES]


def rss_mb(field: str = "VmRSS") -> float | None:
    """This process's resident memory (VmRSS) or its peak since the last reset (VmHWM) in MB (Linux; else None)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Set this process's peak-RSS mark (VmHWM) to its current RSS, so that a later peak can be lower than an
    earlier one (Linux /proc/self/clear_refs); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def inspection_peak_memory(net: OddOneOutNet, views: int, objects: int, device="cpu") -> dict:
    """Peak memory of one inspection over the loaded model, measured in a fresh process (so that nothing this
    process ran before counts): the model is saved, loaded there, its RSS taken, the peak mark reset, and one
    inspection (the first, cold: it builds the fused CNNs) then a second run. Returns peak_memory_mb (the cold
    inspection's peak RSS), peak_memory_increase_mb (over the loaded model), the warm inspection's increase and the
    method."""
    with tempfile.TemporaryDirectory() as tmp:
        path = save_checkpoint(Path(tmp) / "net.pt", net)
        code = "import sys; from odd_one_out_ros.benchmark import _peak_memory_child as f; f(*sys.argv[1:])"
        out = subprocess.run([sys.executable, "-c", code, str(path), str(views), str(objects), str(device),
                              str(torch.get_num_threads())], capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"peak-memory subprocess failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _peak_memory_child(path: str, views: str, objects: str, device: str, threads: str) -> None:
    from .inspection.loader import load_inspector

    net = load_inspector(path, device, threads=int(threads)).net
    images, K, T, box_list = synthetic_inputs(net.cfg, int(views), int(objects), device)
    result = {}
    for run in ("cold", "warm"):
        base = rss_mb()
        exact = reset_peak_rss()
        _inspect(net, images, K, T, box_list)
        peak = rss_mb("VmHWM")
        if run == "cold":
            result.update(peak_memory_mb=peak, peak_memory_increase_mb=peak - base)
        else:
            result["peak_memory_increase_warm_mb"] = peak - base
        result["peak_memory_method"] = ("fresh process: VmHWM after /proc/self/clear_refs, over the loaded model's RSS"
                                        if exact else "fresh process: lifetime VmHWM over the loaded model's RSS")
    print(json.dumps(result))


@torch.no_grad()
def bench_inspection(net: OddOneOutNet, views: int, objects: int, device="cpu", warmup: int = 2,
                     repeat: int = 5, reference: bool = True, memory: bool = True) -> dict:
    """Median latency (ms) of one inspection (`_inspect`: the backbone once, the volume, box estimation, the
    training-free prior when the model adds it, classification of `objects` boxes) and of each of its STAGES,
    with `memory` its peak memory (`inspection_peak_memory`, a fresh process; on a GPU the allocator's peak here)
    and, with `reference`, the same-run reference (`reference_forward`, timed interleaved with the inspections):
    reference_ms and ratio = latency_ms_median / reference_ms."""
    net = net.to(device).eval()
    images, K, T, box_list = synthetic_inputs(net.cfg, views, objects, device)
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    stages: dict[str, list[float]] = {k: [] for k in STAGES}

    def once():
        for k, v in zip(STAGES, _inspect(net, images, K, T, box_list)):
            stages[k].append(v)

    for _ in range(warmup):
        once()
    peak_mb = {}
    if cuda:
        peak_mb = {"peak_memory_mb": torch.cuda.max_memory_allocated() / 2 ** 20}
    elif memory:
        peak_mb = inspection_peak_memory(net, views, objects, device)
    ref = reference_forward(views, net.cfg.image_size, device) if reference else None
    if ref is not None:
        for _ in range(warmup):
            ref()
    times, ref_times = [], []
    for _ in range(repeat):  # interleaved, so that both see the same load on a shared machine
        times += _timed(once, device, 0, 1)
        if ref is not None:
            ref_times += _timed(ref, device, 0, 1)
    out = {"config": net.cfg.name, "variant": net.cfg.variant, "device": str(device), "views": views,
           "objects": objects, "image_size": net.cfg.image_size, "threads": torch.get_num_threads(),
           "latency_ms_median": 1000 * statistics.median(times), "latency_ms_all": [1000 * t for t in times],
           "stage_ms_median": {k: 1000 * statistics.median(v[warmup:]) for k, v in stages.items()}, **peak_mb}
    if ref is not None:
        out["reference"] = (f"torchvision ResNet-18 forward (random weights, eval, no_grad, NCHW) over {views} x 3 x "
                            f"{net.cfg.image_size} x {net.cfg.image_size} images, same threads, interleaved")
        out["reference_ms"] = 1000 * statistics.median(ref_times)
        out["reference_ms_all"] = [1000 * t for t in ref_times]
        out["ratio"] = out["latency_ms_median"] / out["reference_ms"]
    return out


def reference_forward(views: int, size: int, device="cpu"):
    """The same-run speed reference of an inspection: a function that runs a plain torchvision ResNet-18 (random
    weights, eval mode, no_grad, default memory format) forward over `views` random size x size images."""
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None).to(device).eval()
    x = torch.rand(views, 3, size, size, device=device)

    @torch.no_grad()
    def once():
        net(x)

    return once


@torch.no_grad()
def bench_attention(cfg: ModelConfig, objects: list[int], device="cpu", repeat: int = 5) -> dict:
    """Median time (ms) of the matcher (correspondences + attention blocks + head) per object count,
    for sparse voxel attention ("full") and vanilla attention ("B")."""
    results = {}
    for variant in ("full", "B"):
        c = ModelConfig.from_dict({**cfg.to_dict(), "variant": variant})
        in_ch = c.volume_channels + 1 + c.teacher_dim
        matcher = CrossInstanceMatcher(c, in_ch).to(device).eval()
        r = c.scorer.matcher.roi_size
        row = {}
        for n in objects:
            z = torch.randn(n, in_ch, r, r, r, device=device)
            feats = z[:, -c.teacher_dim:].flatten(2).transpose(1, 2)
            prior = torch.zeros(n, device=device) if c.scorer.matcher.prior else None  # its cost: the "prior" stage
            row[n] = 1000 * statistics.median(_timed(lambda: matcher(z, feats, prior), device, 1, repeat))
        results["sparse" if variant == "full" else "vanilla"] = row
    return results


FORWARD_PARTS = ("encoder", "backproject", "unet3d", "heads", "render", "boxes", "prior", "classify")
"""record_function scopes of OddOneOutNet's forward, reported by bench_train"""


def reference_step(device="cpu"):
    """The same-run speed reference: a function that runs a torchvision ResNet-18 (random weights, train mode)
    forward + backward over five 256 x 256 images."""
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None).to(device).train()
    x = torch.rand(5, 3, 256, 256, device=device)

    def once():
        net.zero_grad(set_to_none=True)
        net(x).sum().backward()
        _sync(device)

    return once


def bench_train(config: str = "cpu", data=None, views: tuple[int, int] = (4, 3), repeat: int = 3, device="cpu",
                train_overrides: dict | None = None, workdir=None) -> dict:
    """Milliseconds per training step (one scene per step, the current torch thread count) of stage 1 and stage 2
    with the TrainConfig defaults (the shipped recipe: `--views 4,3`, occupancy loss, the offline teacher), random
    weights (ImageNet backbone), on `data` (default: the shipped sample scene), and the same-run reference
    (`reference_ms`), measured interleaved: each round times one reference run, one stage 1 step and one stage 2
    step. The teacher cache is warm (a warm-up pass over the same items first): teacher features are computed
    once per image, so in training they are almost always cached; their one-off cost per image is reported
    separately. Breakdown per stage: data (loading the views, masks and the visual hull), teacher (cached
    lookup), forward, backward, optimizer (medians), and the forward's parts from one profiled step."""
    import dataclasses
    import tempfile
    from pathlib import Path

    from .model.config import preset
    from .resources import SAMPLE_SCENE
    from .training.trainer import TrainConfig, Trainer

    data = str(data or SAMPLE_SCENE)
    overrides = dict(train_overrides or {})
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(workdir or tmp)
        trainers = {}
        for stage in (1, 2):
            tc = TrainConfig(stage=stage, n_input=views[0], n_target=views[1], split="", warmup_steps=0, **overrides)
            torch.manual_seed(0)
            trainers[stage] = Trainer(preset(config), tc, data, work / f"stage{stage}", device)
            trainers[stage].train_mode()
        n_items = len(trainers[1].dataset)
        rounds = [(r % n_items, r) for r in range(repeat)]  # (item, epoch): other views and augmentation each round

        def step(stage, item, epoch, timings=None):
            """(wall ms, CPU ms) of one step; timings gets the CPU seconds per phase."""
            tr = trainers[stage]
            tr.epoch = epoch
            tr.dataset.set_epoch(epoch)
            t, c = time.perf_counter(), time.process_time()
            tr.run_step([item], timings, time.process_time)
            _sync(device)
            return 1000 * (time.perf_counter() - t), 1000 * (time.process_time() - c)

        teacher = trainers[1].teacher
        reference = reference_step(device)
        reference()  # warm-up
        t_cold = time.perf_counter()
        for item, epoch in rounds:  # warm-up: fills the teacher caches with these items' images
            for stage in (1, 2):
                step(stage, item, epoch)
        cold_images = teacher.computed if teacher is not None else 0
        cold_ms = 1000 * (time.perf_counter() - t_cold)
        ref = {"wall": [], "cpu": []}
        steps = {s: {"wall": [], "cpu": []} for s in (1, 2)}
        parts = {1: [], 2: []}
        for item, epoch in rounds:
            t, c = time.perf_counter(), time.process_time()
            reference()
            ref["wall"].append(1000 * (time.perf_counter() - t))
            ref["cpu"].append(1000 * (time.process_time() - c))
            for stage in (1, 2):
                timings: dict[str, float] = {}
                w, c = step(stage, item, epoch, timings)
                steps[stage]["wall"].append(w)
                steps[stage]["cpu"].append(c)
                parts[stage].append(timings)
        forward_parts = {}
        from torch.profiler import profile

        for stage in (1, 2):
            item, epoch = rounds[0]
            with profile() as prof:
                step(stage, item, epoch)
            totals = {e.key: e.cpu_time_total / 1000 for e in prof.key_averages() if e.key in FORWARD_PARTS}
            forward_parts[f"stage{stage}"] = {k: totals[k] for k in FORWARD_PARTS if k in totals}
        tc = trainers[1].cfg
        med = {k: statistics.median(v) for k, v in ref.items()}
        result = {
            "config": config, "variant": trainers[1].mcfg.variant, "device": str(device),
            "threads": torch.get_num_threads(), "data": data, "views": list(views),
            "grid": list(trainers[1].mcfg.grid.shape),
            "train": {k: v for k, v in dataclasses.asdict(tc).items()
                      if k in ("rays", "feature_rays", "freeze_backbone", "lambda_occ", "teacher", "batch_size")},
            "clock": "cpu: CPU seconds of this process (what a step costs; robust to other processes on a shared "
                     "machine); wall: elapsed time",
            "train_step_ms": {f"stage{s}": statistics.median(steps[s]["cpu"]) for s in (1, 2)},
            "reference_ms": med["cpu"],
            "ratio_to_reference": {f"stage{s}": statistics.median(steps[s]["cpu"]) / med["cpu"] for s in (1, 2)},
            "wall": {"train_step_ms": {f"stage{s}": statistics.median(steps[s]["wall"]) for s in (1, 2)},
                     "reference_ms": med["wall"],
                     "ratio_to_reference": {f"stage{s}": statistics.median(steps[s]["wall"]) / med["wall"]
                                            for s in (1, 2)}},
            "all_ms": {"reference": ref, **{f"stage{s}": steps[s] for s in (1, 2)}},
            "reference": "torchvision ResNet-18 forward + backward, 5 x 3 x 256 x 256, same thread count",
            "breakdown_ms": {f"stage{s}": {k: 1000 * statistics.median(p[k] for p in parts[s]) for k in parts[s][0]}
                             for s in (1, 2)},
            "forward_parts_ms": forward_parts,
            "teacher_cold": {"images": cold_images,
                             "ms_per_image": _teacher_ms(teacher) if teacher is not None else 0.0},
            "warmup_ms": cold_ms,
        }
    return result


def _teacher_ms(cache, repeat: int = 3) -> float:
    """ms of one teacher forward on one 256 x 256 image (what a cache miss costs, once per image; with the trunk as
    teacher, one backbone pass)."""
    x = torch.rand(1, 3, 256, 256, device=cache.device)
    with torch.no_grad():
        return statistics.median(1000 * t for t in _timed(lambda: cache.fn(x), cache.device, 1, repeat))
