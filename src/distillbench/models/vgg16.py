"""VGG16 convolutional base -> Flatten -> Dense(256, ReLU) -> Dense(classes), as in the seed paper.

Its feature stages: ``block1`` .. ``block5``, each block's output after its last ReLU, *before* its
max-pooling (as RepDistiller's and mdistiller's CIFAR VGGs take theirs: ``f0 = relu(block0(x))``,
then ``pool0``); the embedding is the 256-wide vector the logits layer reads (the new head's hidden
layer, after its ReLU), since the logits layer reads that, not the pooled convolutional features.
"""

from __future__ import annotations

import torchvision
from torch import nn

from distillbench.models.backbone_spec import BackboneSpec
from distillbench.models.classifier import Float32Linear


def _head(features: int, classes: int) -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(features, 256), nn.ReLU(), Float32Linear(256, classes))


def _feature_stages(net: torchvision.models.VGG) -> dict[str, nn.Module]:
    """Each block's last ReLU: the module before each max-pooling of ``net.features``."""
    layers = list(net.features)
    ends = [layers[i - 1] for i, layer in enumerate(layers) if isinstance(layer, nn.MaxPool2d)]
    return {f"block{n}": layer for n, layer in enumerate(ends, start=1)}


VGG16 = BackboneSpec(
    name="vgg16",
    network=lambda: torchvision.models.vgg16(weights=None),
    # V1: the classic ImageNet training, the closest match to Keras' applications.
    imagenet=torchvision.models.VGG16_Weights.IMAGENET1K_V1,
    head_prefixes=("classifier.",),
    stages=lambda net: list(net.features),  # every layer: the prefix can end after any of them
    head=_head,
    feature_stages=_feature_stages,
)
