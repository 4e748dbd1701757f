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
    info: what reports record of the model (checkpoint path, sha256, config, variant, untrained)."""

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
        hint = (" The shipped checkpoint is not there yet: train one (odd-one-out train) and pass its path."
                if not checkpoint else "")
        raise ValueError(f"checkpoint {path}: no such file.{hint}")
    import torch

    from ..model.checkpoint import file_sha256, load_checkpoint
    from ..model.inference import Inspector

    if threads:
        torch.set_num_threads(int(threads))
    net, blob = load_checkpoint(path, device)
    inspector = Inspector(net, device, threshold)
    meta = blob.get("meta") or {}
    info = {"checkpoint": str(path.resolve()), "sha256": file_sha256(path), "config": net.cfg.name,
            "variant": net.cfg.variant, "untrained": bool(meta.get("untrained", False))}
    return LoadedModel(inspector, FiniteGuard(inspector), info)
