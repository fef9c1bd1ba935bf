"""CIFAR ResNets (resnet8 ... resnet110, resnet8x4, resnet32x4) of the KD benchmark.

He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016), section 4.2, as
Tian et al., "Contrastive Representation Distillation" (ICLR 2020) ship them:
github.com/HobbitLong/RepDistiller, ``models/resnet.py`` (``ResNet(depth, num_filters, 'basicblock')``).
Same modules and state_dict names (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.0``,
``fc``, ...), so its checkpoints load with ``strict=True``. A 3x3 stem, three stages of
``(depth - 2) / 6`` basic blocks (stride 1, 2, 2), an 8x8 average pool (the reference's fixed
``AvgPool2d(8)``: 32x32 inputs expected) and the classifier.

Pre-activation stages (mdistiller's ``preact_feats``, ``models/cifar/resnet.py``): the stem's output
as it is, then for each stage its last block's sum ``bn2(conv2(...)) + shortcut`` before the final ReLU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import nn

from distillbench.models.classifier import Features, Float32Linear
from distillbench.models.zoo.base import ReluBlock, ZooNet, conv_bn, he_init_, run_stage


class BasicBlock(ReluBlock):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the input (through a 1x1 conv + BN when the shape changes), ReLU."""

    def __init__(self, inputs: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1, self.bn1 = conv_bn(inputs, planes, 3, stride)
        self.relu = nn.ReLU(inplace=True)
        self.conv2, self.bn2 = conv_bn(planes, planes, 3)
        self.downsample = (
            nn.Sequential(*conv_bn(inputs, planes, 1, stride)) if stride != 1 or inputs != planes else None
        )

    def preact(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return out + (x if self.downsample is None else self.downsample(x))


class CifarResNet(ZooNet):
    """``depth`` = 6n + 2 layers; ``widths`` = (stem, stage 1, stage 2, stage 3) channels."""

    stage_names = ("stem", "layer1", "layer2", "layer3")  # what forward_features' stages are the outputs of

    def __init__(self, depth: int, widths: Sequence[int], num_classes: int):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"a basic-block CIFAR ResNet has depth 6n + 2, not {depth}")
        blocks = (depth - 2) // 6
        self.conv1, self.bn1 = conv_bn(3, widths[0], 3)
        self.relu = nn.ReLU(inplace=True)
        stages, inputs = [], widths[0]
        for planes, stride in zip(widths[1:], (1, 2, 2)):
            stages.append(nn.Sequential(*(BasicBlock(inputs if i == 0 else planes, planes, stride if i == 0 else 1)
                                          for i in range(blocks))))  # fmt: skip
            inputs = planes
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AvgPool2d(8)
        self.fc = Float32Linear(widths[3], num_classes)
        he_init_(self)

    def forward_features(self, x: torch.Tensor) -> Features:
        x = self.relu(self.bn1(self.conv1(x)))
        stages, preact = [x], [x]
        for stage in (self.layer1, self.layer2, self.layer3):
            x, before = run_stage(stage, x)
            stages.append(x)
            preact.append(before)
        pooled = self.avgpool(x).flatten(1)
        return Features(stages, pooled, self.fc(pooled), preact)


NETWORKS: dict[str, Callable[..., ZooNet]] = {
    **{f"resnet{depth}": partial(CifarResNet, depth, (16, 16, 32, 64)) for depth in (8, 14, 20, 32, 44, 56, 110)},
    "resnet8x4": partial(CifarResNet, 8, (32, 64, 128, 256)),
    "resnet32x4": partial(CifarResNet, 32, (32, 64, 128, 256)),
}
"""name -> ``f(num_classes=...)``, as RepDistiller's constructors of the same names."""
