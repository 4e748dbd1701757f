"""A checkpoint made an inspector: the one way the detector node, replay, detect, bench and evaluate load a model."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..resources import DEFAULT_CHECKPOINT
from .guard import FiniteGuard


@dataclass
class LoadedModel:
    """inspector: model.inference.Inspector; guarded: the same behind FiniteGuard (non-finite outputs raise);
    info: what reports record of the model (checkpoint path, sha256, config, variant)."""

    inspector: object
    guarded: FiniteGuard
    info: dict

    @property
    def net(self):
        return self.inspector.net

    @property
    def threshold(self) -> float:
        return float(self.inspector.threshold)


def check_device(device: str) -> str:
    """'cpu', 'cuda' or 'cuda:N' that this machine has; ValueError (one line) otherwise."""
    device = str(device)
    if not (device in ("cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit())):
        raise ValueError(f"device must be cpu, cuda or cuda:N; got {device!r}")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"device is {device!r} but CUDA is not available here; use cpu")
    return device


def load_inspector(checkpoint: str | os.PathLike | None = None, device: str = "cpu", threshold: float | None = None,
                   threads: int | None = None) -> LoadedModel:
    """checkpoint (None or "": the shipped one) on `device`; threshold None: the checkpoint's; threads: torch's
    intra-op threads for this process (None: left as they are). Raises ValueError with one line (a missing file,
    a device this machine lacks, or model.checkpoint.CheckpointError naming the file)."""
    device = check_device(device)
    path = Path(checkpoint).expanduser() if checkpoint else DEFAULT_CHECKPOINT
    if not path.is_file():
        raise ValueError(f"checkpoint {path}: no such file")
    import torch

    from ..model.checkpoint import file_sha256, load_checkpoint
    from ..model.inference import Inspector

    if threads:
        torch.set_num_threads(int(threads))
    net, _ = load_checkpoint(path, device)
    inspector = Inspector(net, device, threshold)
    info = {"checkpoint": str(path.resolve()), "sha256": file_sha256(path), "config": net.cfg.name,
            "variant": net.cfg.variant}
    return LoadedModel(inspector, FiniteGuard(inspector), info)


def node_model(checkpoint: str, device: str, injected=None) -> tuple:
    """A node's model: (inspect_fn(views) -> InspectionResult behind FiniteGuard, the checkpoint's own anomaly
    threshold, the reports' model info); injected: an inspect_fn that replaces the checkpoint (tests; threshold
    0.5). Raises ValueError (one line) naming the parameter or the file."""
    if injected is not None:
        return injected, 0.5, {"checkpoint": None, "injected": True}
    try:
        check_device(device)
    except ValueError as e:
        raise ValueError(f"parameter {e}") from None
    model = load_inspector(checkpoint or None, device)
    return model.guarded, model.threshold, model.info


def free_cuda(device: str) -> None:
    """Give the CUDA memory of a model no longer referenced back now (the guard's hooks hold the network in a
    reference cycle, which only the collector frees)."""
    if str(device).startswith("cuda"):
        import gc

        import torch

        gc.collect()
        torch.cuda.empty_cache()
