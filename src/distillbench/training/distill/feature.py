"""What every feature method shares: it reads ``Features`` (``needs_features``), distils one teacher,
and may add a KD term on the logits to its own loss, as RepDistiller combines any of its objectives
with KD (``train_student.py``: ``-r`` CE, ``-a`` KD, ``-b`` the method's term; "CRD+KD" in the CRD
paper). The reference runs of the benchmark table use none (``kd_weight`` 0, the default).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field

from distillbench.config import LossWeight
from distillbench.models.classifier import Features
from distillbench.training.distill.base import DistillMethod
from distillbench.training.distill.kd import soft_kl


class FeatureMethod(DistillMethod):
    """A feature method: subclasses define ``feature_loss`` and add ``kd_term`` to it. ``temperature``
    (4 by default, RepDistiller's ``--kd_T``) is the KD term's."""

    needs_features: ClassVar[bool] = True
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
