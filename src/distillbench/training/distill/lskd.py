"""Logit standardisation (Sun et al., CVPR 2024, "Logit Standardization in Knowledge Distillation"):
KD with both students' and teachers' logits z-scored per sample, z' = (z - mean(z)) / std(z),
before softening, so the student matches the teacher's logit *relations*, not their scale:
loss = alpha * T^2 * KL(softmax(z'_t / T) || softmax(z'_s / T)) + (1 - alpha) * CE(z_s, y)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from distillbench.training.distill.base import DistillMethod, register_method
from distillbench.training.distill.kd import soft_kl


def standardize(logits: torch.Tensor) -> torch.Tensor:
    """Per sample: minus the mean, over the standard deviation (over classes)."""
    return (logits - logits.mean(-1, keepdim=True)) / (logits.std(-1, keepdim=True) + 1e-7)


@register_method
class LSKD(DistillMethod):
    """KD on standardised logits; T 2 and T^2 scaling as in the paper's experiments."""

    method: Literal["lskd"] = "lskd"
    temperature: float = Field(2.0, gt=0)
    alpha: float = Field(0.9, ge=0, le=1, description="Weight of the soft-target term.")

    def sample_loss(
        self, student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, epoch: int
    ) -> torch.Tensor:
        soft = soft_kl(standardize(student), standardize(teacher), self.temperature) * self.temperature**2
        return self.alpha * soft + (1.0 - self.alpha) * F.cross_entropy(student, labels, reduction="none")
