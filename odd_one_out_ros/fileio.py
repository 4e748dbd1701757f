"""Reading the package's small text files with errors that name the file. Pure: no ROS imports."""
from __future__ import annotations

import os
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


def read_rgb(path: str | os.PathLike, error: type[Exception] = ValueError) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file; raises `error` naming the file when it cannot be read."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise error(f"{path}: cannot read image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
