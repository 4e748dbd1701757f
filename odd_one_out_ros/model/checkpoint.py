"""Checkpoints: a plain dict of tensors and primitive types, loaded with torch.load(weights_only=True).

{"format": FORMAT, "config": ModelConfig.to_dict(), "model": state_dict, "meta": {...}, ...extra}
A truncated, foreign or mismatching file, a malformed structure (no `model`, a `model` that is not a
mapping of tensors, a `meta` that is not a mapping), a config that fails ModelConfig.validate() and weights
that are not finite (NaN or inf) all raise CheckpointError naming the file: a model that cannot work is
refused at load time instead of publishing empty results. Nothing is unpickled beyond tensors and
primitive containers.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from ..fileio import atomic_path
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
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)
    return path


def extra_items(blob: dict) -> dict:
    """A checkpoint dict's items beside format, config, model and meta (e.g. the baseline's calibration), to carry
    into a checkpoint derived from it (save_checkpoint(..., **extra_items(blob)))."""
    return {k: v for k, v in blob.items() if k not in ("format", "config", "model", "meta")}


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The raw checkpoint dict (tensors on the CPU), validated for format, structure, config and finite weights."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load of a foreign file can raise nearly anything
        first = str(e).splitlines()[0] if str(e) else ""
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {first})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an odd_one_out_ros checkpoint (format "
                              f"{blob.get('format') if isinstance(blob, dict) else type(blob).__name__!r})")
    try:
        blob["config"] = ModelConfig.from_dict(blob["config"]).validate()
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: bad model config ({e})") from None
    state = blob.get("model")
    if not isinstance(state, dict) or not state:
        what = ("missing" if state is None else "empty" if isinstance(state, dict)
                else f"{type(state).__name__}, not a mapping of tensors")
        raise CheckpointError(f"{path}: malformed checkpoint ('model' is {what})")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: malformed checkpoint ('model'[{bad[0]!r}] is "
                              f"{type(state[bad[0]]).__name__}, not a tensor; {len(bad)} such entries)")
    if not isinstance(blob.get("meta", {}), dict):
        raise CheckpointError(f"{path}: malformed checkpoint ('meta' is {type(blob['meta']).__name__}, not a mapping)")
    nonfinite = {k: int((~torch.isfinite(v)).sum()) for k, v in state.items()
                 if (v.is_floating_point() or v.is_complex()) and not bool(torch.isfinite(v).all())}
    if nonfinite:
        first = next(iter(nonfinite))
        raise CheckpointError(f"{path}: the weights are not finite ({sum(nonfinite.values())} NaN/inf values in "
                              f"{len(nonfinite)} tensors, first {first}): a diverged or corrupted model")
    return blob


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[OddOneOutNet, dict]:
    """Build the network from the checkpoint's config and load its weights on `device`; returns (net, blob)."""
    blob = read_checkpoint(path)
    # the checkpoint holds the trained backbone; do not read ImageNet weights
    cfg: ModelConfig = blob["config"].changed("encoder", weights="")
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
