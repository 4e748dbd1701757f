"""The generator's look against a photoreal renderer (issue 36): held-out scenes rendered twice, by the generator
and by Blender's Cycles (benchmarks/cycles_render.py), with the same geometry, cameras, masks and labels; the model's
box recall and unmatched boxes on both. Target: recall within 3 points.

    .venv/bin/python benchmarks/photoreal_gap.py --bpy-python BPY_PYTHON --out DIR [--kind parts|toys]
        [--scenes 8] [--seed 9101] [--look classic|real] [--samples 32] [--checkpoint CKPT] [--views 5] [--json OUT]

BPY_PYTHON: a Python with the `bpy` 4.2 wheel (its own venv: `python3.11 -m venv bpyvenv && bpyvenv/bin/pip
install "bpy==4.2.*"`). Resumable: scenes and Cycles views already in DIR are kept. Only the views `evaluate`
reads (--views, evenly spaced) are path-traced, 2-6 s each at 256 px on 2 cores. Exit 0 when the gap is within
3 points, 1 if not.
"""
import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bpy-python", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--kind", default="parts", choices=["parts", "toys"])
    ap.add_argument("--scenes", type=int, default=8)
    ap.add_argument("--seed", type=int, default=9101, help="held-out: a seed no training or tuning run uses")
    ap.add_argument("--look", default="classic", choices=["classic", "real"], help="the generator's look")
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--checkpoint", default="")
    ap.add_argument("--views", type=int, default=5)
    ap.add_argument("--json")
    args = ap.parse_args()
    from odd_one_out_ros.data.scene_meta import read_scene_meta
    from odd_one_out_ros.resources import DEFAULT_CHECKPOINT
    from odd_one_out_ros.synth.generate import generate, rebuild_scene_dir
    from odd_one_out_ros.synth.photoreal import export_for_cycles
    from odd_one_out_ros.synth.scene import GeneratorConfig

    out = Path(args.out)
    split = "test" if args.kind == "parts" else "unseen-test"
    cfg = GeneratorConfig(kind=args.kind, look=args.look)
    generate(cfg, args.scenes, out / "generator", args.seed, split, progress=False)
    cycles = out / "cycles"
    for scene_dir in sorted((out / "generator" / "scenes").iterdir()):
        target = cycles / "scenes" / scene_dir.name
        meta = read_scene_meta(scene_dir)
        views = meta.even_views(args.views)
        done = target / ".cycles_done"
        if done.is_file():
            continue
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(scene_dir, target)
        scene = rebuild_scene_dir(scene_dir)
        with tempfile.TemporaryDirectory() as tmp:
            npz = export_for_cycles(scene, Path(tmp) / "scene.npz")
            r = subprocess.run([args.bpy_python, str(REPO / "benchmarks" / "cycles_render.py"), str(npz), tmp,
                                "--samples", str(args.samples), "--views", ",".join(map(str, views))],
                               capture_output=True, text=True)
            if r.returncode != 0:
                print(r.stdout[-2000:], r.stderr[-2000:], file=sys.stderr)
                return 2
            for v in views:
                shutil.copyfile(Path(tmp) / f"{v:04d}.png", target / "RGB" / f"{v:04d}.png")
        done.write_text("ok\n")
        print(f"{scene_dir.name}: {len(views)} views path-traced", flush=True)
    shutil.copyfile(out / "generator" / "splits.json", cycles / "splits.json")
    ckpt = args.checkpoint or str(DEFAULT_CHECKPOINT)
    table = {}
    for name in ("generator", "cycles"):
        js = out / f"evaluate_{name}.json"
        r = subprocess.run([sys.executable, "-m", "odd_one_out_ros.cli", "evaluate", "--checkpoint", ckpt, "--data",
                            str(out / name), "--views", str(args.views), "--json", str(js)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            print(r.stdout[-2000:], r.stderr[-2000:], file=sys.stderr)
            return 2
        m = json.loads(js.read_text())["metrics"]["all"]
        table[name] = {"recall_iou50": m["boxes"]["recall_iou50"], "unmatched_per_scene":
                       m["boxes"]["unmatched_per_scene"], "reference_auc": m["reference"]["auc"]}
        print(f"{name:9s} box recall@0.5 {table[name]['recall_iou50']:.1f} %, unmatched per scene "
              f"{table[name]['unmatched_per_scene']:.2f}, reference AUC {table[name]['reference_auc']}")
    gap = table["generator"]["recall_iou50"] - table["cycles"]["recall_iou50"]
    ok = abs(gap) <= 3.0
    print(f"{'PASS' if ok else 'FAIL'}  {args.kind}, {args.scenes} scenes of seed {args.seed}, look {args.look}: "
          f"recall gap {gap:+.1f} points (target within 3)")
    if args.json:
        Path(args.json).write_text(json.dumps({"kind": args.kind, "scenes": args.scenes, "seed": args.seed,
                                               "look": args.look, "checkpoint": ckpt, **table, "gap": gap}, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
