"""Distillation losses, found by name (``zoo.<model>.distill``). Add one with ``register_distiller``."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from distillbench.config import KDConfig

DistillLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, KDConfig], torch.Tensor]
DISTILLERS: dict[str, DistillLoss] = {}


def register_distiller(name: str, loss: DistillLoss) -> None:
    DISTILLERS[name] = loss


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, cfg: KDConfig) -> torch.Tensor:
    """Hinton et al.: alpha * [T^2] * KL(softmax(teacher/T) || softmax(student/T)) + (1-alpha) * CE.

    KL is summed over classes and averaged over the batch, as Keras' KLDivergence does.
    """
    t = cfg.temperature
    soft = F.kl_div(
        F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1), reduction="batchmean", log_target=True
    )
    if cfg.scale_by_t2:
        soft = soft * t * t
    return cfg.alpha * soft + (1.0 - cfg.alpha) * F.cross_entropy(student, labels)


register_distiller("kd", kd_loss)
