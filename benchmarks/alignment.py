"""How well the comparison aligns copies, and what alignment is worth (issue 37), on ground-truth boxes.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/alignment.py --data DIR [--data DIR ...] [--views 5]
        [--arm NAME=ROTATIONS:CHOICE[:TOP] ...] [--bootstrap 1000] [--json OUT]

DIR: scenes written by `odd-one-out generate` (format synth/2: each copy's full pose; the meshes are rebuilt from
the generator's seed). For every scene (its ground-truth boxes, `--views` views spread evenly) the training-free
comparison (model/baseline.py: the offline MobileNetV2 at 2x, 6^3 cells, as the shipped model's cells) runs once per
arm. An arm is a set of turns of the partner's grid (ROTATIONS: 4 = quarter turns about z, the comparison's
default; 24 = every turn mapping box axes onto axes) and how the turn of each pair is chosen (CHOICE: "images" = the
comparison's own choice, the best mean cosine; "poses" = the turn nearest to the one the copies' recorded poses give,
an oracle that shows what alignment alone is worth; "exact" = no grid turn: each partner's features lifted at the
very points of the shape that the object's cells hold, from the recorded poses, whatever the copies' resting faces;
"metric" = each partner's features lifted at the cell centres turned by each of ROTATIONS about the box centres in
metres (not stretched to the partner's box), the turn chosen by the images; "search" = each pair registered from the
images alone over turns x shifts of up to a quarter of the box (search_scores); "_seen" after exact or metric: each
point's features only from the views that see it (the rendered depth: an oracle)).

Alignment, per pair of normal copies: a turn is right when it carries one copy's surface onto the other's (95 % of
400 surface points within 4 % of its size of the other copy's 5000: a symmetric part has several right turns; a
wrong turn of the parts measured leaves 9 % or more, a symmetric one 1-2 %); reported: the share of pairs that the
turn set can align at all, and the share the chosen turn aligns.
Quality: reference AUC over all objects and, per anomaly type, that type against all normal objects, with a 95 %
bootstrap interval over scenes.
"""
from __future__ import annotations

import argparse
import itertools
import sys

import numpy as np
import torch
from scipy.spatial import cKDTree
from sklearn.metrics import roc_auc_score

DEFAULT_ARMS = ("turns4=4:images", "turns24=24:images", "turns4_poses=4:poses", "turns24_poses=24:poses",
                "exact=4:exact")
RIGHT = 0.04
"""a turn carries one copy onto another when 95 % of its points are this close (fraction of the copy's size)"""


def surface_points(scene, n: int = 5000) -> list[np.ndarray]:
    """(n, 3) world points on each object's surface, same seed per object."""
    import trimesh

    out = []
    for o in scene.objects:
        pts = trimesh.sample.sample_surface(o.shape.mesh(), n, seed=0)[0]
        out.append(pts @ o.local_to_world()[:3, :3].T + o.location)
    return out


def turn_residuals(a, b, pa: np.ndarray, pb_tree: cKDTree, turns: np.ndarray) -> np.ndarray:
    """(R,) the 95th percentile distance of 400 of a's surface points carried by each turn of a's normalised box frame
    into b's to b's surface points, over b's size."""
    ua = (pa[:400] - a.box.center) @ a.box.rotation / a.box.size  # normalised box coordinates of a
    res = []
    for M in turns:
        p = ((ua @ M.T) * b.box.size) @ b.box.rotation.T + b.box.center
        res.append(np.percentile(pb_tree.query(p)[0], 95) / b.box.size.max())
    return np.array(res)


def pose_turn(a, b, turns: np.ndarray) -> int:
    """Index of the turn nearest (angle) to the rotation from a's box frame to b's that the recorded poses give."""
    from odd_one_out_ros.data.scene_meta import box_to_box, nearest_turn

    return nearest_turn(box_to_box(a, b), turns)[0]


