"""ShuffleNet V2 1x (``shufflenetv2``; RepDistiller's ``ShuffleV2``) for CIFAR.

Ma et al., "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design" (ECCV 2018),
in the CIFAR variant Tian et al., "Contrastive Representation Distillation" (ICLR 2020) ship:
github.com/HobbitLong/RepDistiller, ``models/ShuffleNetv2.py`` (``ShuffleV2()`` = ``ShuffleNetV2(net_size=1)``:
stages of 116, 232, 464 channels with 3, 7, 3 basic blocks, a 1024-channel last convolution). Same
modules and state_dict names (``conv1``, ``layer1.0.conv1`` (the down block), ``layer1.1.conv1``,
``conv2``, ``bn2``, ``linear``, ...), so its checkpoints load with ``strict=True``. A 1x1 stem (no
downsampling), three stages each opened by a stride-2 down block, a 1x1 convolution, a 4x4 average
pool (the reference's fixed ``avg_pool2d(out, 4)``: 32x32 inputs expected) and the classifier.

Pre-activation stages (mdistiller's ``preact_feats``, ``models/cifar/ShuffleNetv2.py``): the stem's
output as it is, then for each stage its last basic block's ``cat([kept half, bn3(conv3(...))])``,
i.e. the output before its ReLU *and before its channel shuffle*, as mdistiller returns it (so
``shuffle(relu(preact))``, not ``relu(preact)``, is the stage output).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from distillbench.models.classifier import Features, Float32Linear
from distillbench.models.zoo.base import ZooNet, channel_shuffle, conv_bn, run_stage


class BasicBlock(nn.Module):
    """Split the channels in halves; the second goes through 1x1-BN-ReLU, 3x3 depthwise-BN,
    1x1-BN-ReLU; concatenate with the first; shuffle in two groups."""

    def __init__(self, channels: int):
        super().__init__()
        half = channels // 2
        self.conv1, self.bn1 = conv_bn(half, half, 1)
        self.conv2, self.bn2 = conv_bn(half, half, 3, groups=half)
        self.conv3, self.bn3 = conv_bn(half, half, 1)

    def _halves(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The kept half and the branch's output before its last ReLU."""
        kept, branch = x.split([x.shape[1] // 2, x.shape[1] - x.shape[1] // 2], dim=1)
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(branch)))))
        return kept, self.bn3(self.conv3(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept, out = self._halves(x)
        return channel_shuffle(torch.cat([kept, F.relu(out)], 1), 2)

    def forward_and_preact(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The output and ``cat([kept, branch before its ReLU])``, unshuffled (mdistiller's preact)."""
        kept, out = self._halves(x)
        return channel_shuffle(torch.cat([kept, F.relu(out)], 1), 2), torch.cat([kept, out], 1)


class DownBlock(nn.Module):
    """Two stride-2 branches, each making half the outputs: 3x3 depthwise-BN, 1x1-BN-ReLU (left);
    1x1-BN-ReLU, 3x3 depthwise-BN, 1x1-BN-ReLU (right); concatenated and shuffled in two groups."""

    def __init__(self, inputs: int, outputs: int):
        super().__init__()
        half = outputs // 2
        self.conv1, self.bn1 = conv_bn(inputs, inputs, 3, 2, groups=inputs)
        self.conv2, self.bn2 = conv_bn(inputs, half, 1)
        self.conv3, self.bn3 = conv_bn(inputs, half, 1)
        self.conv4, self.bn4 = conv_bn(half, half, 3, 2, groups=half)
        self.conv5, self.bn5 = conv_bn(half, half, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = F.relu(self.bn2(self.conv2(self.bn1(self.conv1(x)))))
        right = self.bn4(self.conv4(F.relu(self.bn3(self.conv3(x)))))
        right = F.relu(self.bn5(self.conv5(right)))
        return channel_shuffle(torch.cat([left, right], 1), 2)


class ShuffleNetV2(ZooNet):
    """``widths``: the three stages' channels and the last convolution's; ``blocks``: basic blocks per stage."""

    stage_names = ("stem", "layer1", "layer2", "layer3")  # what forward_features' stages are the outputs of

    def __init__(self, widths: Sequence[int], blocks: Sequence[int], num_classes: int):
        super().__init__()
        self.conv1, self.bn1 = conv_bn(3, 24, 1)
        inputs, stages = 24, []
        for width, count in zip(widths[:3], blocks):
            stages.append(nn.Sequential(DownBlock(inputs, width), *(BasicBlock(width) for _ in range(count))))
            inputs = width
        self.layer1, self.layer2, self.layer3 = stages
        self.conv2, self.bn2 = conv_bn(widths[2], widths[3], 1)
        self.linear = Float32Linear(widths[3], num_classes)

    def forward_features(self, x: torch.Tensor) -> Features:
        x = F.relu(self.bn1(self.conv1(x)))
        stages, preact = [x], [x]
        for stage in (self.layer1, self.layer2, self.layer3):
            x, before = run_stage(stage, x)
            stages.append(x)
            preact.append(before)
        pooled = F.avg_pool2d(F.relu(self.bn2(self.conv2(x))), 4).flatten(1)
        return Features(stages, pooled, self.linear(pooled), preact)


NETWORKS: dict[str, Callable[..., ZooNet]] = {
    "shufflenetv2": partial(ShuffleNetV2, (116, 232, 464, 1024), (3, 7, 3)),
}
"""name -> ``f(num_classes=...)``: RepDistiller's ``ShuffleV2``. It keeps PyTorch's default init, as the reference."""
