"""Hinton et al. 2015, "Distilling the knowledge in a neural network":
loss = alpha * [T^2] * KL(softmax(z_t / T) || softmax(z_s / T)) + (1 - alpha) * CE(z_s, y)."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from distillbench.config import KDConfig, Temperature
from distillbench.training.distill.base import DistillMethod, register_method


def soft_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per sample, KL(softmax(teacher / T) || softmax(student / T)), summed over classes."""
    return F.kl_div(
        F.log_softmax(student / temperature, dim=-1),
        F.log_softmax(teacher / temperature, dim=-1),
        reduction="none",
        log_target=True,
    ).sum(-1)


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, cfg: KDConfig | KD) -> torch.Tensor:
    """Hinton et al.: alpha * [T^2] * KL(softmax(teacher/T) || softmax(student/T)) + (1-alpha) * CE,
    with ``cfg``'s temperature, alpha and scale_by_t2 (the ``kd:`` section, or a resolved ``KD``).

    KL is summed over classes and averaged over the batch, as Keras' KLDivergence does.
    """
    t = cfg.temperature
    soft = F.kl_div(
        F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1), reduction="batchmean", log_target=True
    )
    if cfg.scale_by_t2:
        soft = soft * t * t
    return cfg.alpha * soft + (1.0 - cfg.alpha) * F.cross_entropy(student, labels)


@register_method
class KD(DistillMethod):
    """Hinton et al. (2015). Its defaults come from the study's ``kd:`` section."""

    method: Literal["kd"] = "kd"
    defaults_from_kd_section: ClassVar[bool] = True
    temperature: Temperature = 3.0
    alpha: float = Field(0.5, ge=0, le=1, description="Weight of the soft-target term.")
    scale_by_t2: bool = False

    def sample_loss(
        self, student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, epoch: int
    ) -> torch.Tensor:
        soft = soft_kl(student, teacher, self.temperature)
        if self.scale_by_t2:
            soft = soft * self.temperature**2
        return self.alpha * soft + (1.0 - self.alpha) * F.cross_entropy(student, labels, reduction="none")

    def batch_loss(
        self, student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, epoch: int
    ) -> torch.Tensor:
        return kd_loss(student, teacher, labels, self)  # the batch form: the paper preset's numbers, to the bit