def seen_mask(depths: np.ndarray, K: torch.Tensor, T: torch.Tensor, pts: np.ndarray, tol: float) -> torch.Tensor:
    """(1, V, M) bool: view v sees world point m, i.e. it lies no more than tol (m) behind the rendered surface
    (depths (V, H, W) metres at the images' size, 0 = nothing; an oracle of visibility)."""
    from odd_one_out_ros.model.volume import project_points

    uv, z = project_points(torch.from_numpy(pts).float()[None], K.float()[None], T.float()[None])
    V, H, W = depths.shape
    u = uv[0, ..., 0].round().long().clamp(0, W - 1)
    v = uv[0, ..., 1].round().long().clamp(0, H - 1)
    d = torch.from_numpy(depths).float()[torch.arange(V)[:, None], v, u]  # (V, M)
    return ((d <= 0) | (z[0] <= d + tol))[None]


def registered_scores(feats, K, T, image_hw, boxes, cfg, maps: np.ndarray, depths: np.ndarray | None = None,
                      tol: float = 0.015) -> np.ndarray:
    """The comparison with each partner's features lifted at the points that candidate maps carry the object's cell
    centres to: maps (N, N, R, 4, 4) world -> world per pair (i, j) and candidate r; per pair the candidate of the
    highest mean cosine over i's seen cells; then (N,) raw scores: nearest partner, mean over cells (the comparison's
    own rule). With depths (seen_mask): each point's features only from the views that see it."""
    import torch.nn.functional as F

    from odd_one_out_ros.model.baseline import cell_points, lift_points, object_scores

    N, P, R = len(boxes), cfg.grid ** 3, maps.shape[2]
    own = np.stack([cell_points(b, cfg.grid).reshape(-1, 3) for b in boxes])  # (N, P, 3)
    pairs = np.einsum("ijrab,ipb->ijrpa", maps[..., :3, :3], own) + maps[..., None, :3, 3]  # (N, N, R, P, 3)
    own, pairs = own.reshape(-1, 3), pairs.reshape(-1, 3)
    m_own = m_pair = None
    if depths is not None:  # only the views that see each point
        m_own, m_pair = seen_mask(depths, K, T, own, tol), seen_mask(depths, K, T, pairs, tol)
    (f_own,), c_own = lift_points(feats, K, T, image_hw, own, m_own)
    (f_pair,), c_pair = lift_points(feats, K, T, image_hw, pairs, m_pair)
    a = F.normalize(f_own.reshape(N, 1, 1, P, -1), dim=-1)
    b = F.normalize(f_pair.reshape(N, N, R, P, -1), dim=-1)
    seen = c_own.reshape(N, P) > 0
    ok = seen[:, None, None] & (c_pair.reshape(N, N, R, P) > 0)
    cos = (a * b).sum(-1).masked_fill(~ok, -1.0)  # (N, N, R, P)
    best = (cos * seen[:, None, None]).sum(-1).argmax(-1)  # (N, N): the candidate per pair
    cos = cos.gather(2, best[:, :, None, None].expand(N, N, 1, P))[:, :, 0]  # (N, N, P)
    dist = (1 - cos).clamp(min=0).masked_fill(torch.eye(N, dtype=torch.bool)[..., None], float("inf"))
    return object_scores(dist.min(1).values, seen, cfg).double().numpy()


