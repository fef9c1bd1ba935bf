"""Logit standardisation (Sun et al., CVPR 2024, "Logit Standardization in Knowledge Distillation"):
KD with both students' and teachers' logits z-scored per sample, z' = (z - mean(z)) / std(z),
before softening, so the student matches the teacher's logit *relations*, not their scale:
loss = ce_weight * CE(z_s, y) + kd_weight * T^2 * KL(softmax(z'_t / T) || softmax(z'_s / T)).
Defaults as the authors' CIFAR runs (mdistiller's CE weight 0.1, --kd-weight 9, --base-temp 2)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from distillbench.config import LossWeight, Temperature
from distillbench.training.distill.base import DistillMethod, register_method
from distillbench.training.distill.kd import soft_kl


def standardize(logits: torch.Tensor) -> torch.Tensor:
    """Per sample: minus the mean, over the standard deviation (over classes)."""
    return (logits - logits.mean(-1, keepdim=True)) / (logits.std(-1, keepdim=True) + 1e-7)


@register_method
class LSKD(DistillMethod):
    """KD on standardised logits."""

    method: Literal["lskd"] = "lskd"
    temperature: Temperature = 2.0
    ce_weight: LossWeight = 0.1
    kd_weight: LossWeight = Field(9.0, description="Weight of the T^2-scaled soft-target term.")

    def sample_loss(
        self, student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, epoch: int
    ) -> torch.Tensor:
        soft = soft_kl(standardize(student), standardize(teacher), self.temperature) * self.temperature**2
        return self.ce_weight * F.cross_entropy(student, labels, reduction="none") + self.kd_weight * soft
