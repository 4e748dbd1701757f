"""`odd-one-out board`: render an AprilTag board description to a PNG that prints at true scale."""
from __future__ import annotations

import argparse
from pathlib import Path

from . import CommandError, positive_float


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--board", required=True, metavar="BOARD_YAML", help="board description (calibration/*.yaml)")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--dpi", type=positive_float, default=300.0, help="print resolution (default 300)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")


def run(args) -> int:
    from PIL import Image

    from ..calibration import BoardFileError, board_image, load_board
    from ..fileio import atomic_path

    out = Path(args.out)
    if out.exists() and not args.force:
        raise CommandError(f"{out} exists; pass --force to overwrite")
    if not 50 <= args.dpi <= 2400:
        raise CommandError(f"--dpi must be between 50 and 2400, got {args.dpi}")
    try:
        board = load_board(args.board)
    except BoardFileError as e:
        raise CommandError(str(e)) from None
    ppm = args.dpi / 0.0254
    sizes = sorted({round(t.size * 1000, 2) for t in board.tags})
    caption = (f"{Path(args.board).name}  {board.family}  tag {'/'.join(f'{s:g}' for s in sizes)} mm  "
               f"ids {min(board.ids)}-{max(board.ids)}  print at 100 %: the bar is 100 mm")
    img = board_image(board, ppm, caption=caption)
    with atomic_path(out, ".tmp.png") as tmp:  # PIL picks the format by the suffix
        Image.fromarray(img).save(tmp, dpi=(args.dpi, args.dpi))  # pHYs chunk: prints at true size
    w_mm, h_mm = (v * 1000 for v in board.sheet_size)
    print(f"wrote {out}: {img.shape[1]}x{img.shape[0]} px at {args.dpi:g} dpi = {w_mm:.0f} x {h_mm:.0f} mm, "
          f"{len(board.tags)} {board.family} tags of {'/'.join(f'{s:g}' for s in sizes)} mm; print at 100 % "
          "(no 'fit to page') and check the tag edge with a ruler")
    return 0
