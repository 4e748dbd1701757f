"""CLI subcommands of `odd-one-out` (see odd_one_out_ros.cli). Heavy imports stay inside run()."""
import argparse
import math


class CommandError(Exception):
    """A command stops: `odd_one_out_ros.cli.main` prints "odd-one-out COMMAND: message" on stderr, once, no
    traceback, and exits with `code`: 2 bad input (a file, an argument; the default), 1 a failure at run time."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def _finite_float(text: str, allow_zero: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise argparse.ArgumentTypeError(f"must be a {'non-negative' if allow_zero else 'positive'} finite number, "
                                         f"got {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse type of the flags that are sizes or times: a positive finite number (nan, inf, 0 and negatives are
    refused by argparse, naming the flag, exit 2)."""
    return _finite_float(text, allow_zero=False)


def positive_int(text: str) -> int:
    """argparse type of counts (scenes, views, columns, steps): an integer >= 1 (refused by argparse, naming the flag,
    exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    """argparse type of tolerances: a finite number >= 0."""
    return _finite_float(text, allow_zero=True)


def share(text: str) -> float:
    """argparse type of shares (e.g. train-boxes --squash): a number in [0, 1]."""
    value = _finite_float(text, allow_zero=True)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be a share in [0, 1], got {text!r}")
    return value


def write_json(path, data, indent: int = 2) -> None:
    """A command's --json output, written whole (fileio.write_text_atomic); a path that cannot be written is a
    CommandError (exit 1) naming it, not a traceback."""
    import json

    from ..fileio import write_text_atomic

    try:
        write_text_atomic(path, json.dumps(data, indent=indent))
    except OSError as e:
        raise CommandError(f"cannot write {path}: {e.strerror or e}", code=1) from None
