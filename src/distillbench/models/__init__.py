"""Architectures found by name (``zoo.<key>.arch``).

Add an architecture with ``register_architecture(name, builder)``, or a pretrained backbone (which
takes ``weights.<name>`` in the config) with ``register_backbone(spec)``: one file declaring it,
one line below. Both registries are ``registry.Registry``s: a name registers once, and
``study.resolve`` checks the config's names against them with the same error as every other kind.

An architecture *declares its stages* when registered with ``stages=True`` (a backbone: when its
spec has ``feature_stages``): its classifiers' ``forward_features`` returns the stage outputs, the
embedding and the logits. Feature distillation methods take only such architectures
(``declares_stages``, asked when the config is checked, before anything is built).
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


# The builders registered with stages=True, by name: a flag that holds for that very builder only, so
# an entry replaced in ARCHITECTURES (a test's stand-in) does not inherit it.
_STAGED: dict[str, Builder] = {}


def register_architecture(name: str, builder: Builder, *, stages: bool = False) -> None:
    """``builder(spec, weights, image_shape, num_classes)`` builds ``zoo.<key>.arch: name``.
    ``stages=True``: its classifiers declare their stages (``Classifier.forward_features`` returns
    them: a ``StageLayout`` given to the ``Classifier``, or a network with its own ``forward_features``)."""
    ARCHITECTURES.register(name, builder)
    if stages:
        _STAGED[name] = builder
    else:
        _STAGED.pop(name, None)


def declares_stages(name: str) -> bool:
    """Whether architecture ``name`` is registered and declares its stages (feature methods need it)."""
    return name in ARCHITECTURES and _STAGED.get(name) is ARCHITECTURES[name]


def staged_architectures() -> list[str]:
    """The registered architectures that declare their stages, in registration order."""
    return [name for name in ARCHITECTURES if declares_stages(name)]


def register_backbone(backbone: BackboneSpec) -> None:
    """A pretrained backbone: an architecture of the same name whose weights the config gives."""
    if backbone.name in BACKBONES:  # checked first: a refused backbone leaves no architecture behind
        raise ValueError(f"pretrained backbone {backbone.name!r} is already registered")
    register_architecture(backbone.name, partial(build_backbone, backbone), stages=backbone.feature_stages is not None)
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

    register_architecture("small_cnn", build_small_cnn, stages=True)
    register_backbone(RESNET50)
    register_backbone(VGG16)
    register_architecture("timm", build_timm, stages=True)  # a model without feature_info has none
    for name, builder in ARCHITECTURES_OF_THE_ZOO.items():
        register_architecture(name, builder, stages=True)


_register_builtins()
