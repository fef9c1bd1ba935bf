"""Knowledge review (Chen et al., CVPR 2021, "Distilling Knowledge via Knowledge Review"), as mdistiller
computes it (megvii-research/mdistiller, ``mdistiller/distillers/ReviewKD.py``: ``ReviewKD.forward_train``,
``ABF``, ``hcl_loss``; defaults from ``mdistiller/engine/cfg.py``, ``CFG.REVIEWKD``, and
``configs/cifar100/reviewkd.yaml``), itself a copy of the authors' (dvlab-research/ReviewKD,
``CIFAR-100/model/reviewkd.py``):

loss = ce_weight * CE + reviewkd_weight * min(epoch / warmup_epochs, 1) * HCL(ABF(student), teacher)

The student's maps after the stem (``Features.stages[1:]``, or ``preactivation[1:]`` with
``student_preact``) and its embedding as a ``[B, D, 1, 1]`` map pass, deepest first, through a chain of
attention-based fusion modules (``ABF``, the run's learned parts): each projects its map to
``mid_channel`` channels (1x1 conv + BN), fuses it with the previous (deeper) module's output upsampled
(nearest) to its size by a 2-channel sigmoid attention (1x1 conv on both), resizes the result (nearest)
to the teacher map's size and maps it to the teacher's channels (3x3 conv + BN). Each output is
compared with the teacher's map before its last activation (``teacher.preactivation[1:]``, mdistiller's
``preact_feats[1:]``; the teacher's embedding last) by the hierarchical context loss ``hcl_loss``: the
MSE, plus the MSEs of the 4x4, 2x2 and 1x1 average-pooled maps (those smaller than the map) weighted
1/2, 1/4, 1/8 in the order of the levels used (a 4x4 map: 2x2 at 1/2, 1x1 at 1/4), over the sum of
the weights used.

mdistiller reads the modules' shapes from its config (``SHAPES``, ``OUT_SHAPES``, ``IN_CHANNELS``,
``OUT_CHANNELS``: for resnet32x4 -> resnet8x4 only); here ``learned_parts`` derives them from one
batch's ``Features`` (they equal that config for that pair); ``mid_channel = min(512, D_student)``, as
mdistiller hard-codes it (its ``MAX_MID_CHANNEL`` is read but unused). mdistiller passes its trainer's
1-based epoch (``engine/trainer.py``), as our loop does, so the warm-up factor is 1/20 in the first
epoch (the authors' own ``train.py`` counts from 0: factor 0 there); ``warmup_epochs`` 0 means no
warm-up (mdistiller would divide by zero). The ABFs' BatchNorm on the ``[B, D, 1, 1]`` embedding needs
batches of at least 2 in training: a last batch of one image fuses with the running statistics
(mdistiller's would fail). Checked against mdistiller's ``ReviewKD.forward_train`` on fixed tensors
with the same module weights (tests/training/test_reviewkd.py): the cross-entropy to a relative 1e-6,
the review term to 1e-5, gradient norms to 1e-4 (float32; measured: equal).
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


def hcl_loss(students: list[torch.Tensor], teachers: list[torch.Tensor]) -> torch.Tensor:
    """mdistiller's ``hcl_loss``: over the pairs of equally shaped maps ``[B, C, H, W]``, the sum of
    (MSE + sum_l w_l MSE(pool_l(s), pool_l(t))) / (1 + sum_l w_l), for l = 4, 2, 1 (adaptive average
    pooling to l x l) where l < H, with w = 1/2, 1/4, 1/8 in that order of the levels used."""
    total = torch.zeros((), device=students[0].device)
    for s, t in zip(students, teachers, strict=True):
        loss = F.mse_loss(s, t)
        weight, weights = 1.0, 1.0
        for size in (4, 2, 1):
            if size >= s.shape[2]:
                continue
            weight /= 2.0
            loss = loss + weight * F.mse_loss(F.adaptive_avg_pool2d(s, size), F.adaptive_avg_pool2d(t, size))
            weights += weight
        total = total + loss / weights
    return total


class ABF(nn.Module):
    """mdistiller's attention-based fusion module: ``conv1`` (1x1, BN) to ``mid_channel``; if ``fuse``,
    a sigmoid attention ``att_conv`` (1x1 on both, 2 channels, with bias) weighting it against the
    deeper module's output; ``conv2`` (3x3, BN) to the teacher's channels. Its initialisation is
    mdistiller's: PyTorch's defaults, then ``kaiming_uniform_(a=1)`` on both convs' weights."""

    def __init__(self, in_channel: int, mid_channel: int, out_channel: int, fuse: bool):
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_channel, mid_channel, kernel_size=1, bias=False), nn.BatchNorm2d(mid_channel)
        )
        self.conv2 = nn.Sequential(
            nn.Conv2d(mid_channel, out_channel, kernel_size=3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(out_channel),
        )
        self.att_conv = nn.Sequential(nn.Conv2d(mid_channel * 2, 2, kernel_size=1), nn.Sigmoid()) if fuse else None
        nn.init.kaiming_uniform_(self.conv1[0].weight, a=1)
        nn.init.kaiming_uniform_(self.conv2[0].weight, a=1)

    def forward(
        self, x: torch.Tensor, y: torch.Tensor | None, out_shape: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(output at ``out_shape`` with the teacher's channels, the fused map passed to the next module)
        from the student map ``x`` and the deeper module's fused map ``y`` (None for the deepest)."""
        x = self.conv1(x)
        if self.att_conv is not None:
            y = F.interpolate(y, x.shape[2:], mode="nearest")  # mdistiller's SHAPES: the student map's size
            z = self.att_conv(torch.cat([x, y], dim=1))
            x = x * z[:, 0:1] + y * z[:, 1:2]
        if tuple(x.shape[2:]) != out_shape:
            x = F.interpolate(x, out_shape, mode="nearest")
        return self.conv2(x), x


class ReviewParts(nn.Module):
    """The chain of ``ABF`` modules, deepest first (mdistiller's ``self.abfs``, same parameter names),
    and the teacher maps' sizes (mdistiller's ``OUT_SHAPES``, deepest first)."""

    def __init__(self, in_channels: list[int], out_channels: list[int], out_shapes: list[tuple[int, int]]):
        super().__init__()
        mid_channel = min(512, in_channels[-1])
        # Built shallowest first, as mdistiller does: its draws from the global generator, in its order.
        abfs = [
            ABF(c, mid_channel, o, i < len(in_channels) - 1)
            for i, (c, o) in enumerate(zip(in_channels, out_channels, strict=True))
        ]
        self.abfs = nn.ModuleList(abfs[::-1])
        self.out_shapes = out_shapes[::-1]

    def forward(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        """The outputs for the student's maps ``inputs`` (shallowest first, embedding last), in that order."""
        results, fused = [], None
        for x, abf, out_shape in zip(inputs[::-1], self.abfs, self.out_shapes, strict=True):
            out, fused = abf(x, fused, out_shape)
            results.insert(0, out)
        return results


def _student_inputs(student: Features, preact: bool) -> list[torch.Tensor]:
    stages = student.preactivation if preact else student.stages
    return [*stages[1:], student.embedding.flatten(1)[:, :, None, None]]


def _teacher_targets(teacher: Features) -> list[torch.Tensor]:
    return [*teacher.preactivation[1:], teacher.embedding.flatten(1)[:, :, None, None]]


@register_method
class ReviewKD(FeatureMethod):
    """Knowledge review; defaults from mdistiller's CIFAR-100 setting (``configs/cifar100/reviewkd.yaml``
    on ``CFG.REVIEWKD``): ReviewKD weight 5 (``CFG.REVIEWKD.REVIEWKD_WEIGHT`` is 1.0, but mdistiller's
    only CIFAR-100 ReviewKD config sets 5.0, and the authors' scripts use 5.0 for resnet32x4 -> resnet8x4
    and wrn_40_2 -> wrn_16_2), CE 1, warm-up 20 epochs, student maps after their activation."""

    method: Literal["reviewkd"] = "reviewkd"
    # The teacher's pre-activation maps (its plain stages where the architecture has none) and embedding.
    teacher_features: ClassVar[frozenset[str]] = frozenset({"preactivation", "embedding", "logits"})
    reviewkd_weight: LossWeight = Field(
        5.0,
        description="Weight of the review (HCL) term (CFG.REVIEWKD.REVIEWKD_WEIGHT, 5.0 in mdistiller's "
        "configs/cifar100/reviewkd.yaml).",
    )
    warmup_epochs: int = Field(
        20,
        ge=0,
        le=100_000,
        description="Epochs over which the review term ramps up linearly; 0: none (CFG.REVIEWKD.WARMUP_EPOCHS).",
    )
    student_preact: bool = Field(
        False, description="Fuse the student's maps before their last activation (CFG.REVIEWKD.STU_PREACT)."
    )

    def learned_parts(self, student: Features, teacher: Features, train_labels: torch.Tensor, seed: int) -> ReviewParts:
        """The ``ABF`` chain for this pair's shapes, drawn from the global generator (the caller seeds it)."""
        if len(student.stages) != len(teacher.stages):
            raise ValueError(
                f"ReviewKD pairs the student's stages with the teacher's one to one, but the student has "
                f"{len(student.stages)} stages (stem included) and the teacher {len(teacher.stages)}; "
                "choose a teacher and student with the same number of stages, or another method"
            )
        inputs, targets = _student_inputs(student, self.student_preact), _teacher_targets(teacher)
        return ReviewParts(
            [x.shape[1] for x in inputs], [t.shape[1] for t in targets], [tuple(t.shape[2:]) for t in targets]
        )

    def feature_term(
        self, student: Features, teacher: Features, epoch: int, parts: nn.Module | None, index: torch.Tensor | None
    ) -> torch.Tensor:
        if parts is None:
            raise ValueError("ReviewKD's loss needs its learned parts (the ABF modules learned_parts builds)")
        if len(student.logits) == 1 and parts.training:
            # A last batch of one image (a training split one more than a multiple of the batch size):
            # BatchNorm cannot normalise one sample's 1x1 embedding map, so this step's fusion modules use
            # their running statistics (mdistiller's would fail here).
            parts.eval()
            try:
                results = parts(_student_inputs(student, self.student_preact))
            finally:
                parts.train()
        else:
            results = parts(_student_inputs(student, self.student_preact))
        review = hcl_loss(results, [t.detach() for t in _teacher_targets(teacher)])
        ramp = min(epoch / self.warmup_epochs, 1.0) if self.warmup_epochs else 1.0
        return self.reviewkd_weight * ramp * review
