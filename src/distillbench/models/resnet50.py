"""ResNet50 base -> global average pooling -> Dense(classes), as in the seed paper.

Its feature stages: ``stem`` (after the stem's ReLU, before its max-pooling, as timm's ResNet
``feature_info`` and mdistiller's ImageNet ResNets take it), then ``layer1`` .. ``layer4`` (each
layer's last bottleneck's output, post-activation); the embedding is the 2048-wide pooled vector.
"""

from __future__ import annotations

import torchvision
from torch import nn

from distillbench.models.backbone_spec import BackboneSpec
from distillbench.models.classifier import Float32Linear


def _stages(net: torchvision.models.ResNet) -> list[nn.Module]:
    """The stem, each bottleneck block, then the pooling: the prefix can end after any of them."""
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
    blocks = [*net.layer1, *net.layer2, *net.layer3, *net.layer4]
    return [stem, *blocks, nn.Sequential(net.avgpool, nn.Flatten())]


def _feature_stages(net: torchvision.models.ResNet) -> dict[str, nn.Module]:
    return {"stem": net.relu, **{name: getattr(net, name)[-1] for name in ("layer1", "layer2", "layer3", "layer4")}}


RESNET50 = BackboneSpec(
    name="resnet50",
    network=lambda: torchvision.models.resnet50(weights=None),
    # V1: the classic ImageNet training, the closest match to Keras' applications.
    imagenet=torchvision.models.ResNet50_Weights.IMAGENET1K_V1,
    head_prefixes=("fc.",),
    stages=_stages,
    head=lambda features, classes: nn.Sequential(Float32Linear(features, classes)),
    feature_stages=_feature_stages,
)
