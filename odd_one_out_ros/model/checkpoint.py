"""Checkpoints: a plain dict of tensors and primitive types, loaded with torch.load(weights_only=True).

{"format": FORMAT, "config": ModelConfig.to_dict(), "model": state_dict, "meta": {...}, ...extra}
Checkpoints of FORMAT_V1 (written before the model was split into stages, 2026-12-07) load with their settings:
their config is read into today's sections (config.upgrade_config_dict) and their weights renamed to the stages'
(`upgrade_state_v1`; weights of a part the config does not run, e.g. the volume matcher of a comparator model, are
dropped).
A truncated, foreign or mismatching file, a malformed structure (no `model`, a `model` that is not a
mapping of tensors, a `meta` that is not a mapping), a config that fails ModelConfig.validate() and weights
that are not finite (NaN or inf) all raise CheckpointError naming the file: a model that cannot work is
refused at load time instead of publishing empty results. Nothing is unpickled beyond tensors and
primitive containers.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import re
from pathlib import Path

import torch
import torch.nn as nn

from ..fileio import atomic_path
from .config import ModelConfig
from .network import PRIOR_SCALARS, OddOneOutNet

FORMAT = "odd_one_out_ros/checkpoint/2"
FORMAT_V1 = "odd_one_out_ros/checkpoint/1"

# FORMAT_V1 weight names -> today's (the modules that became stages); None: dropped unless the scorer is that kind
_V1_PREFIXES = {"encoder.": "scene.encoder.", "unet.": "scene.unet.", "density_head.": "scene.density_head.",
                "colour_head.": "scene.colour_head.", "projector.": "scene.projector.", "box_head.": "boxes.head.",
                "box_refiner.": "boxes.refiner.", "matcher.": "scorer.matcher.", "comparator.": "scorer.comparator."}
_V1_SCORER_PARTS = {"matcher.": "matcher", "comparator.": "comparator"}


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
    return {k: v for k, v in blob.items() if k not in ("format", "config", "model", "meta", "upgraded_from")}


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The raw checkpoint dict (tensors on the CPU), validated for format, structure, config and finite weights."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # torch's text goes on to advise weights_only=False: never here
        m = re.search(r"WeightsUnpickler error:\s*([^\n]+)", str(e))
        raise CheckpointError(f"{path}: not a readable checkpoint: it holds more than tensors and plain values"
                              f"{f' ({m.group(1).strip()})' if m else ''}; checkpoints are loaded as weights, never as "
                              "code") from None
    except Exception as e:  # torch.load of a foreign file can raise nearly anything
        first = str(e).splitlines()[0] if str(e) else ""
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {first})") from None
    if not isinstance(blob, dict) or blob.get("format") not in (FORMAT, FORMAT_V1):
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
    if blob["format"] == FORMAT_V1:
        if blob["config"].scorer.kind != "matcher" and "aux_scorer" not in blob:  # stage 2's matcher, kept aside
            blob["aux_scorer"] = {k: v for k, v in state.items() if k.startswith("matcher.")} or None
            if blob["aux_scorer"] is None:
                del blob["aux_scorer"]
        blob["model"], blob["format"] = upgrade_state_v1(state, blob["config"]), FORMAT
        blob["upgraded_from"] = FORMAT_V1
        state = blob["model"]
    nonfinite = {k: int((~torch.isfinite(v)).sum()) for k, v in state.items()
                 if (v.is_floating_point() or v.is_complex()) and not bool(torch.isfinite(v).all())}
    if nonfinite:
        first = next(iter(nonfinite))
        raise CheckpointError(f"{path}: the weights are not finite ({sum(nonfinite.values())} NaN/inf values in "
                              f"{len(nonfinite)} tensors, first {first}): a diverged or corrupted model")
    return blob


def upgrade_state_v1(state: dict, cfg: ModelConfig) -> dict:
    """The weights of a FORMAT_V1 checkpoint under today's names (module docstring); names of no v1 module are kept
    as they are (load_state_dict then refuses them)."""
    out = {}
    for k, v in state.items():
        old = next((p for p in _V1_PREFIXES if k.startswith(p)), None)
        if old is None:
            out[k] = v
        elif _V1_SCORER_PARTS.get(old, cfg.scorer.kind) == cfg.scorer.kind:
            out[_V1_PREFIXES[old] + k[len(old):]] = v
    return out


def load_fitting(module: nn.Module, state: dict) -> bool:
    """Load `state` (names relative to module) into module when it fits: every one of its names is module's, in the
    same shape, and module lacks none but a prior's two scalars (switched on later: they keep their init). Returns
    whether it loaded; module is unchanged otherwise."""
    own = module.state_dict()
    fits = (bool(state) and all(k in own and own[k].shape == v.shape for k, v in state.items())
            and all(k in state or k.split(".")[-1] in PRIOR_SCALARS for k in own))
    if fits:
        module.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=False)
    return fits


def with_parts(state: dict | OddOneOutNet, cfg: ModelConfig, fresh: tuple[str, ...] = ()
               ) -> tuple[OddOneOutNet, list[str]]:
    """"This checkpoint plus a new part": a network of cfg with the weights of `state` (a state_dict or a network)
    wherever they fit. The scene encoder must fit whole (else ValueError); each module of the box estimator and of
    the scorer (e.g. boxes.head, boxes.refiner, scorer.matcher) takes its weights when they fit (`load_fitting`),
    else starts new, and so does every module named in `fresh` (e.g. "boxes.head" for a head of another shape).
    Returns (the network, the modules that start new)."""
    if isinstance(state, nn.Module):
        state = state.state_dict()
    unknown = [k for k in state if not k.startswith(("scene.", "boxes.", "scorer."))]
    if unknown:
        raise ValueError(f"weights of no stage: {unknown[:3]}")
    net, new = OddOneOutNet(cfg), []
    for prefix, stage in (("boxes.", net.boxes), ("scorer.", net.scorer)):
        for name, child in stage.named_children():
            part = f"{prefix}{name}."
            if part[:-1] in fresh or not load_fitting(child, {k[len(part):]: v for k, v in state.items()
                                                              if k.startswith(part)}):
                new.append(part[:-1])
    scene = {k[len("scene."):]: v.float() if v.is_floating_point() else v for k, v in state.items()
             if k.startswith("scene.")}
    try:
        missing, unexpected = net.scene.load_state_dict(scene, strict=False)
    except RuntimeError as e:  # shapes that differ
        raise ValueError(f"the scene encoder's weights do not fit the {cfg.name} config "
                         f"({str(e).splitlines()[-1].strip()})") from None
    if missing or unexpected:
        raise ValueError(f"the scene encoder's weights do not fit the {cfg.name} config "
                         f"({(list(missing) + list(unexpected))[:3]} ...)")
    return net, new


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
