"""Losses: image + mask reconstruction (Eq. 3), feature cosine (Eq. 4), weighted BCE (Eq. 8), and the voxel
occupancy BCE against the visual hull (our addition, docs/training.md). OddOneOutNet.get_loss_dict combines them
with the weights of LossWeights."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms (the trainer's TrainConfig.lambda_*)."""

    sigma: float = 1.0
    """mask term within the image loss (Eq. 3)"""
    feature: float = 1.0
    """feature distillation (Eq. 4)"""
    occupancy: float = 0.0
    """voxel occupancy BCE against the visual hull (0 = not computed)"""
    reconstruction_stage2: float = 0.1
    """the reconstruction loss's weight beside the BCE (stage 2)"""


def image_loss(rgb: torch.Tensor, opacity: torch.Tensor, gt_rgb: torch.Tensor, gt_mask: torch.Tensor,
               lambda_sigma: float = 1.0) -> torch.Tensor:
    """L_im = ||I * M - I_hat||^2 + lambda_sigma ||M - M_hat||^2 (means over pixels).

    rgb (B, V, 3, h, w), opacity (B, V, 1, h, w), gt_rgb (B, V, 3, h, w) in [0, 1], gt_mask (B, V, 1, h, w)
    (objects only: the volume models the objects, not the floor or background).
    """
    return F.mse_loss(rgb, gt_rgb * gt_mask) + lambda_sigma * F.mse_loss(opacity, gt_mask)


def feature_loss(rendered: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cosine distance between rendered and teacher features on object pixels.

    rendered, teacher (B, V, d_f, h, w); mask (B, V, 1, h, w) in [0, 1] at the same resolution.
    """
    cos = F.cosine_similarity(rendered, teacher, dim=2, eps=1e-6)  # (B, V, h, w)
    w = mask[:, :, 0]
    return ((1 - cos) * w).sum() / w.sum().clamp(min=1.0)


def occupancy_loss(density: torch.Tensor, target: torch.Tensor, voxel_size: float) -> torch.Tensor:
    """BCE between voxel opacity 1 - exp(-sigma * voxel_size) and a target occupancy in [0, 1] (visual hull).

    density (B, 1, Z, Y, X) in 1/m, target (B, Z, Y, X); log terms written in sigma for stability.
    """
    x = (density[:, 0] * voxel_size).clamp(min=1e-6)
    log_occ = torch.log(-torch.expm1(-x))  # log(1 - exp(-x))
    return -(target * log_occ - (1 - target) * x).mean()


def weighted_bce(logits: torch.Tensor, labels: torch.Tensor, w_anomalous: float = 0.7,
                 w_normal: float = 0.3) -> torch.Tensor:
    """BCE with anomalies weighted w_anomalous and normals w_normal (reference code: 0.7 / 0.3).

    logits, labels (N,); labels 1 = anomalous.
    """
    labels = labels.to(logits.dtype)
    weights = labels * w_anomalous + (1 - labels) * w_normal
    return F.binary_cross_entropy_with_logits(logits, labels, weight=weights, reduction="sum") / weights.sum().clamp(
        min=1e-6)
