"""Attention transfer (Zagoruyko & Komodakis, ICLR 2017, "Paying More Attention to Attention: Improving
the Performance of Convolutional Neural Networks via Attention Transfer"), as mdistiller computes it
(megvii-research/mdistiller, ``mdistiller/distillers/AT.py``: ``AT.forward_train``, ``at_loss``,
``single_stage_at_loss``; defaults from ``mdistiller/engine/cfg.py``, ``CFG.AT``):

loss = ce_weight * CE + feat_weight * sum_stages mean((a_s - a_t)^2),  a = normalize(mean_c(F^p))

over the stage outputs after the stem (``Features.stages[1:]``, mdistiller's ``feats[1:]``); each
attention map is the channel mean of ``F^p``, flattened and L2-normalised per sample. Where the two
maps' spatial sizes differ, the larger is average-pooled to the smaller's. Stages pair in order
from the first after the stem; when the counts differ the longer list's last stages go unused (as
``zip`` does there). Checked against mdistiller's ``AT.forward_train`` on fixed tensors to a
relative 1e-5 (tests/training/test_feature_methods.py).
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


def attention_map(feature: torch.Tensor, p: int) -> torch.Tensor:
    """``[B, H*W]``: the channel mean of ``feature ** p`` (``[B, C, H, W]``), L2-normalised per sample."""
    # F^p, not |F|^p as the paper writes: mdistiller's choice; the two agree for even p (the default).
    return F.normalize(feature.pow(p).mean(1).flatten(1), dim=1)


def stage_at_loss(student: torch.Tensor, teacher: torch.Tensor, p: int) -> torch.Tensor:
    """Mean squared difference of the two maps' attention, the larger map pooled to the smaller's size."""
    if student.shape[2] > teacher.shape[2]:
        student = F.adaptive_avg_pool2d(student, teacher.shape[2:])
    elif student.shape[2] < teacher.shape[2]:
        teacher = F.adaptive_avg_pool2d(teacher, student.shape[2:])
    return (attention_map(student, p) - attention_map(teacher, p)).pow(2).mean()


@register_method
class AT(FeatureMethod):
    """Attention transfer; defaults from mdistiller's CIFAR-100 setting (p 2, feature weight 1000, CE 1)."""

    method: Literal["at"] = "at"
    teacher_features: ClassVar[frozenset[str]] = frozenset({"stages", "logits"})
    # An integer: a fractional power of a negative activation (WRN's stages are pre-activation) is NaN.
    p: int = Field(2, ge=1, le=8, description="Power of the activations in the attention map (CFG.AT.P).")
    feat_weight: LossWeight = Field(1000.0, description="Weight of the attention term (CFG.AT.LOSS.FEAT_WEIGHT).")

    def feature_term(
        self, student: Features, teacher: Features, epoch: int, parts: nn.Module | None, index: torch.Tensor | None
    ) -> torch.Tensor:
        pairs = zip(student.stages[1:], teacher.stages[1:], strict=False)  # the stem's output is not used
        attention = sum(stage_at_loss(s, t.detach(), self.p) for s, t in pairs)
        return self.feat_weight * attention
