"""Relational knowledge distillation (Park et al., CVPR 2019, "Relational Knowledge Distillation"), as
mdistiller computes it (megvii-research/mdistiller, ``mdistiller/distillers/RKD.py``: ``RKD.forward_train``,
``rkd_loss``, ``_pdist``; defaults from ``mdistiller/engine/cfg.py``, ``CFG.RKD``):

loss = ce_weight * CE + feat_weight * (distance_weight * L_d + angle_weight * L_a)

on the pooled embeddings (``Features.embedding``, mdistiller's ``pooled_feat``). L_d: smooth-L1 between
the two ``[B, B]`` pairwise-distance matrices, each divided by the mean of its positive entries
(distances from squared distances clamped at ``eps``, square-rooted unless ``squared``, diagonal 0).
L_a: smooth-L1 between the ``[B, B, B]`` cosines of the angles e_j - e_i, e_k - e_i. Teacher and
student embeddings may differ in width: only their relations are compared. Checked against
mdistiller's ``RKD.forward_train`` on fixed tensors to a relative 1e-5
(tests/training/test_feature_methods.py).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from distillbench.config import LossWeight
from distillbench.models.classifier import Features
from distillbench.training.distill.base import register_method
from distillbench.training.distill.feature import FeatureMethod


def pairwise_distances(e: torch.Tensor, squared: bool, eps: float) -> torch.Tensor:
    """``[B, B]`` Euclidean (or squared) distances between the rows of ``e``, divided by their mean
    over the positive entries; the diagonal is 0."""
    square = e.pow(2).sum(1)
    d = (square[:, None] + square[None, :] - 2 * e @ e.t()).clamp(min=eps)
    if not squared:
        d = d.sqrt()
    d = d.masked_fill(torch.eye(len(e), dtype=torch.bool, device=e.device), 0.0)
    # mdistiller's d[d > 0].mean(), without the host sync that boolean indexing costs on a GPU.
    return d / (d.sum() / (d > 0).sum())


def angles(e: torch.Tensor) -> torch.Tensor:
    """The ``B^3`` cosines of the angles between e_j - e_i and e_k - e_i, flattened."""
    directions = F.normalize(e[None, :, :] - e[:, None, :], p=2, dim=2)
    return torch.bmm(directions, directions.transpose(1, 2)).flatten()


@register_method
class RKD(FeatureMethod):
    """Relational KD; defaults from mdistiller's CIFAR-100 setting (distance 25, angle 50, CE 1)."""

    method: Literal["rkd"] = "rkd"
    teacher_features: ClassVar[frozenset[str]] = frozenset({"embedding", "logits"})
    distance_weight: LossWeight = Field(25.0, description="Weight of the distance term (CFG.RKD.DISTANCE_WEIGHT).")
    angle_weight: LossWeight = Field(50.0, description="Weight of the angle term (CFG.RKD.ANGLE_WEIGHT).")
    feat_weight: LossWeight = Field(1.0, description="Weight of the whole relational term (CFG.RKD.LOSS.FEAT_WEIGHT).")
    eps: float = Field(1e-12, ge=0, le=1, description="Floor of the squared distances (CFG.RKD.PDIST.EPSILON).")
    squared: bool = Field(False, description="Compare squared distances (CFG.RKD.PDIST.SQUARED).")

    def feature_term(
        self, student: Features, teacher: Features, epoch: int, parts: nn.Module | None, index: torch.Tensor | None
    ) -> torch.Tensor:
        s, t = student.embedding.flatten(1), teacher.embedding.flatten(1).detach()
        distance = F.smooth_l1_loss(
            pairwise_distances(s, self.squared, self.eps), pairwise_distances(t, self.squared, self.eps)
        )
        angle = F.smooth_l1_loss(angles(s), angles(t))
        relational = self.distance_weight * distance + self.angle_weight * angle
        return self.feat_weight * relational
