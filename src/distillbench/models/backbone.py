"""Pretrained backbones declared once, as a ``BackboneSpec`` (``models.backbone_spec``), and cut
into a frozen prefix and a fine-tuned body by one builder.

A spec says how to build the torchvision network, where its ImageNet weights are, which state_dict
entries are its classifier (dropped: the study replaces the head), the stages between which the
frozen prefix can be cut, the new head, and which modules' outputs are its feature stages
(``Classifier.forward_features``; they span the frozen prefix and the body). Adding a backbone is
one file with one spec and one ``register_backbone`` line in ``models/__init__.py``.

``trainable_layers`` counts the backbone's trailing *weight-holding* layers (convolutions,
BatchNorms, linears, in module order) that train. Keras' "last N layers unfrozen" counts every
layer, weightless ones included. The authors' notebook builds both Keras bases with
``pooling='avg'`` and freezes ``layers[:-2]``: the last two layers are then weightless (VGG16's
block5_pool and the pooling, ResNet50's last activation and the pooling), so the paper preset trains
no backbone weight (``trainable_layers: 0``); ``trainable_layers: 1`` on VGG16 trains block5_conv3.
"""

from __future__ import annotations

import torch
from torch import nn

from distillbench.config import ModelDef
from distillbench.errors import UserError
from distillbench.models.backbone_spec import BackboneSpec
from distillbench.models.classifier import Classifier, Preprocess, StageLayout, keras_init_, seen_shape
from distillbench.models.weights import load_backbone_weights

__all__ = ["BackboneSpec", "ImageShape", "build_backbone", "split_stages"]

ImageShape = tuple[int, int, int]  # (channels, height, width) of the study's images


def _weight_layers(stage: nn.Module) -> list[nn.Module]:
    return [m for m in stage.modules() if any(True for _ in m.parameters(recurse=False))]


def split_stages(
    stages: list[nn.Module], trainable_layers: int | str, what: str
) -> tuple[list[nn.Module], list[nn.Module]]:
    """Freeze all but the last ``trainable_layers`` weight layers (``all``: none frozen); cut before
    the first that trains."""
    layers = [(index, layer) for index, stage in enumerate(stages) for layer in _weight_layers(stage)]
    if trainable_layers == "all":
        trainable_layers = len(layers)
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


def _output_features(stages: list[nn.Module], image_shape: ImageShape) -> int:
    with torch.no_grad():
        return nn.Sequential(*stages).eval()(torch.zeros(1, *image_shape)).flatten(1).shape[1]


def build_backbone(
    backbone: BackboneSpec, spec: ModelDef, weights: str | None, image_shape: ImageShape, num_classes: int
) -> Classifier:
    """``backbone`` with ``weights`` (imagenet | none | PATH), its head replaced, cut per ``spec``."""
    if image_shape[0] != 3:
        raise UserError(
            f"{backbone.name} takes RGB images (3 channels), but the study's images have {image_shape[0]}; "
            "use an architecture built for them (e.g. small_cnn)."
        )
    net = backbone.network()
    load_backbone_weights(net, backbone, weights or "none")
    stages = backbone.stages(net)
    head = backbone.head(_output_features(stages, seen_shape(image_shape, spec.input_size)), num_classes)
    if spec.init == "keras":
        keras_init_(head)
    prefix, suffix = split_stages(stages, spec.trainable_layers, backbone.name)
    preprocess = Preprocess(spec.input_norm, spec.input_size)
    # The chain [preprocess, *stages, *head] is the same wherever the cut falls: so are the stage paths.
    layout = None
    if backbone.feature_stages is not None:
        layout = StageLayout.at([preprocess, *stages, *head], backbone.feature_stages(net))
    return Classifier(nn.Sequential(preprocess, *prefix), nn.Sequential(*suffix, *head), layout)
