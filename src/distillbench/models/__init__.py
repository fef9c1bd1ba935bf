"""Architectures found by name. Add one with ``register_architecture``."""

from __future__ import annotations

from collections.abc import Callable

from distillbench.config import ModelDef
from distillbench.models.classifier import Classifier

Builder = Callable[[ModelDef, "str | None", int, int], Classifier]
ARCHITECTURES: dict[str, Builder] = {}
BACKBONES: set[str] = set()  # architectures that take pretrained weights (config: weights.<arch>)


def register_architecture(name: str, builder: Builder, pretrained: bool = False) -> None:
    ARCHITECTURES[name] = builder
    if pretrained:
        BACKBONES.add(name)


def build_model(spec: ModelDef, weights: str | None, image_size: int, num_classes: int) -> Classifier:
    """Build ``spec.arch``; ``weights`` (imagenet | none | PATH) applies to pretrained backbones."""
    return ARCHITECTURES[spec.arch](spec, weights, image_size, num_classes)


def _register_builtins() -> None:
    from distillbench.models.backbones import build_resnet50, build_vgg16
    from distillbench.models.small_cnn import build_small_cnn

    register_architecture("small_cnn", build_small_cnn)
    register_architecture("resnet50", build_resnet50, pretrained=True)
    register_architecture("vgg16", build_vgg16, pretrained=True)


_register_builtins()
