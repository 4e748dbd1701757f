"""`odd-one-out show SCENE_DIR --out sheet.png`: contact sheet of a scene's views with its 3D boxes."""
from __future__ import annotations

import argparse

from . import CommandError, positive_int


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scene", help="scene folder (official ToysAD-8K layout, ours or the authors')")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--views", default="", help="comma-separated view indices (default: all)")
    p.add_argument("--cols", type=positive_int, default=5, help="views per row (default 5)")


def run(args) -> int:
    import cv2

    from ..data.scene_meta import SceneFormatError, read_scene_meta
    from ..fileio import read_rgb
    from ..viz import GREEN, RED, contact_sheet, draw_box

    try:
        scene = read_scene_meta(args.scene)
        views = [int(v) for v in args.views.split(",") if v.strip()] or list(range(len(scene.cameras)))
    except (SceneFormatError, ValueError) as e:
        raise CommandError(str(e)) from None
    images, captions = [], []
    for v in views:
        if not 0 <= v < len(scene.cameras):
            raise CommandError(f"view {v} not in this scene (0..{len(scene.cameras) - 1})")
        try:
            img = read_rgb(scene.rgb_path(v))
        except ValueError as e:
            raise CommandError(str(e)) from None
        for o in scene.objects:
            draw_box(img, scene.cameras[v], o.box, RED if o.anomalous else GREEN,
                     o.anomaly_type if o.anomalous else "")
        images.append(img)
        captions.append(f"view {v}")
    sheet = contact_sheet(images, args.cols, captions)
    if not cv2.imwrite(args.out, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
        raise CommandError(f"cannot write {args.out}", code=1)
    n_anom = sum(o.anomalous for o in scene.objects)
    print(f"{args.out}: {len(views)} views, {len(scene.objects)} objects, {n_anom} anomalous "
          f"({', '.join(o.anomaly_type for o in scene.objects if o.anomalous) or 'none'})")
    return 0
