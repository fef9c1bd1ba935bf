"""VGG16 convolutional base -> Flatten -> Dense(256, ReLU) -> Dense(classes), as in the seed paper."""

from __future__ import annotations

import torchvision
from torch import nn

from distillbench.models.backbone_spec import BackboneSpec
from distillbench.models.classifier import Float32Linear


def _head(features: int, classes: int) -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(features, 256), nn.ReLU(), Float32Linear(256, classes))


VGG16 = BackboneSpec(
    name="vgg16",
    network=lambda: torchvision.models.vgg16(weights=None),
    # V1: the classic ImageNet training, the closest match to Keras' applications.
    imagenet=torchvision.models.VGG16_Weights.IMAGENET1K_V1,
    head_prefixes=("classifier.",),
    stages=lambda net: list(net.features),  # every layer: the prefix can end after any of them
    head=_head,
)
