"""The KD benchmark's CIFAR ResNet-50 (``resnet50_cifar``; RepDistiller's ``ResNet50``).

He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016): the ImageNet ResNet-50's
bottleneck stages (3, 4, 6, 3 blocks of 64 ... 512 x 4 channels) with a 3x3 stride-1 stem and no
max pool, for 32x32 images, as Tian et al., "Contrastive Representation Distillation" (ICLR 2020)
ship it: github.com/HobbitLong/RepDistiller, ``models/resnetv2.py`` (``ResNet50()`` =
``ResNet(Bottleneck, [3, 4, 6, 3])``). Same modules and state_dict names (``conv1``, ``bn1``,
``layer1.0.conv1``, ``layer1.0.shortcut.0``, ``linear``, ...), so its checkpoints load with
``strict=True``. It is distinct from distillbench's ``resnet50`` (torchvision's ImageNet network).
The reference pools adaptively (``AdaptiveAvgPool2d((1, 1))``), so this one does too; 32x32 inputs
are what it was trained on.

Pre-activation stages (mdistiller's ``preact_feats``, ``models/cifar/resnetv2.py``): the stem's output
as it is, then for each stage its last block's sum ``bn3(conv3(...)) + shortcut`` before the final ReLU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from distillbench.models.classifier import Features, Float32Linear
from distillbench.models.zoo.base import ReluBlock, ZooNet, conv_bn, he_init_, run_stage

EXPANSION = 4


class Bottleneck(ReluBlock):
    """1x1-BN-ReLU, 3x3 (strided)-BN-ReLU, 1x1 (x4 channels)-BN, plus the input (through a strided
    1x1 conv + BN when the shape changes), ReLU."""

    def __init__(self, inputs: int, planes: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = conv_bn(inputs, planes, 1)
        self.conv2, self.bn2 = conv_bn(planes, planes, 3, stride)
        self.conv3, self.bn3 = conv_bn(planes, planes * EXPANSION, 1)
        changes = stride != 1 or inputs != planes * EXPANSION
        # An empty Sequential is the identity, as the reference's (and holds no state_dict entry).
        self.shortcut = nn.Sequential(*conv_bn(inputs, planes * EXPANSION, 1, stride)) if changes else nn.Sequential()

    def preact(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out)) + self.shortcut(x)


class ResNetV2(ZooNet):
    """``blocks``: bottleneck blocks in each of the four stages (64, 128, 256, 512 planes)."""

    stage_names = ("stem", "layer1", "layer2", "layer3", "layer4")  # what forward_features' stages are the outputs of

    def __init__(self, blocks: Sequence[int], num_classes: int):
        super().__init__()
        self.conv1, self.bn1 = conv_bn(3, 64, 3)
        inputs, stages = 64, []
        for planes, count, stride in zip((64, 128, 256, 512), blocks, (1, 2, 2, 2)):
            stages.append(nn.Sequential(*(Bottleneck(inputs if i == 0 else planes * EXPANSION, planes,
                                                     stride if i == 0 else 1) for i in range(count))))  # fmt: skip
            inputs = planes * EXPANSION
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.linear = Float32Linear(512 * EXPANSION, num_classes)
        he_init_(self)

    def forward_features(self, x: torch.Tensor) -> Features:
        x = F.relu(self.bn1(self.conv1(x)))
        stages, preact = [x], [x]
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x, before = run_stage(stage, x)
            stages.append(x)
            preact.append(before)
        pooled = self.avgpool(x).flatten(1)
        return Features(stages, pooled, self.linear(pooled), preact)


NETWORKS: dict[str, Callable[..., ZooNet]] = {"resnet50_cifar": partial(ResNetV2, (3, 4, 6, 3))}
"""name -> ``f(num_classes=...)``: RepDistiller's ``ResNet50``."""
