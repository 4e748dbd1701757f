"""`odd-one-out`: the package's one console command, with subcommands.

Each subcommand lives in its own module and is imported only when it runs, so `--help` is quick.
Exit codes: 0 success, 1 runtime failure, 2 bad input (file, argument). A command that stops raises
`commands.CommandError`; `main` prints its one line and returns its exit code.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from .commands import CommandError

# name -> (module, one-line help). Each module has add_arguments(parser) and run(args) -> int.
SUBCOMMANDS = {
    "demo": ("odd_one_out_ros.commands.demo", "run the end-to-end demo in a real ROS 2 graph"),
    "bench": ("odd_one_out_ros.commands.bench", "latency and memory of one inspection (random or checkpoint weights)"),
    "camera-info": ("odd_one_out_ros.commands.camera_info", "check and summarise a camera_info YAML"),
    "info": ("odd_one_out_ros.commands.info", "print versions, devices and paths"),
    "train": ("odd_one_out_ros.commands.train", "two-stage training of the model (torchrun for several processes)"),
    "evaluate": ("odd_one_out_ros.commands.evaluate", "AUC and accuracy of a checkpoint on a benchmark split"),
    "detect": ("odd_one_out_ros.commands.detect", "run a checkpoint on one scene folder and draw the result"),
    "replay": ("odd_one_out_ros.commands.replay", "re-run a recorded inspection (detector view bag) and compare"),
    "inspect": ("odd_one_out_ros.commands.inspect", "trigger one inspection of a running detector, print the verdict"),
    "tune-threshold": ("odd_one_out_ros.commands.tune_threshold",
                       "the anomaly threshold from inspections of normal trays (a false-reject rate you choose)"),
    "tune-boxes": ("odd_one_out_ros.commands.tune_boxes", "pick a checkpoint's box threshold by box recall on a split"),
    "train-boxes": ("odd_one_out_ros.commands.train_boxes",
                    "train the learned box head of a checkpoint on cached volumes"),
    "train-comparator": ("odd_one_out_ros.commands.train_comparator",
                         "train the learned comparator of a checkpoint on cached cells (stage 2 on a CPU)"),
    "generate": ("odd_one_out_ros.commands.generate", "generate a benchmark of scenes (toys, parts or your meshes)"),
    "show": ("odd_one_out_ros.commands.show", "contact sheet of a scene's views with its 3D boxes and labels"),
    "calibrate": ("odd_one_out_ros.commands.calibrate", "camera intrinsics, or the poses of a fixed rig, from images"),
    "tag-pose": ("odd_one_out_ros.commands.tag_pose", "AprilTag poses in one image (and the camera pose on a board)"),
    "board": ("odd_one_out_ros.commands.board", "render an AprilTag board to a PNG that prints at true scale"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="odd-one-out",
        description="Multi-view anomaly detection by comparing objects with their neighbours.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except CommandError as e:
        print(f"odd-one-out {args.command}: {e}", file=sys.stderr)
        return e.code


if __name__ == "__main__":
    sys.exit(main())
