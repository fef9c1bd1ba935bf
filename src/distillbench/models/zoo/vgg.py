"""VGG with BatchNorm (vgg8_bn, vgg11_bn, vgg13_bn, vgg16_bn, vgg19_bn) of the KD benchmark.

Simonyan and Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition"
(ICLR 2015), cut down for CIFAR (no hidden fully connected layers) as Tian et al., "Contrastive
Representation Distillation" (ICLR 2020) ship it: github.com/HobbitLong/RepDistiller,
``models/vgg.py`` (``VGG(cfg[...], batch_norm=True)``). Same modules and state_dict names
(``block0.0`` conv with bias, ``block0.1`` BN, ..., ``classifier``), so its checkpoints load with
``strict=True``. Five blocks of conv-BN-ReLU layers (each block's last ReLU applied outside it),
max pools between them, a global average pool and the classifier. As the reference, the pool after
the fourth block runs only on 64-pixel-high inputs: at 32x32 the last block sees 4x4 maps.

Pre-activation stages (mdistiller's ``preact_feats``, ``models/cifar/vgg.py``): the first block's
output after its ReLU (as in the stages), then blocks 1 to 4's outputs before their ReLU (their last BN's).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from distillbench.models.classifier import Features, Float32Linear
from distillbench.models.zoo.base import ZooNet, he_init_

# The reference's configurations: each block's output channels, one entry per conv layer.
CONFIGS = {
    "vgg8_bn": ((64,), (128,), (256,), (512,), (512,)),
    "vgg11_bn": ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    "vgg13_bn": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    "vgg16_bn": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    "vgg19_bn": ((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512), (512, 512, 512, 512)),
}


def _block(inputs: int, widths: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in widths:
        layers += [nn.Conv2d(inputs, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        inputs = width
    return nn.Sequential(*layers[:-1])  # the block ends at a BN: forward_features applies the ReLU


class VGG(ZooNet):
    """``config``: five tuples of conv widths, one per block."""

    stage_names = ("block0", "block1", "block2", "block3", "block4")  # what forward_features' stages are the outputs of

    def __init__(self, config: Sequence[Sequence[int]], num_classes: int):
        super().__init__()
        inputs = (3, *(widths[-1] for widths in config[:-1]))
        for index, (channels, widths) in enumerate(zip(inputs, config)):
            self.add_module(f"block{index}", _block(channels, widths))
        for index in range(4):
            self.add_module(f"pool{index}", nn.MaxPool2d(kernel_size=2, stride=2))
        self.pool4 = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = Float32Linear(config[-1][-1], num_classes)
        he_init_(self, linear="normal")

    def forward_features(self, x: torch.Tensor) -> Features:
        height, stages, preact = x.shape[2], [], []
        for index in range(5):
            # The reference pools before block4 only on 64-pixel-high inputs: at 32x32 it sees 4x4 maps.
            if 0 < index and (index < 4 or height == 64):
                x = getattr(self, f"pool{index - 1}")(x)
            before = getattr(self, f"block{index}")(x)
            x = F.relu(before)
            stages.append(x)
            preact.append(x if index == 0 else before)  # the reference's f0 is post-activation
        pooled = self.pool4(x).flatten(1)
        return Features(stages, pooled, self.classifier(pooled), preact)


NETWORKS: dict[str, Callable[..., ZooNet]] = {name: partial(VGG, config) for name, config in CONFIGS.items()}
"""name -> ``f(num_classes=...)``, as RepDistiller's constructors of the same names."""
