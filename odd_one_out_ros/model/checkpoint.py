"""Checkpoints: a plain dict of tensors and primitive types, loaded with torch.load(weights_only=True).

{"format": FORMAT, "config": ModelConfig.to_dict(), "model": state_dict, "meta": {...}, ...extra}
A truncated, foreign or mismatching file raises CheckpointError naming the file; nothing is
unpickled beyond tensors and primitive containers.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import zipfile
from pathlib import Path

import torch

from .config import ModelConfig
from .network import OddOneOutNet

FORMAT = "odd_one_out_ros/checkpoint/1"


class CheckpointError(ValueError):
    """A file that is not a usable checkpoint of this package."""


def save_checkpoint(path: str | os.PathLike, net: OddOneOutNet, meta: dict | None = None,
                    half: bool = False, **extra) -> Path:
    """Write atomically. half=True stores floating-point weights as float16 (shipping size)."""
    path = Path(path)
    state = net.state_dict()
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    blob = {"format": FORMAT, "config": net.cfg.to_dict(), "model": state, "meta": dict(meta or {}), **extra}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)
    return path


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The raw checkpoint dict (tensors on the CPU), validated for format and config."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        first = str(e).splitlines()[0] if str(e) else ""
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {first})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an odd_one_out_ros checkpoint (format "
                              f"{blob.get('format') if isinstance(blob, dict) else type(blob).__name__!r})")
    try:
        blob["config"] = ModelConfig.from_dict(blob["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: bad model config ({e})") from None
    return blob


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[OddOneOutNet, dict]:
    """Build the network from the checkpoint's config and load its weights on `device`; returns (net, blob)."""
    blob = read_checkpoint(path)
    cfg: ModelConfig = blob["config"]
    cfg.encoder.weights = ""  # the checkpoint holds the trained backbone; do not read ImageNet weights
    net = OddOneOutNet(cfg)
    state = {k: v.float() if v.is_floating_point() else v for k, v in blob["model"].items()}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise CheckpointError(f"{path}: weights do not fit the {cfg.name} config ({first} ...)") from None
    return net.to(device).eval(), blob


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a checkpoint file (recorded in reports, compared by replay)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
