"""Architectures found by name (``zoo.<key>.arch``).

Add an architecture with ``register_architecture(name, builder)``, or a pretrained backbone (which
takes ``weights.<name>`` in the config) with ``register_backbone(spec)``: one file declaring it,
one line below. Both registries are ``registry.Registry``s: a name registers once, and
``study.resolve`` checks the config's names against them with the same error as every other kind.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from distillbench.config import ModelDef
from distillbench.models.backbone import ImageShape, build_backbone
from distillbench.models.backbone_spec import BackboneSpec
from distillbench.models.classifier import Classifier
from distillbench.registry import Registry

Builder = Callable[[ModelDef, "str | None", ImageShape, int], Classifier]
ARCHITECTURES: Registry[Builder] = Registry("architecture")
# The architectures that take pretrained weights (weights.<arch>), each also in ARCHITECTURES.
BACKBONES: Registry[BackboneSpec] = Registry("pretrained backbone")


def register_architecture(name: str, builder: Builder) -> None:
    """``builder(spec, weights, image_shape, num_classes)`` builds ``zoo.<key>.arch: name``."""
    ARCHITECTURES.register(name, builder)


def register_backbone(backbone: BackboneSpec) -> None:
    """A pretrained backbone: an architecture of the same name whose weights the config gives."""
    if backbone.name in BACKBONES:  # checked first: a refused backbone leaves no architecture behind
        raise ValueError(f"pretrained backbone {backbone.name!r} is already registered")
    register_architecture(backbone.name, partial(build_backbone, backbone))
    BACKBONES.register(backbone.name, backbone)


def build_model(spec: ModelDef, weights: str | None, image_shape: ImageShape, num_classes: int) -> Classifier:
    """Build ``spec.arch``; ``weights`` (imagenet | none | PATH) applies to pretrained backbones."""
    return ARCHITECTURES[spec.arch](spec, weights, image_shape, num_classes)


def _register_builtins() -> None:
    from distillbench.models.resnet50 import RESNET50
    from distillbench.models.small_cnn import build_small_cnn
    from distillbench.models.timm_model import build_timm
    from distillbench.models.vgg16 import VGG16
    from distillbench.models.zoo import ARCHITECTURES_OF_THE_ZOO

    register_architecture("small_cnn", build_small_cnn)
    register_backbone(RESNET50)
    register_backbone(VGG16)
    register_architecture("timm", build_timm)
    for name, builder in ARCHITECTURES_OF_THE_ZOO.items():
        register_architecture(name, builder)


_register_builtins()
