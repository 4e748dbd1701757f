"""A failed model must not look like an empty tray: non-finite outputs are errors, not "no objects".

A network whose density volume holds NaN finds no voxel above the occupancy threshold, so it returns no
boxes: to everything downstream that reads as "0 objects, no anomaly"; an infinite logit becomes a score of
exactly 0 or 1. `FiniteGuard` wraps an Inspector (model/inference.py) and raises NonFiniteOutput when the
density volume or the anomaly logits of an inspection, or any box value or score of its result, are not
finite; `check_finite_result` does the result half for any inspect function.
The detector counts either as an inference error (ERROR in /diagnostics) and publishes nothing.
Pure: torch and numpy only, no rclpy.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["NonFiniteOutput", "check_finite_result", "FiniteGuard"]


class NonFiniteOutput(ValueError):
    """The model produced NaN or inf; the message says where."""


def check_finite_result(result) -> None:
    """result: anything with .objects, each with .box (center, size, yaw) and .score (InspectionResult)."""
    for i, o in enumerate(result.objects):
        values = np.concatenate([np.asarray(o.box.center, np.float64).reshape(-1),
                                 np.asarray(o.box.size, np.float64).reshape(-1), [float(o.box.yaw)]])
        if not np.isfinite(values).all():
            raise NonFiniteOutput(f"the model returned a non-finite box for object {i}: {values.tolist()}")
        if not math.isfinite(float(o.score)):
            raise NonFiniteOutput(f"the model returned a non-finite score for object {i}: {o.score}")


class FiniteGuard:
    """guard = FiniteGuard(inspector); guard(views) -> inspector.inspect(views), or NonFiniteOutput.

    Watches the scene encoder's density head and the object scorer, whichever runs (its anomaly logits), with
    forward hooks (no change to the model), so that a NaN volume, which yields no boxes at all, is reported instead
    of passing as an empty tray. Not re-entrant: one inspection at a time (the detector has one worker thread)."""

    WATCHED = {"scene.density_head": "density volume", "scorer": "anomaly logits"}

    def __init__(self, inspector):
        self.inspector = inspector
        self._counts: dict[str, list[int]] = {}
        for name, what in self.WATCHED.items():
            module = inspector.net.get_submodule(name)
            module.register_forward_hook(lambda m, i, out, what=what: self._watch(what, out))

    def _watch(self, what: str, output) -> None:
        import torch

        output = getattr(output, "logits", output)  # the scorer's Scores: its logits per scene
        for t in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                c = self._counts.setdefault(what, [0, 0])
                c[0] += int((~torch.isfinite(t)).sum())
                c[1] += t.numel()

    def __call__(self, views, boxes=None):
        """inspector.inspect(views, boxes) (boxes: given boxes to score instead of the model's own), checked."""
        self._counts = {}
        result = self.inspector.inspect(views, boxes)
        for what, (bad, total) in self._counts.items():
            if bad:
                raise NonFiniteOutput(f"the model's {what} has {bad} non-finite values (of {total})"
                                      + (": its result would be an empty tray" if what == "density volume" else ""))
        check_finite_result(result)
        return result
