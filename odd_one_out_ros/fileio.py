"""Reading the package's small text files with errors that name the file; writing files and scene folders
atomically. Pure: no ROS imports."""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import yaml


def read_yaml(path: str | os.PathLike, error: type[Exception], what: str):
    """Parsed YAML of `path`; raises `error` naming the file when it cannot be read or parsed."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise error(f"{path}: cannot read {what} ({e.strerror})") from None
    except UnicodeDecodeError:
        raise error(f"{path}: not a text (YAML) {what}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise error(f"{path}: not valid YAML ({e})") from None


def read_mask(path: str | os.PathLike, shape: tuple[int, int]) -> np.ndarray:
    """An object mask (H, W) bool; a missing file is an empty mask. Official masks are RGBA (object ~206 in the
    colour channels), ours 8-bit 0/255: > 127 is the object."""
    m = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if m is None:
        return np.zeros(shape, bool)
    return (m[..., 0] if m.ndim == 3 else m) > 127


def read_rgb(path: str | os.PathLike, error: type[Exception] = ValueError) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file; raises `error` naming the file when it cannot be read."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise error(f"{path}: cannot read image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Write `path` atomically: yields a staging path beside it (its name + `suffix`; a stale staging folder is
    removed first) to write the file, or fill the folder, into. When the block ends without an error, the staging
    path replaces `path` (os.replace: readers see the old or the new content, never half of it; a folder written
    over a folder replaces it). After an error `path` is untouched and the staging path is left as it is."""
    path = Path(path)
    tmp = path.with_name(path.name + suffix)
    if tmp.is_dir():
        shutil.rmtree(tmp)
    path.parent.mkdir(parents=True, exist_ok=True)
    yield tmp
    if tmp.is_dir() and path.is_dir():
        shutil.rmtree(path)
    os.replace(tmp, path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` atomically (atomic_path); returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
