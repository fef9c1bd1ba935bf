"""What every network of the CIFAR zoo shares: the ``forward_features`` contract and the reference init.

A ``ZooNet`` computes ``forward_features(x) -> Features(stages, embedding, logits, preact_stages)``
(``models.classifier.Features``): the stages are the feature maps RepDistiller's
``forward(x, is_feat=True)`` returns without its last entry (mdistiller's ``feats["feats"]``: the
outputs of the stem and of each stage, post-activation), the embedding is that last entry (what the
classifier reads; mdistiller's ``feats["pooled_feat"]``), the logits come from a ``Float32Linear``,
and ``preact_stages`` are mdistiller's ``feats["preact_feats"]`` (the same maps before their last
activation, the stem's unchanged; ReviewKD's teacher targets), None where mdistiller has none
(MobileNetV2). Each family's module says what its pre-activation maps are; they are values the
forward pass computes anyway (a stage's last block returns its output and its pre-activation), so
they cost next to nothing (ShuffleNetV2: one concatenation per stage). ``forward(x)`` returns the
logits only. Nothing is stored between calls (no hooks, no caches).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from distillbench.models.classifier import Features


class ZooNet(nn.Module):
    """A network of the CIFAR zoo: subclasses define ``forward_features``."""

    arch: str = ""  # its zoo name, set by the builder (for error messages)
    stage_names: tuple[str, ...] = ()  # its stages' names, in the order forward_features lists them

    def forward_features(self, x: torch.Tensor) -> Features:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The feature lists only hold references to tensors the logits need anyway: no extra work.
        return self.forward_features(x).logits


class ReluBlock(nn.Module):
    """A block whose output is ``relu(preact(x))``: subclasses define ``preact``."""

    def preact(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.preact(x))

    def forward_and_preact(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        preact = self.preact(x)
        return F.relu(preact), preact


def run_stage(stage: nn.Sequential, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A stage's output and its last block's pre-activation output (``forward_and_preact``): what
    mdistiller's blocks built with ``is_last=True`` return."""
    *blocks, last = stage
    for block in blocks:
        x = block(x)
    return last.forward_and_preact(x)


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
