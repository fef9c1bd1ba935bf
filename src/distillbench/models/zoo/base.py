"""What every network of the CIFAR zoo shares: the ``forward_features`` contract and the reference init.

A ``ZooNet`` computes ``forward_features(x) -> (stage feature maps, pooled embedding, logits)``:
the feature maps are the list RepDistiller's ``forward(x, is_feat=True)`` returns without its last
entry (the post-activation outputs of the stem and of each stage), the pooled embedding is that last
entry (what the classifier reads), and the logits come from a ``Float32Linear``. ``forward(x)``
returns the logits only. Nothing is stored between calls (no hooks, no caches).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class ZooNet(nn.Module):
    """A network of the CIFAR zoo: subclasses define ``forward_features``."""

    arch: str = ""  # its zoo name, set by the builder (for error messages)

    def forward_features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The feature list only holds references to tensors the logits need anyway: no extra work.
        return self.forward_features(x)[2]


def he_init_(net: nn.Module, linear: str = "torch") -> None:
    """RepDistiller's initialisation: convolution kernels from N(0, 2 / (k * k * out_channels)) (its
    ``kaiming_normal_(mode='fan_out')`` and ``normal_(0, sqrt(2 / n))`` are that same law), convolution
    biases zero, BatchNorm weight 1 and bias 0; the linear layers ``torch`` (PyTorch's default, left as
    built), ``zero_bias`` (WRN) or ``normal`` (N(0, 0.01^2) weights, zero bias: VGG, MobileNetV2)."""
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            fan_out = module.out_channels * module.kernel_size[0] * module.kernel_size[1]
            nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear) and linear != "torch":
            if linear == "normal":
                nn.init.normal_(module.weight, 0.0, 0.01)
            nn.init.zeros_(module.bias)


def conv_bn(inputs: int, outputs: int, kernel: int, stride: int = 1, groups: int = 1) -> tuple[nn.Module, ...]:
    """A bias-free ``kernel`` x ``kernel`` convolution ('same' padding) and its BatchNorm."""
    conv = nn.Conv2d(inputs, outputs, kernel, stride, kernel // 2, groups=groups, bias=False)
    return conv, nn.BatchNorm2d(outputs)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """[N, g*c, H, W] -> [N, c*g, H, W]: channel i of group j goes to position i*g + j (ShuffleNet)."""
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)