def search_scores(feats, K, T, image_hw, boxes, cfg, steps: int = 5, reach: float = 0.25, res: int = 12,
                  grow: float = 1.6) -> np.ndarray:
    """The comparison with each pair registered from the images alone: every turn of turn_matrices(cfg.rotations)
    about the box centres times shifts of up to `reach` x the box size per axis (`steps` per axis; an anomalous
    copy's box is off its unchanged rest), the candidate of the highest mean cosine over i's cells; the partner's
    features from a res^3 volume lifted once per object over its box grown by `grow` (trilinear). -> (N,) raw
    scores: nearest partner, mean over cells."""
    import torch.nn.functional as F

    from odd_one_out_ros.model.baseline import cell_points, lift_points, object_scores, turn_matrices

    N, P = len(boxes), cfg.grid ** 3
    own = np.stack([cell_points(b, cfg.grid).reshape(-1, 3) for b in boxes])  # (N, P, 3)
    (f_own,), c_own = lift_points(feats, K, T, image_hw, own.reshape(-1, 3))
    a = F.normalize(f_own.reshape(N, P, -1), dim=-1)
    seen = c_own.reshape(N, P) > 0
    t = (np.arange(res) + 0.5) / res - 0.5
    unit = np.stack(np.meshgrid(t, t, t, indexing="ij"), -1).reshape(-1, 3)  # (res^3, 3) in [-0.5, 0.5)
    vol_pts = np.stack([(unit * b.size * grow) @ b.rotation.T + b.center for b in boxes])  # (N, res^3, 3)
    (f_vol,), c_vol = lift_points(feats, K, T, image_hw, vol_pts.reshape(-1, 3))
    C = f_vol.shape[1]
    # grid_sample volume (N, C + 1, D=z, H=y, W=x): the lifted features and whether any view saw the point
    vol = torch.cat([f_vol, (c_vol > 0).float()[:, None]], 1).reshape(N, res, res, res, C + 1).permute(0, 4, 3, 2, 1)
    d = np.linspace(-reach, reach, steps)
    shifts = np.stack(np.meshgrid(d, d, d, indexing="ij"), -1).reshape(-1, 3)  # (S, 3) x box size
    turns = turn_matrices(cfg.rotations).astype(float)
    dist = torch.full((N, N, P), float("inf"))
    for i in range(N):
        u = (own[i] - boxes[i].center) @ boxes[i].rotation  # (P, 3) metres in i's box frame
        turned = np.einsum("rab,pb->rpa", turns, u)[:, None]  # (R, 1, P, 3)
        for j in range(N):
            if j == i:
                continue
            q = turned + (shifts * boxes[j].size)[None, :, None]  # (R, S, P, 3)
            g = torch.from_numpy(q / (boxes[j].size * grow / 2)).float().reshape(1, 1, 1, -1, 3)  # j's volume, [-1, 1]
            smp = F.grid_sample(vol[j:j + 1], g, align_corners=False, padding_mode="zeros")[0, :, 0, 0]  # (C+1, M)
            fj = F.normalize(smp[:C].T, dim=-1).reshape(len(turns), len(shifts), P, C)
            ok = (smp[C] > 0.5).reshape(len(turns), len(shifts), P) & seen[i]
            cos = ((fj * a[i]).sum(-1)).masked_fill(~ok, -1.0)  # (R, S, P)
            k = int(cos.mean(-1).flatten().argmax())
            dist[i, j] = (1 - cos.flatten(0, 1)[k]).clamp(min=0)
    return object_scores(dist.min(1).values, seen, cfg).double().numpy()


def candidate_maps(objs, choice: str, rotations: int) -> np.ndarray:
    """(N, N, R, 4, 4) world -> world maps from each copy to each other: "exact" the recorded poses (M_j inv(M_i),
    R = 1); "metric" the box frames and each turn of turn_matrices(rotations) in metres (no scaling by box size)."""
    from odd_one_out_ros.geometry.transforms import Rigid
    from odd_one_out_ros.model.baseline import turn_matrices

    N = len(objs)
    if choice.startswith("exact"):
        M = [o.shape_to_world() for o in objs]
        return np.stack([[[M[j] @ np.linalg.inv(M[i])] for j in range(N)] for i in range(N)])
    frames = [Rigid(o.box.rotation, o.box.center).as_matrix() for o in objs]  # box frame -> world
    turns = []
    for Mt in turn_matrices(rotations):
        X = np.eye(4)
        X[:3, :3] = Mt
        turns.append(X)
    return np.stack([[[frames[j] @ X @ np.linalg.inv(frames[i]) for X in turns] for j in range(N)]
                     for i in range(N)])


