"""Wide residual networks (wrn_16_1, wrn_16_2, wrn_40_1, wrn_40_2) of the KD benchmark.

Zagoruyko and Komodakis, "Wide Residual Networks" (BMVC 2016), as Tian et al., "Contrastive
Representation Distillation" (ICLR 2020) ship them: github.com/HobbitLong/RepDistiller,
``models/wrn.py`` (``WideResNet(depth, num_classes, widen_factor)``). Same modules and state_dict
names (``conv1``, ``block1.layer.0.bn1``, ``block1.layer.0.convShortcut``, ``bn1``, ``fc``, ...), so
its checkpoints load with ``strict=True``. Pre-activation blocks, three stages of ``(depth - 4) / 6``
blocks with 16k, 32k, 64k channels, a final BN-ReLU, an 8x8 average pool (the reference's fixed
``avg_pool2d(out, 8)``: 32x32 inputs expected) and the classifier. The benchmark's dropout rate is 0,
so the blocks have no dropout.

Pre-activation stages (mdistiller's ``preact_feats``, ``models/cifar/wrn.py``): the stem's
convolution as it is, then each stage's output through the BN that the next stage's first block
(``block2.layer.0.bn1``, ``block3.layer.0.bn1``) or the final ``bn1`` applies to it before a ReLU.
Those BNs run once per forward pass here, their outputs shared by the next stage (so in train mode
their running statistics are updated once per batch, as in RepDistiller; mdistiller computes the
pre-activation maps by calling each BN a second time, which updates its statistics twice).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from distillbench.models.classifier import Features, Float32Linear
from distillbench.models.zoo.base import ZooNet, he_init_


def _conv(inputs: int, outputs: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(inputs, outputs, kernel, stride, kernel // 2, bias=False)


class BasicBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus the input; when the width changes, the shortcut is a
    1x1 convolution of the *activated* input (as the reference computes it)."""

    def __init__(self, inputs: int, outputs: int, stride: int):
        super().__init__()
        self.bn1, self.relu1 = nn.BatchNorm2d(inputs), nn.ReLU(inplace=True)
        self.conv1 = _conv(inputs, outputs, 3, stride)
        self.bn2, self.relu2 = nn.BatchNorm2d(outputs), nn.ReLU(inplace=True)
        self.conv2 = _conv(outputs, outputs, 3)
        self.convShortcut = _conv(inputs, outputs, 1, stride) if inputs != outputs else None

    def forward(self, x: torch.Tensor, normalised: torch.Tensor | None = None) -> torch.Tensor:
        """``normalised``: ``bn1(x)`` if the caller has computed it (it is kept: no in-place ReLU on it)."""
        activated = self.relu1(self.bn1(x)) if normalised is None else F.relu(normalised)
        out = self.conv2(self.relu2(self.bn2(self.conv1(activated))))
        return out + (x if self.convShortcut is None else self.convShortcut(activated))


class NetworkBlock(nn.Module):
    """One stage; the wrapper exists for the state_dict names (``block1.layer.0...``)."""

    def __init__(self, blocks: int, inputs: int, outputs: int, stride: int):
        super().__init__()
        self.layer = nn.Sequential(
            *(BasicBlock(inputs if i == 0 else outputs, outputs, stride if i == 0 else 1) for i in range(blocks))
        )

    def forward(self, x: torch.Tensor, normalised: torch.Tensor | None = None) -> torch.Tensor:
        """``normalised``: the first block's ``bn1(x)``, if the caller has computed it."""
        first, *rest = self.layer
        x = first(x, normalised)
        for block in rest:
            x = block(x)
        return x


class WideResNet(ZooNet):
    """WRN-``depth``-``widen_factor``: ``depth`` = 6n + 4."""

    stage_names = ("stem", "block1", "block2", "block3")  # what forward_features' stages are the outputs of

    def __init__(self, depth: int, widen_factor: int, num_classes: int):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"a wide ResNet has depth 6n + 4, not {depth}")
        blocks, widths = (depth - 4) // 6, [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = _conv(3, widths[0], 3)
        self.block1 = NetworkBlock(blocks, widths[0], widths[1], 1)
        self.block2 = NetworkBlock(blocks, widths[1], widths[2], 2)
        self.block3 = NetworkBlock(blocks, widths[2], widths[3], 2)
        self.bn1, self.relu = nn.BatchNorm2d(widths[3]), nn.ReLU(inplace=True)
        self.fc = Float32Linear(widths[3], num_classes)
        he_init_(self, linear="zero_bias")

    def forward_features(self, x: torch.Tensor) -> Features:
        # As the reference: the stem's convolution and each stage's output, before any BN-ReLU; the
        # pre-activation maps are those outputs through the BN that follows them (the next stage's
        # first bn1, the final bn1), computed once and handed on.
        x = self.conv1(x)
        stages, preact, normalised = [x], [x], None
        following = (self.block2.layer[0].bn1, self.block3.layer[0].bn1, self.bn1)
        for stage, bn in zip((self.block1, self.block2, self.block3), following):
            x = stage(x, normalised)
            normalised = bn(x)
            stages.append(x)
            preact.append(normalised)
        pooled = F.avg_pool2d(F.relu(normalised), 8).flatten(1)
        return Features(stages, pooled, self.fc(pooled), preact)


NETWORKS: dict[str, Callable[..., ZooNet]] = {
    f"wrn_{depth}_{width}": partial(WideResNet, depth, width) for depth in (16, 40) for width in (1, 2)
}
"""name -> ``f(num_classes=...)``, as RepDistiller's constructors of the same names."""
