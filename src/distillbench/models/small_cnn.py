"""The seed paper's small CNN, trained from scratch.

Its stages (``Classifier.forward_features``): ``block1`` and ``block2``, each conv block's output
after its ReLU, before its max-pooling and dropout (as RepDistiller's VGGs take theirs, and
``vgg16`` here); the embedding is the 256-wide vector the logits layer reads (after the dense
layer's ReLU and dropout).
"""

from __future__ import annotations

from torch import nn

from distillbench.config import ModelDef
from distillbench.models.backbone import ImageShape
from distillbench.models.classifier import (
    Classifier,
    Float32Linear,
    Preprocess,
    StageLayout,
    keras_init_,
    seen_shape,
)
from distillbench.models.layers import Dropout


def small_cnn_body(image_shape: ImageShape, num_classes: int) -> nn.Sequential:
    """Conv(32)-Pool-Drop(.25)-Conv(64)-Pool-Drop(.25)-Dense(256)-Drop(.5)-Dense(classes), valid padding."""
    channels, height, width = image_shape
    height, width = (((side - 2) // 2 - 2) // 2 for side in (height, width))
    # One row per block, as the paper's Keras listing reads: the table is the architecture.
    return nn.Sequential(
        nn.Conv2d(channels, 32, 3), nn.ReLU(), nn.MaxPool2d(2), Dropout(0.25),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2), Dropout(0.25),
        nn.Flatten(), nn.Linear(64 * height * width, 256), nn.ReLU(), Dropout(0.5),
        Float32Linear(256, num_classes),
    )  # fmt: skip


def build_small_cnn(spec: ModelDef, weights: str | None, image_shape: ImageShape, num_classes: int) -> Classifier:
    body = small_cnn_body(seen_shape(image_shape, spec.input_size), num_classes)
    if spec.init == "keras":
        keras_init_(body)
    prefix = nn.Sequential(Preprocess(spec.input_norm, spec.input_size))
    stages = StageLayout.at([*prefix, *body], {"block1": body[1], "block2": body[5]})  # the conv blocks' ReLUs
    return Classifier(prefix, body, stages)
