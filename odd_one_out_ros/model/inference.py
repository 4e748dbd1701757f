"""Inference API: a checkpoint + a list of posed views -> each object's 3D box, anomaly score, label.

    inspector = inspection.loader.load_inspector("model.pt", device="cpu").inspector   # or Inspector(net)
    result = inspector.inspect(views)   # views: list[PosedView], any number >= 1
    for obj in result.objects: obj.box (world frame, docs/frames.md), obj.score in [0, 1], obj.anomalous

Views are undistorted (OpenCV) when their camera has distortion, then resized to the model's input size.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from ..geometry import Box3D
from ..views import PosedView
from .network import OddOneOutNet


@dataclass(frozen=True)
class ObjectResult:
    box: Box3D
    score: float  # probability of being anomalous
    anomalous: bool
    box_score: float = 1.0  # the box estimator's confidence in [0, 1] (1.0 for given boxes and the density estimator)


@dataclass
class InspectionResult:
    objects: list[ObjectResult] = field(default_factory=list)
    n_views: int = 0
    latency_s: float = 0.0
    prior_raw: np.ndarray | None = None
    """(N,) float64: the raw scores of the training-free comparison of the objects (model/comparison.py), the
    baseline's scores of the same boxes; None for a scorer that runs no comparison (the matcher without prior)"""


def views_to_tensors(views: list[PosedView], size: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Posed views -> images (1, V, 3, size, size) in [0, 1], K (1, V, 3, 3) for that size, T_cw (1, V, 4, 4)."""
    if not views:
        raise ValueError("inspection needs at least one view")
    imgs, Ks, Ts = [], [], []
    for v in views:
        cam, img = v.camera, v.image
        if cam.has_distortion:
            if cam.distortion_model == "equidistant":
                img = cv2.fisheye.undistortImage(img, cam.K, cam.dist, Knew=cam.K)
            else:
                img = cv2.undistort(img, cam.K, cam.dist)
        cam = cam.resized(size, size)
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        imgs.append(torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div(255))
        Ks.append(torch.from_numpy(cam.K).float())
        Ts.append(torch.from_numpy(cam.T_cw.as_matrix()).float())
    return (torch.stack(imgs)[None].to(device), torch.stack(Ks)[None].to(device), torch.stack(Ts)[None].to(device))


class Inspector:
    def __init__(self, net: OddOneOutNet, device: str | torch.device = "cpu", threshold: float | None = None):
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.threshold = net.cfg.anomaly_threshold if threshold is None else threshold

    @torch.no_grad()
    def inspect(self, views: list[PosedView], boxes: list[Box3D] | None = None, count: int | None = None
                ) -> InspectionResult:
        """The objects the model finds in `views`, or, with `boxes` (world frame), the model's scores of those
        boxes instead of its own (e.g. ground-truth boxes in an evaluation); count: the number of objects where it
        is known (the reference code's protocol: its own boxes, that many)."""
        t0 = time.perf_counter()
        images, K, T = views_to_tensors(views, self.net.cfg.image_size, self.device)
        out = self.net(images, K, T, None if boxes is None else [list(boxes)], count=count)
        found, logits = out.found[0], out.logits[0]
        scores = torch.sigmoid(logits.float()).cpu().numpy() if len(found.boxes) else np.zeros(0)
        objects = [ObjectResult(b, float(s), bool(s > self.threshold), float(bs))
                   for b, s, bs in zip(found.boxes, scores, found.scores)]
        raw = None if out.raw is None else out.raw[0]
        return InspectionResult(objects, len(views), time.perf_counter() - t0, raw)