def bootstrap_auc(labels: list[np.ndarray], scores: list[np.ndarray], keep: list[np.ndarray], reps: int,
                  rng: np.random.Generator) -> tuple[float | None, float | None, float | None]:
    """AUC of the pooled objects (keep masks per scene) and its 95 % interval over scenes resampled."""
    def auc(idx):
        y = np.concatenate([labels[i][keep[i]] for i in idx])
        s = np.concatenate([scores[i][keep[i]] for i in idx])
        return roc_auc_score(y, s) * 100 if 0 < y.sum() < len(y) else None

    full = auc(range(len(labels)))
    if full is None:
        return None, None, None
    boot = [a for a in (auc(rng.integers(len(labels), size=len(labels))) for _ in range(reps)) if a is not None]
    return full, float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))


def auc_by_type(labels: list[np.ndarray], types: list[np.ndarray], scores: list[np.ndarray], reps: int,
                rng: np.random.Generator) -> dict:
    """{"auc": all objects, TYPE: {"count", "auc": that type against every normal object}}, each AUC (value, 2.5 %,
    97.5 %) over scenes resampled (bootstrap_auc); labels, types, scores: per scene (N,)."""
    out = {"auc": bootstrap_auc(labels, scores, [np.ones(len(y), bool) for y in labels], reps, rng)}
    for t in sorted({t for ts in types for t in ts if t}):
        keep = [(y == 0) | (ts == t) for y, ts in zip(labels, types)]
        out[t] = {"count": int(sum(((ts == t) & (y == 1)).sum() for y, ts in zip(labels, types))),
                  "auc": bootstrap_auc(labels, scores, keep, reps, rng)}
    return out


def format_aucs(row: dict) -> str:
    """One line of auc_by_type's figures."""
    a = row["auc"]
    line = f"AUC {a[0]:.1f} [{a[1]:.1f}, {a[2]:.1f}]"
    for t, v in row.items():
        if t != "auc" and isinstance(v, dict) and v["auc"][0] is not None:
            line += f"; {t} ({v['count']}) {v['auc'][0]:.1f} [{v['auc'][1]:.1f}, {v['auc'][2]:.1f}]"
    return line


