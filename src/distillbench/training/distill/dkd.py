"""Decoupled KD (Zhao et al., CVPR 2022, "Decoupled Knowledge Distillation"):
loss = ce_weight * CE + min(epoch / warmup_epochs, 1) * T^2 * (alpha * TCKD + beta * NCKD), where
TCKD = KL(b_t || b_s) over the binary split [p(label), 1 - p(label)] of the softened predictions,
and NCKD = KL(p^_t || p^_s) over the non-label classes, renormalised (label logit removed)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from distillbench.config import LossWeight, Temperature
from distillbench.training.distill.base import DistillMethod, register_method


def _binary(log_probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log [p(label), 1 - p(label)] from log-probabilities ``[B, C]``."""
    label = log_probs.gather(1, labels[:, None])
    rest = torch.log1p(-label.exp().clamp(max=1 - 1e-7))
    return torch.cat([label, rest], dim=1)


@register_method
class DKD(DistillMethod):
    """Decoupled KD; defaults from the paper's CIFAR-100 setting (T 4, alpha 1, beta 8, warm-up 20)."""

    method: Literal["dkd"] = "dkd"
    temperature: Temperature = 4.0
    alpha: LossWeight = Field(1.0, description="Weight of the target-class term (TCKD).")
    beta: LossWeight = Field(8.0, description="Weight of the non-target-class term (NCKD).")
    ce_weight: LossWeight = 1.0
    warmup_epochs: int = Field(20, ge=0, le=100_000, description="Epochs over which the KD terms ramp up linearly.")

    def sample_loss(
        self, student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, epoch: int
    ) -> torch.Tensor:
        t = self.temperature
        log_s, log_t = F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1)
        bin_s, bin_t = _binary(log_s, labels), _binary(log_t, labels)
        tckd = F.kl_div(bin_s, bin_t, reduction="none", log_target=True).sum(1)
        mask = F.one_hot(labels, student.shape[1]).bool()
        nontarget_s = F.log_softmax((student / t).masked_fill(mask, -torch.inf), dim=1)
        nontarget_t = F.log_softmax((teacher / t).masked_fill(mask, -torch.inf), dim=1)
        nckd = (nontarget_t.exp() * (nontarget_t - nontarget_s)).masked_fill(mask, 0.0).sum(1)
        ramp = min(epoch / self.warmup_epochs, 1.0) if self.warmup_epochs else 1.0
        decoupled = t * t * (self.alpha * tckd + self.beta * nckd)
        return self.ce_weight * F.cross_entropy(student, labels, reduction="none") + ramp * decoupled
