"""FitNets (Romero et al., ICLR 2015, "FitNets: Hints for Thin Deep Nets"), as mdistiller computes it
(megvii-research/mdistiller, ``mdistiller/distillers/FitNet.py``, ``ConvReg`` in ``_common.py``;
defaults from ``mdistiller/engine/cfg.py``, ``CFG.FITNET``):

loss = ce_weight * CE + feat_weight * mean((regressor(s_h) - t_h)^2)

where ``s_h``, ``t_h`` are the student's and the teacher's stage outputs at ``hint_layer``
(``Features.stages``, mdistiller's ``feats``: 0 is the stem) and the regressor is a learned
convolution + BatchNorm + ReLU mapping the student's map onto the teacher's shape: a stride-2 3x3
convolution when the student's map is twice the teacher's size, a stride-2 4x4 transposed
convolution when half, else a (1 + s_H - t_H) x (1 + s_W - t_W) convolution. The regressor trains
jointly with the student from the first epoch (single stage), as mdistiller and RepDistiller's
``hint`` runs do (the paper trained the hint first, in a stage of its own). It is the method's
learned part: saved with the run, not part of the deployed student. Checked against mdistiller's
``FitNet.forward_train`` on fixed tensors (tests/training/test_fitnet.py): losses to a relative 1e-5,
gradient norms to 1e-4 (float32).
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


class ConvRegressor(nn.Sequential):
    """A student map ``[B, s_C, s_H, s_W]`` -> the teacher's ``[B, t_C, t_H, t_W]``: convolution,
    BatchNorm, ReLU (mdistiller's ``ConvReg`` with ``use_relu=True``; same layer names ``conv``, ``bn``)."""

    def __init__(self, student: torch.Size, teacher: torch.Size):
        (_, s_c, s_h, s_w), (_, t_c, t_h, t_w) = student, teacher
        if s_h == 2 * t_h:
            conv: nn.Module = nn.Conv2d(s_c, t_c, kernel_size=3, stride=2, padding=1)
        elif 2 * s_h == t_h:
            conv = nn.ConvTranspose2d(s_c, t_c, kernel_size=4, stride=2, padding=1)
        elif s_h >= t_h and s_w >= t_w:
            conv = nn.Conv2d(s_c, t_c, kernel_size=(1 + s_h - t_h, 1 + s_w - t_w))
        else:
            raise ValueError(
                f"FitNets' regressor maps the student's hint map ({s_h}x{s_w}) onto the teacher's ({t_h}x{t_w}): "
                "it must be twice, half, or at least the teacher's size; choose another hint_layer"
            )
        super().__init__()
        self.conv, self.bn, self.relu = conv, nn.BatchNorm2d(t_c), nn.ReLU()


@register_method
class FitNet(FeatureMethod):
    """FitNets' hint; defaults from mdistiller's CIFAR-100 setting (hint layer 2, feature weight 100, CE 1)."""

    method: Literal["fitnet"] = "fitnet"
    teacher_features: ClassVar[frozenset[str]] = frozenset({"stages", "logits"})
    hint_layer: int = Field(
        2, ge=0, le=16, description="Stage whose output is the hint, 0: the stem (CFG.FITNET.HINT_LAYER)."
    )
    feat_weight: LossWeight = Field(100.0, description="Weight of the hint term (CFG.FITNET.LOSS.FEAT_WEIGHT).")

    def _hints(self, features: Features, who: str) -> torch.Tensor:
        if self.hint_layer >= len(features.stages):
            raise ValueError(
                f"hint_layer {self.hint_layer}: the {who} has {len(features.stages)} stage outputs "
                f"(0 to {len(features.stages) - 1}); choose one both networks have"
            )
        return features.stages[self.hint_layer]

    def learned_parts(
        self, student: Features, teacher: Features, train_labels: torch.Tensor, seed: int
    ) -> nn.Module | None:
        return ConvRegressor(self._hints(student, "student").shape, self._hints(teacher, "teacher").shape)

    def feature_term(
        self, student: Features, teacher: Features, epoch: int, parts: nn.Module | None, index: torch.Tensor | None
    ) -> torch.Tensor:
        assert parts is not None, "FitNet's regressor: learned_parts builds it"
        hint = F.mse_loss(parts(self._hints(student, "student")), self._hints(teacher, "teacher").detach())
        return self.feat_weight * hint
