"""DIST (Huang et al., NeurIPS 2022, "Knowledge Distillation from A Stronger Teacher"): match
relations instead of probabilities, with p = softmax(z / T):
loss = ce_weight * CE + T^2 * (beta * inter + gamma * intra), where inter = mean over samples of
1 - Pearson(p_s[i, :], p_t[i, :]) (relations between classes, per sample) and intra = mean over
classes of 1 - Pearson(p_s[:, j], p_t[:, j]) (relations between samples, per class: over the batch)."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from distillbench.config import LossWeight, Temperature
from distillbench.training.distill.base import DistillMethod, register_method


def _pearson_distance(a: torch.Tensor, b: torch.Tensor, dim: int) -> torch.Tensor:
    """1 - Pearson correlation of ``a`` and ``b`` along ``dim``."""
    a = a - a.mean(dim, keepdim=True)
    b = b - b.mean(dim, keepdim=True)
    return 1.0 - (a * b).sum(dim) / (a.norm(dim=dim) * b.norm(dim=dim) + 1e-8)


@register_method
class DIST(DistillMethod):
    """DIST; defaults from the paper's CIFAR-100 setting (T 4, beta 2, gamma 2)."""

    method: Literal["dist"] = "dist"
    temperature: Temperature = 4.0
    beta: LossWeight = Field(2.0, description="Weight of the inter-class relation term.")
    gamma: LossWeight = Field(2.0, description="Weight of the intra-class relation term.")
    ce_weight: LossWeight = 1.0

    per_sample: ClassVar[bool] = False

    def batch_loss(
        self, student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, epoch: int
    ) -> torch.Tensor:
        t = self.temperature
        p_s, p_t = F.softmax(student / t, dim=1), F.softmax(teacher / t, dim=1)
        inter = _pearson_distance(p_s, p_t, dim=1).mean()
        intra = _pearson_distance(p_s, p_t, dim=0).mean()
        return self.ce_weight * F.cross_entropy(student, labels) + t * t * (self.beta * inter + self.gamma * intra)
