"""`odd-one-out generate`: a ToysAD-like or PartsAD-like benchmark (or one of your own meshes)."""
from __future__ import annotations

import argparse

from . import CommandError


def _range(text: str) -> tuple[int, int]:
    try:
        lo, _, hi = text.partition("-")
        lo, hi = int(lo), int(hi or lo)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or N-M, got {text!r}") from None
    if not 1 <= lo <= hi <= 15:
        raise argparse.ArgumentTypeError(f"objects per scene must satisfy 1 <= N <= M <= 15, got {text!r}")
    return lo, hi


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kind", choices=["toys", "parts"], default="toys", help="toy categories or mechanical parts")
    p.add_argument("--scenes", type=int, required=True, help="number of scenes")
    p.add_argument("--out", required=True, help="output folder (rerun to resume: complete scenes are kept)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--split", default="all",
                   help="train, seen-test, unseen-test (toys), test (parts) or all (default: drawn per scene)")
    p.add_argument("--views", type=int, default=20, help="cameras per scene (default 20)")
    p.add_argument("--size", type=int, default=256, help="image size in pixels (default 256)")
    p.add_argument("--objects", type=_range, default=(3, 12), help="objects per scene, N or N-M (default 3-12)")
    p.add_argument("--apriltag-board", action="store_true", help="put an AprilTag board on the floor")
    p.add_argument("--shapes", help="folder of your own meshes (.obj/.stl/.ply/.off) used instead of --kind")
    p.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    p.add_argument("--look", choices=["classic", "real"], default="classic",
                   help="classic (the shipped model's training data) or real: per scene crease-angle normals, gamma, "
                        "soft shadows, bounce light, plastic / painted / metal finish, camera noise, blur, vignetting "
                        "(docs/generator.md)")
    p.add_argument("--anomalies", default="",
                   help="comma-separated anomaly types to draw, e.g. translated_part,rotated_part,missing_part "
                        "(default: every type of the kind; synth/anomalies.py)")


def run(args) -> int:
    from ..synth.generate import generate
    from ..synth.scene import GeneratorConfig

    if args.scenes < 1 or args.views < 1 or args.size < 16 or args.workers < 1:
        raise CommandError("--scenes, --views, --workers must be >= 1 and --size >= 16")
    cfg = GeneratorConfig(kind="custom" if args.shapes else args.kind, views=args.views, size=args.size,
                          objects=args.objects, apriltag_board=args.apriltag_board, shapes_dir=args.shapes or "",
                          look=args.look, anomaly_types=tuple(t for t in args.anomalies.split(",") if t))
    try:
        splits = generate(cfg, args.scenes, args.out, args.seed, args.split, args.workers,
                          progress=True)
    except ValueError as e:
        raise CommandError(str(e)) from None
    print(f"{args.out}: " + ", ".join(f"{k} {len(v)}" for k, v in sorted(splits.items())) + " scenes")
    return 0
