"""What comparing copies from the same relative viewpoints would be worth (issue 37), on upright toys.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/viewpoint_oracle.py --data DIR [--limit N] [--views 5] [--json OUT]

DIR: toys scenes written by `odd-one-out generate` (format synth/2 after 2026-12-08: every copy's pose, anomalous
ones included; the meshes are rebuilt from the generator's seed). Each copy stands at its own yaw under the same
cameras, so the comparison lifts every copy's cells from other relative viewpoints (and another light direction).
This oracle re-renders the scene once per copy, with the `--views` cameras (spread evenly) and the sun moved rigidly
with that copy's pose relative to a reference normal copy, so that every copy is seen exactly as the reference is
(the neighbours, and so the occlusions, still differ); each copy's cells are the reference's cell centres carried
onto it by the recorded poses, lifted from its own renders. Arms, all with the offline MobileNetV2 at 2x (the shipped
comparison's features), nearest partner:
- turns4: today's comparison on the scene's own views (box-normalised 6^3 grid, quarter turns chosen by the images);
- exact_shared: the exact correspondences, lifted from the scene's own views (benchmarks/alignment.py "exact");
- matched: the same, per view instead of the mean over views: each view of a copy against the view of the partner
  whose direction to it, in each copy's own frame, is nearest (not an oracle of images: only the poses);
- relative / relative_top10: the exact correspondences lifted from the per-copy renders; object score the mean over
  all cells / over the 10 % most distant.
Reported: AUC over all objects and per anomaly type (that type against every normal object), 95 % bootstrap interval
over scenes. An oracle (it renders from the generator's own meshes and poses): it measures where the evidence is
lost, not a method.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

import numpy as np
import torch
import torch.nn.functional as F
from alignment import auc_by_type, format_aucs  # benchmarks/alignment.py

ARMS = ("turns4", "exact_shared", "matched", "relative", "relative_top10")


def main(argv=None) -> int:
    from odd_one_out_ros.commands import write_json
    from odd_one_out_ros.data.dataset import scene_dirs
    from odd_one_out_ros.data.scene_meta import read_scene_meta
    from odd_one_out_ros.geometry.transforms import Rigid
    from odd_one_out_ros.model.baseline import (
        BaselineConfig,
        _descriptors,
        calibrate,
        cell_features,
        cell_points,
        default_extractor,
        extract,
        lift_points,
        object_scores,
        score_cells,
    )
    from odd_one_out_ros.synth.generate import rebuild_scene_dir
    from odd_one_out_ros.synth.scene import scene_renderer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--views", type=int, default=5)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    extractor, cfg = default_extractor(), BaselineConfig(grid=6)

    def features(rgbs: list[np.ndarray]) -> list[torch.Tensor]:
        return extract(extractor, torch.from_numpy(np.stack(rgbs)).permute(0, 3, 1, 2).float() / 255, (2.0,))

    scores = {a: [] for a in ARMS}
    labels, types = [], []
    for d in scene_dirs(args.data)[:args.limit or None]:
        meta = read_scene_meta(d)
        objs, N = meta.objects, len(meta.objects)
        if N < 3 or any(o.pose is None for o in objs):
            continue
        scene = rebuild_scene_dir(d)
        if scene.info.get("kind") != "toys":
            raise SystemExit(f"{d}: the oracle moves cameras with each copy and needs upright copies (toys)")
        renderer, light = scene_renderer(scene), scene.lighting
        cams = [scene.cameras[v] for v in meta.even_views(args.views)]
        hw = (cams[0].height, cams[0].width)
        K = torch.from_numpy(np.stack([c.K for c in cams])).float()
        T = torch.from_numpy(np.stack([c.T_cw.as_matrix() for c in cams])).float()
        feats = features([renderer.render(c, 2)[0] for c in cams])
        cells, valid = cell_features(feats, K, T, hw, [o.box for o in objs], cfg)
        scores["turns4"].append(calibrate(score_cells(_descriptors(cells, valid, cfg), valid, cfg).double().numpy(),
                                          cfg))
        ref = next(k for k, o in enumerate(objs) if not o.anomalous)
        ref_cells, ref_c = cell_points(objs[ref].box, cfg.grid).reshape(-1, 3), objs[ref].box.center
        maps = [o.shape_to_world() @ np.linalg.inv(objs[ref].shape_to_world()) for o in objs]  # ref -> copy k
        pts = [ref_cells @ G[:3, :3].T + G[:3, 3] for G in maps]  # the reference's cells carried onto each copy
        (f,), c = lift_points(feats, K, T, hw, np.concatenate(pts))
        shared = (F.normalize(f.reshape(N, len(ref_cells), -1), dim=-1), c.reshape(N, -1) > 0)
        # matched: per view, not averaged; view v of copy i against the view of copy j whose direction to the copy,
        # in the copy's own frame, is nearest v's to i
        per_view = [lift_points([f[v:v + 1]], K[v:v + 1], T[v:v + 1], hw, np.concatenate(pts)) for f in feats
                    for v in range(len(cams))]
        fv = torch.stack([F.normalize(x[0][0], dim=-1).reshape(N, len(ref_cells), -1) for x in per_view])  # (V,N,P,C)
        sv = torch.stack([x[1].reshape(N, -1) > 0 for x in per_view])  # (V, N, P)
        eyes = np.stack([cam.T_cw.inverse().t for cam in cams])  # (V, 3) camera centres
        dirs = []
        for k, G in enumerate(maps):
            A = G[:3, :3] / np.cbrt(np.linalg.det(G[:3, :3]))
            u = (eyes - objs[k].box.center) @ A  # (V, 3) in the copy's own frame
            dirs.append(u / np.linalg.norm(u, axis=1, keepdims=True))
        dist = torch.full((N, N, len(ref_cells)), float("inf"))
        for i in range(N):
            for j in range(N):
                if i == j:
                    continue
                u_best = np.argmax(dirs[i] @ dirs[j].T, axis=1)  # (V,) j's view for each of i's
                fj, sj = fv[u_best, j], sv[u_best, j]  # (V, P, C), (V, P)
                ok = sv[:, i] & sj
                dv = (1 - (fv[:, i] * fj).sum(-1)).clamp(min=0) * ok
                dist[i, j] = torch.where(ok.any(0), dv.sum(0) / ok.sum(0).clamp(min=1), torch.ones(()))
        scores["matched"].append(calibrate(object_scores(dist.min(1).values, sv.any(0), cfg).double().numpy(), cfg))
        rel_f, rel_v = [], []
        for k, G in enumerate(maps):
            A = G[:3, :3] / np.cbrt(np.linalg.det(G[:3, :3]))  # the rotation; the rigid move takes ref's centre along
            rigid = Rigid(A, G[:3, :3] @ ref_c + G[:3, 3] - A @ ref_c).as_matrix()
            moved = [dataclasses.replace(cam, T_cw=Rigid.from_matrix(cam.T_cw.as_matrix() @ np.linalg.inv(rigid)))
                     for cam in cams]
            renderer.light = dataclasses.replace(light, sun_dir=A @ light.sun_dir)
            Tk = torch.from_numpy(np.stack([cam.T_cw.as_matrix() for cam in moved])).float()
            (fk,), ck = lift_points(features([renderer.render(cam, 2)[0] for cam in moved]), K, Tk, hw, pts[k])
            rel_f.append(F.normalize(fk, dim=-1))
            rel_v.append(ck > 0)
        renderer.light = light
        rel = (torch.stack(rel_f), torch.stack(rel_v))
        for name, (e, v), top in (("exact_shared", shared, 1.0), ("relative", rel, 1.0), ("relative_top10", rel, 0.1)):
            ok = v[:, None] & v[None]
            dist = (1 - torch.einsum("ipc,jpc->ijp", e, e)).clamp(min=0).masked_fill(~ok, 1.0)
            dist = dist.masked_fill(torch.eye(N, dtype=torch.bool)[..., None], float("inf"))  # (N, N, P)
            raw = object_scores(dist.min(1).values, v, dataclasses.replace(cfg, top_fraction=top))
            scores[name].append(calibrate(raw.double().numpy(), cfg))
        labels.append(np.array([int(o.anomalous) for o in objs]))
        types.append(np.array([o.anomaly_type for o in objs]))
        print(f"{d.name}: {N} copies", file=sys.stderr, flush=True)
    rng = np.random.default_rng(0)
    report = {"data": args.data, "scenes": len(labels), "views": args.views}
    print(f"{args.data}: {len(labels)} scenes, {args.views} views, ground-truth boxes")
    for name in ARMS:
        report[name] = auc_by_type(labels, types, scores[name], args.bootstrap, rng)
        print(f"  {name:<15} " + format_aucs(report[name]), flush=True)
    if args.json:
        write_json(args.json, report, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
