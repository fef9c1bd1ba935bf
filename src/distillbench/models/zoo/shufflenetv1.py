"""ShuffleNet V1 (``shufflenetv1``; RepDistiller's ``ShuffleV1``) for CIFAR.

Zhang et al., "ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile Devices"
(CVPR 2018), in the CIFAR variant Tian et al., "Contrastive Representation Distillation" (ICLR 2020)
ship: github.com/HobbitLong/RepDistiller, ``models/ShuffleNetv1.py`` (``ShuffleV1()``: 3 groups,
stages of 240, 480, 960 channels with 4, 8, 4 blocks). Same modules and state_dict names (``conv1``,
``bn1``, ``layer1.0.conv1``, ..., ``linear``), so its checkpoints load with ``strict=True``. A 1x1
stem (no downsampling), three stages each opened by a stride-2 block whose shortcut (a 3x3 average
pool) is concatenated, a 4x4 average pool (the reference's fixed ``avg_pool2d(out, 4)``: 32x32
inputs expected) and the classifier.

Pre-activation stages (mdistiller's ``preact_feats``, ``models/cifar/ShuffleNetv1.py``): the stem's
output as it is, then for each stage its last block's sum ``bn3(conv3(...)) + x`` before the final
ReLU (every stage ends in a stride-1 block).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from distillbench.models.classifier import Features, Float32Linear
from distillbench.models.zoo.base import ReluBlock, ZooNet, channel_shuffle, conv_bn, run_stage


class Bottleneck(ReluBlock):
    """Grouped 1x1-BN-ReLU, channel shuffle, 3x3 depthwise-BN-ReLU, grouped 1x1-BN; added to the
    input (stride 1) or concatenated with its 3x3 average pool (stride 2); ReLU."""

    def __init__(self, inputs: int, outputs: int, stride: int, groups: int):
        super().__init__()
        self.stride, hidden = stride, outputs // 4
        # The stem's 24 channels do not split into 3 groups: the reference's first 1x1 there is dense.
        self.first_groups = 1 if inputs == 24 else groups
        self.conv1, self.bn1 = conv_bn(inputs, hidden, 1, groups=self.first_groups)
        self.conv2, self.bn2 = conv_bn(hidden, hidden, 3, stride, groups=hidden)
        self.conv3, self.bn3 = conv_bn(hidden, outputs, 1, groups=groups)

    def preact(self, x: torch.Tensor) -> torch.Tensor:
        out = channel_shuffle(F.relu(self.bn1(self.conv1(x))), self.first_groups)
        out = self.bn3(self.conv3(F.relu(self.bn2(self.conv2(out)))))
        if self.stride == 2:
            return torch.cat([out, F.avg_pool2d(x, 3, stride=2, padding=1)], 1)
        return out + x


class ShuffleNetV1(ZooNet):
    """``widths``: each stage's output channels; ``blocks``: each stage's block count."""

    stage_names = ("stem", "layer1", "layer2", "layer3")  # what forward_features' stages are the outputs of

    def __init__(self, widths: Sequence[int], blocks: Sequence[int], groups: int, num_classes: int):
        super().__init__()
        self.conv1, self.bn1 = conv_bn(3, 24, 1)
        inputs, stages = 24, []
        for width, count in zip(widths, blocks):
            # The stride-2 block's branch makes only what the concatenated shortcut does not bring.
            stage = [Bottleneck(inputs, width - inputs, 2, groups)]
            stage += [Bottleneck(width, width, 1, groups) for _ in range(count - 1)]
            stages.append(nn.Sequential(*stage))
            inputs = width
        self.layer1, self.layer2, self.layer3 = stages
        self.linear = Float32Linear(widths[-1], num_classes)

    def forward_features(self, x: torch.Tensor) -> Features:
        x = F.relu(self.bn1(self.conv1(x)))
        stages, preact = [x], [x]
        for stage in (self.layer1, self.layer2, self.layer3):
            x, before = run_stage(stage, x)
            stages.append(x)
            preact.append(before)
        pooled = F.avg_pool2d(x, 4).flatten(1)
        return Features(stages, pooled, self.linear(pooled), preact)


NETWORKS: dict[str, Callable[..., ZooNet]] = {
    "shufflenetv1": partial(ShuffleNetV1, (240, 480, 960), (4, 8, 4), 3),
}
"""name -> ``f(num_classes=...)``: RepDistiller's ``ShuffleV1``. It keeps PyTorch's default init, as the reference."""
