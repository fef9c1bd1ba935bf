"""ImageNet backbones (torchvision) cut into a frozen prefix and a fine-tuned body.

``trainable_layers`` counts the backbone's trailing *weight-holding* layers (convolutions,
BatchNorms, linears, in module order) that train. Keras' "last N layers unfrozen" counts every
layer, weightless ones included. The authors' notebook builds both Keras bases with
``pooling='avg'`` and freezes ``layers[:-2]``: the last two layers are then weightless (VGG16's
block5_pool and the pooling, ResNet50's last activation and the pooling), so the paper preset trains
no backbone weight (``trainable_layers: 0``); ``trainable_layers: 1`` on VGG16 trains block5_conv3.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from distillbench.config import ModelDef
from distillbench.errors import UserError
from distillbench.models.classifier import Classifier, Float32Linear, Preprocess, keras_init_
from distillbench.models.weights import load_backbone_weights


def _weight_layers(stage: nn.Module) -> list[nn.Module]:
    return [m for m in stage.modules() if any(True for _ in m.parameters(recurse=False))]


def split_stages(stages: list[nn.Module], trainable_layers: int, what: str) -> tuple[list[nn.Module], list[nn.Module]]:
    """Freeze all but the last ``trainable_layers`` weight layers; cut before the first that trains."""
    layers = [(index, layer) for index, stage in enumerate(stages) for layer in _weight_layers(stage)]
    if trainable_layers > len(layers):
        raise UserError(
            f"{what}: trainable_layers={trainable_layers}, but the backbone has only {len(layers)} "
            "weight-holding layers; choose a value from 0 to that."
        )
    for stage in stages:
        stage.requires_grad_(False)
    trainable = layers[len(layers) - trainable_layers :] if trainable_layers else []
    for _, layer in trainable:
        for param in layer.parameters(recurse=False):
            param.requires_grad_(True)
    cut = trainable[0][0] if trainable else len(stages)
    return stages[:cut], stages[cut:]


def _output_size(stages: list[nn.Module], image_size: int) -> int:
    with torch.no_grad():
        return nn.Sequential(*stages).eval()(torch.zeros(1, 3, image_size, image_size)).flatten(1).shape[1]


def _assemble(spec: ModelDef, stages: list[nn.Module], head: nn.Sequential, what: str) -> Classifier:
    if spec.init == "keras":
        keras_init_(head)
    prefix, suffix = split_stages(stages, spec.trainable_layers, what)
    return Classifier(nn.Sequential(Preprocess(spec.input_norm), *prefix), nn.Sequential(*suffix, *head))


def build_resnet50(spec: ModelDef, weights: str | None, image_size: int, num_classes: int) -> Classifier:
    """ResNet50 base -> global average pooling -> Dense(classes)."""
    net = torchvision.models.resnet50(weights=None)
    load_backbone_weights(net, "resnet50", weights or "none")
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
    blocks = [*net.layer1, *net.layer2, *net.layer3, *net.layer4]
    stages: list[nn.Module] = [stem, *blocks, nn.Sequential(net.avgpool, nn.Flatten())]
    head = nn.Sequential(Float32Linear(net.fc.in_features, num_classes))
    return _assemble(spec, stages, head, "resnet50")


def build_vgg16(spec: ModelDef, weights: str | None, image_size: int, num_classes: int) -> Classifier:
    """VGG16 convolutional base -> Flatten -> Dense(256, ReLU) -> Dense(classes)."""
    net = torchvision.models.vgg16(weights=None)
    load_backbone_weights(net, "vgg16", weights or "none")
    stages = list(net.features)
    flat = _output_size(stages, image_size)
    head = nn.Sequential(nn.Flatten(), nn.Linear(flat, 256), nn.ReLU(), Float32Linear(256, num_classes))
    return _assemble(spec, stages, head, "vgg16")