def main(argv=None) -> int:
    from odd_one_out_ros.commands import write_json
    from odd_one_out_ros.data.dataset import scene_dirs
    from odd_one_out_ros.data.scene_meta import read_scene_meta
    from odd_one_out_ros.model.baseline import (
        BaselineConfig,
        _descriptors,
        calibrate,
        cell_features,
        choose_turns,
        default_extractor,
        extract,
        score_cells,
        turn_matrices,
        turned_similarity,
    )
    from odd_one_out_ros.model.config import preset
    from odd_one_out_ros.model.inference import views_to_tensors
    from odd_one_out_ros.synth.generate import rebuild_scene_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", action="append", required=True)
    ap.add_argument("--views", type=int, default=5)
    ap.add_argument("--arm", action="append", help="NAME=ROTATIONS:CHOICE (default: %s)" % ", ".join(DEFAULT_ARMS))
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    arms = {}
    for spec in args.arm or DEFAULT_ARMS:
        name, rest = spec.split("=", 1)
        rot, choice, *top = rest.split(":")
        if choice not in ("images", "poses", "exact", "exact_seen", "metric", "metric_seen", "search"):
            raise SystemExit(f"choice must be images, poses, exact[_seen], metric[_seen] or search: {spec}")
        arms[name] = (BaselineConfig(grid=6, scales=(2.0,), rotations=int(rot),
                                     top_fraction=float(top[0]) if top else 1.0), choice)
    extractor = default_extractor()
    size = preset("cpu").image_size
    report = {}
    for root in args.data:
        dirs = scene_dirs(root)[:args.limit or None]
        per = {n: {"scores": [], "aligned": [0, 0, 0]} for n in arms}  # aligned: pairs, alignable, chosen right
        labels, types = [], []
        for d in dirs:
            meta = read_scene_meta(d)
            objs = meta.objects
            if len(objs) < 3 or any(o.pose is None for o in objs):
                continue
            scene = rebuild_scene_dir(d)
            if [o.name for o in scene.objects] != [o.name for o in objs]:
                raise SystemExit(f"{d}: the rebuilt scene's objects are not the metadata's")
            pts = surface_points(scene)
            trees = [cKDTree(p) for p in pts]
            images, K, T = views_to_tensors(meta.posed_views(meta.even_views(args.views)), size, "cpu")
            feats = extract(extractor, images[0], (2.0,))
            gt = [o.box for o in objs]
            labels.append(np.array([int(o.anomalous) for o in objs]))
            types.append(np.array([o.anomaly_type for o in objs]))
            cells, valid = cell_features(feats, K[0], T[0], tuple(images.shape[-2:]), gt, BaselineConfig(grid=6))
            desc = _descriptors(cells, valid, BaselineConfig(grid=6))  # (the arms' configs differ in turns and top)
            S = torch.einsum("ipc,jqc->ipjq", desc, desc).masked_fill(~valid[None, None], -2.0)  # (N, P, N, P)
            for name, (cfg, choice) in arms.items():
                if choice == "search":
                    raw = search_scores(feats, K[0], T[0], tuple(images.shape[-2:]), gt, cfg)
                    per[name]["scores"].append(calibrate(raw, cfg))
                    continue
                if choice.startswith(("exact", "metric")):
                    depths = None
                    if choice.endswith("_seen"):
                        import cv2  # depth_png: uint16 millimetres (synth/writer.py)

                        depths = np.stack([cv2.imread(str(meta.root / "depth_png" / f"{v:04d}.png"),
                                                      cv2.IMREAD_UNCHANGED).astype(np.float32) * 1e-3
                                           for v in meta.even_views(args.views)])
                    raw = registered_scores(feats, K[0], T[0], tuple(images.shape[-2:]), gt, cfg,
                                            candidate_maps(objs, choice, cfg.rotations), depths)
                    per[name]["scores"].append(calibrate(raw, cfg))
                    continue
                turns = turn_matrices(cfg.rotations)
                chosen = choose_turns(turned_similarity(S, cfg), valid, cfg)
                forced = None
                if choice == "poses":
                    forced = torch.tensor([[pose_turn(a, b, turns) if a is not b else 0 for b in objs] for a in objs])
                st = per[name]["aligned"]
                for i, j in itertools.combinations(range(len(objs)), 2):
                    if objs[i].anomalous or objs[j].anomalous:
                        continue
                    right = turn_residuals(objs[i], objs[j], pts[i], trees[j], turns) < RIGHT
                    pick = int((forced if forced is not None else chosen)[i, j])
                    st[0] += 1
                    st[1] += bool(right.any())
                    st[2] += bool(right[pick])
                raw = score_cells(desc, valid, cfg, forced).double().numpy()
                per[name]["scores"].append(calibrate(raw, cfg))
        rng = np.random.default_rng(0)
        out = {"scenes": len(labels), "views": args.views}
        for name in arms:
            pairs, alignable, right = per[name]["aligned"]
            out[name] = {"normal_pairs": pairs, "alignable": 100 * alignable / max(pairs, 1),
                         "aligned": 100 * right / max(pairs, 1),
                         **auc_by_type(labels, types, per[name]["scores"], args.bootstrap, rng)}
        report[root] = out
        print(f"{root}: {out['scenes']} scenes, {args.views} views, ground-truth boxes")
        for name in arms:
            r = out[name]
            print(f"  {name:<16} normal pairs {r['normal_pairs']}: turn set can align {r['alignable']:.0f} %, "
                  f"chosen right {r['aligned']:.0f} %; " + format_aucs(r), flush=True)
    if args.json:
        write_json(args.json, report, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
