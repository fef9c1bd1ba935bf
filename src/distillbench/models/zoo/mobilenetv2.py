"""MobileNetV2 at half width (``mobilenetv2``; RepDistiller's ``MobileNetV2`` = ``mobile_half``).

Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks" (CVPR 2018), in the CIFAR
variant of Jin et al., "Knowledge Distillation via Route Constrained Optimization" (ICCV 2019), as
Tian et al., "Contrastive Representation Distillation" (ICLR 2020) ship it:
github.com/HobbitLong/RepDistiller, ``models/mobilenetv2.py`` (``mobile_half(num_classes)`` =
``MobileNetV2(T=6, feature_dim=num_classes, width_mult=0.5)``). Same modules and state_dict names
(``conv1.0``, ``blocks.1.0.conv.3``, ``conv2.0``, ``classifier.0``, ...), so its checkpoints load with
``strict=True``. A stride-2 stem, seven stages of inverted residual blocks (expansion 6 but the
first), a 1x1 convolution to 1280 channels (not scaled by the half width, as the reference), a 2x2
average pool (the reference's ``AvgPool2d(32 // 16, ceil_mode=True)``: 32x32 inputs expected,
giving 2x2 maps there) and the classifier.

No pre-activation stages: mdistiller's MobileNetV2 returns no ``preact_feats`` (its stages but the
stem end in a linear projection, with no activation to be before), so ``forward_features`` gives
``preact_stages=None``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from distillbench.models.classifier import Features, Float32Linear
from distillbench.models.zoo.base import ZooNet, conv_bn, he_init_

# (expansion, output channels at full width, blocks, first block's stride), the reference's table.
STAGES = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class InvertedResidual(nn.Module):
    """1x1 expand-BN-ReLU, 3x3 depthwise-BN-ReLU, 1x1 project-BN (linear), plus the input when shapes allow."""

    def __init__(self, inputs: int, outputs: int, stride: int, expansion: int):
        super().__init__()
        hidden = inputs * expansion
        self.residual = stride == 1 and inputs == outputs
        self.conv = nn.Sequential(
            *conv_bn(inputs, hidden, 1), nn.ReLU(inplace=True),
            *conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.ReLU(inplace=True),
            *conv_bn(hidden, outputs, 1),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(ZooNet):
    """``expansion`` replaces the table's 6s (the reference's ``T``); ``width`` scales all but the last conv."""

    stage_names = (
        "conv1",
        "blocks.1",
        "blocks.2",
        "blocks.4",
        "blocks.6",
    )  # what forward_features' stages are the outputs of

    def __init__(self, expansion: int, width: float, num_classes: int):
        super().__init__()
        channels = int(32 * width)
        self.conv1 = nn.Sequential(*conv_bn(3, channels, 3, 2), nn.ReLU(inplace=True))
        self.blocks = nn.ModuleList()
        for t, c, n, s in STAGES:
            stage = []
            for i in range(n):
                stage.append(InvertedResidual(channels, int(c * width), s if i == 0 else 1, t if t == 1 else expansion))
                channels = int(c * width)
            self.blocks.append(nn.Sequential(*stage))
        last = int(1280 * width) if width > 1.0 else 1280
        self.conv2 = nn.Sequential(*conv_bn(channels, last, 1), nn.ReLU(inplace=True))
        self.classifier = nn.Sequential(Float32Linear(last, num_classes))
        self.avgpool = nn.AvgPool2d(32 // 16, ceil_mode=True)  # the reference's input_size // (32 // 2)
        he_init_(self, linear="normal")

    def forward_features(self, x: torch.Tensor) -> Features:
        # As the reference: the stem's output, then the outputs of stages 2, 3, 5 and 7 (1-based).
        features = [self.conv1(x)]
        x = features[0]
        for index, stage in enumerate(self.blocks):
            x = stage(x)
            if index in (1, 2, 4, 6):
                features.append(x)
        pooled = self.avgpool(self.conv2(x)).flatten(1)
        return Features(features, pooled, self.classifier(pooled))


NETWORKS: dict[str, Callable[..., ZooNet]] = {"mobilenetv2": partial(MobileNetV2, 6, 0.5)}
"""name -> ``f(num_classes=...)``: RepDistiller's ``mobile_half``."""
