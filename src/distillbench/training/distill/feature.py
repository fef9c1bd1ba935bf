"""What every feature method shares: it reads ``Features`` (``needs_features``), distils one teacher,
and may add a KD term on the logits to its own loss, as RepDistiller combines any of its objectives
with KD (``train_student.py``: ``-r`` CE, ``-a`` KD, ``-b`` the method's term; "CRD+KD" in the CRD
paper). The reference runs of the benchmark table use none (``kd_weight`` 0, the default).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from distillbench.config import LossWeight
from distillbench.models.classifier import Features
from distillbench.training.distill.base import DistillMethod
from distillbench.training.distill.kd import soft_kl


class FeatureMethod(DistillMethod):
    """A feature method: loss = ce_weight CE + ``kd_term`` + ``feature_term``, of the student's and its
    one teacher's ``Features``. Subclasses define ``feature_term`` (their own weighted term) and
    their parameters; ``temperature`` (4 by default, RepDistiller's ``--kd_T``) is the KD term's."""

    needs_features: ClassVar[bool] = True
    ce_weight: LossWeight = Field(
        1.0, description="Weight of the cross-entropy term (mdistiller's CFG.<METHOD>.LOSS.CE_WEIGHT, 1 for each)."
    )
    kd_weight: LossWeight = Field(
        0.0,
        description="Weight of a KD term T^2 KL(p_t^T || p_s^T) on the logits (RepDistiller's -a); 0: none, as "
        "the benchmark's reference runs.",
    )

    def kd_term(self, student: Features, teacher: Features) -> torch.Tensor | float:
        """``kd_weight`` T^2 KL(softmax(z_t / T) || softmax(z_s / T)), summed over classes and averaged
        over the batch (RepDistiller's ``DistillKL``); 0 without a KD term."""
        if not self.kd_weight:
            return 0.0
        t = self.temperature
        return self.kd_weight * t * t * soft_kl(student.logits, teacher.logits.detach(), t).mean()

    def feature_term(
        self, student: Features, teacher: Features, epoch: int, parts: nn.Module | None, index: torch.Tensor | None
    ) -> torch.Tensor:
        """The method's own term, weighted: ``teacher``'s features are the targets (detach them),
        ``parts`` what ``learned_parts`` built, ``index`` the batch's positions in the training split."""
        raise NotImplementedError

    def feature_loss(
        self,
        student: Features,
        teachers: list[Features],
        labels: torch.Tensor,
        epoch: int,
        *,
        parts: nn.Module | None = None,
        index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        (teacher,) = teachers  # one teacher: the study checks it (study.recipe)
        ce = self.ce_weight * F.cross_entropy(student.logits, labels)
        return ce + self.kd_term(student, teacher) + self.feature_term(student, teacher, epoch, parts, index)
