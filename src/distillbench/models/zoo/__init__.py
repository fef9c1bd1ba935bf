"""The CIFAR knowledge-distillation zoo: RepDistiller's ``models/`` (which mdistiller reuses under
``mdistiller/models/cifar/``) as distillbench architectures.

Source: Tian, Krishnan and Isola, "Contrastive Representation Distillation" (ICLR 2020),
github.com/HobbitLong/RepDistiller, ``models/__init__.py`` (``model_dict``) and the files it imports;
the same networks are Zhao et al.'s, "Decoupled Knowledge Distillation" (CVPR 2022),
github.com/megvii-research/mdistiller. The code is written anew, but each network has the
reference's modules, parameter and buffer names, shapes and forward computation, so the released
teacher checkpoints (``torch.load(path)['model']``) load with ``strict=True``
(``load_reference_state``). Names (``zoo.<key>.arch``), from RepDistiller's ``model_dict`` where
distillbench has no other network of that name:

======================================  ===========================  ============================================
distillbench arch                       RepDistiller ``model_dict``  module here
======================================  ===========================  ============================================
resnet8 14 20 32 44 56 110              same                         ``resnet``
resnet8x4, resnet32x4                   same                         ``resnet``
wrn_16_1, wrn_16_2, wrn_40_1, wrn_40_2  same                         ``wrn``
vgg8_bn ... vgg19_bn                    vgg8 ... vgg19               ``vgg`` (``vgg16`` is torchvision's)
mobilenetv2                             MobileNetV2 (mobile_half)    ``mobilenetv2``
shufflenetv1                            ShuffleV1                    ``shufflenetv1``
shufflenetv2                            ShuffleV2                    ``shufflenetv2``
resnet50_cifar                          ResNet50 (resnetv2.py)       ``resnetv2`` (``resnet50`` is torchvision's)
======================================  ===========================  ============================================

Contract of every builder ``builder(spec, weights, image_shape, num_classes) -> Classifier``:

- the classifier is ``Classifier(prefix=Sequential(Preprocess(spec.input_norm, spec.input_size)),
  body=Body(net))``: the whole network is the body's one module, so its state_dict keys are
  ``body.0.<RepDistiller's names>``; ``zoo_network(classifier)`` returns ``net``. Everything trains
  (``trainable_layers`` applies to pretrained backbones only);
- ``net(x)`` returns float32 logits (the last layer is a ``Float32Linear``);
  ``net.forward_features(x)`` returns ``Features(stages, embedding, logits, preact_stages)``
  (``models.classifier.Features``; ``base`` states the contract): the stages are the stem's and each
  stage's outputs as RepDistiller's ``forward(x, is_feat=True)`` lists them (post-activation;
  mdistiller's ``feats["feats"]``), the embedding the vector the classifier reads (the list's last
  entry there; ``feats["pooled_feat"]``), and ``preact_stages`` the same maps before their last
  activation exactly as mdistiller's ``feats["preact_feats"]`` (each family's module defines them;
  None for ``mobilenetv2``, for which mdistiller has none);
- ``spec.init == "torch"``: the reference's initialisation (He-normal convolutions, BatchNorm 1 and 0,
  each family's linear init; ShuffleNets: PyTorch's defaults). ``spec.init == "keras"`` (the
  project's default): that, then ``keras_init_`` (Glorot-uniform kernels, zero biases) over every
  convolution and linear layer, as for every from-scratch model of the study;
- ``weights`` is ignored: checkpoints are loaded by ``models.weights`` through
  ``load_reference_state``;
- RGB images only (3 channels, else ``UserError``); ``num_classes`` sizes the head. The networks
  are for 32x32 images (``input_norm: cifar100``, the mean/std they were trained with): they keep
  the reference's fixed pooling sizes, so other sizes give other (or failing) shapes, as there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial

import torch
from torch import nn

from distillbench.config import ModelDef
from distillbench.errors import UserError
from distillbench.models.classifier import Body, Classifier, Preprocess, keras_init_
from distillbench.models.zoo import mobilenetv2, resnet, resnetv2, shufflenetv1, shufflenetv2, vgg, wrn
from distillbench.models.zoo.base import ZooNet

__all__ = ["ARCHITECTURES_OF_THE_ZOO", "NETWORKS", "ZooNet", "build_zoo_model", "load_reference_state", "zoo_network"]

NETWORKS: dict[str, Callable[..., ZooNet]] = {
    **resnet.NETWORKS,
    **wrn.NETWORKS,
    **vgg.NETWORKS,
    **mobilenetv2.NETWORKS,
    **shufflenetv1.NETWORKS,
    **shufflenetv2.NETWORKS,
    **resnetv2.NETWORKS,
}
"""arch name -> ``f(num_classes=...)`` building the bare network."""

# RepDistiller's model_dict names that differ from ours, for error messages.
REFERENCE_NAMES = {
    "vgg8_bn": "vgg8",
    "vgg11_bn": "vgg11",
    "vgg13_bn": "vgg13",
    "vgg16_bn": "vgg16",
    "vgg19_bn": "vgg19",
    "mobilenetv2": "MobileNetV2",
    "shufflenetv1": "ShuffleV1",
    "shufflenetv2": "ShuffleV2",
    "resnet50_cifar": "ResNet50",
}


def build_zoo_model(
    name: str, spec: ModelDef, weights: str | None, image_shape: tuple[int, int, int], num_classes: int
) -> Classifier:
    """The zoo network ``name`` as a classifier (the module docstring's contract); ``weights`` is ignored."""
    if image_shape[0] != 3:
        raise UserError(
            f"{name} takes RGB images (3 channels), but the study's images have {image_shape[0]}; "
            "use an architecture built for them (e.g. small_cnn)."
        )
    if spec.input_norm == "pretrained":
        raise UserError(
            f"input_norm: pretrained applies to arch timm only; {name} was trained on CIFAR-100 pixels "
            "normalised with input_norm: cifar100."
        )
    net = NETWORKS[name](num_classes=num_classes)
    net.arch = name
    if spec.init == "keras":
        keras_init_(net)
    return Classifier(nn.Sequential(Preprocess(spec.input_norm, spec.input_size)), Body(net))


ARCHITECTURES_OF_THE_ZOO: dict[str, Callable[[ModelDef, str | None, tuple[int, int, int], int], Classifier]] = {
    name: partial(build_zoo_model, name) for name in NETWORKS
}


def zoo_network(classifier: Classifier) -> ZooNet:
    """The network inside a zoo classifier (``classifier.body[0]``): what checkpoints load into."""
    net = classifier.body[0] if len(classifier.body) == 1 else None
    if not isinstance(net, ZooNet):
        raise UserError(
            "RepDistiller/mdistiller checkpoints load into the CIFAR zoo's architectures only "
            f"({', '.join(NETWORKS)}); this model is not one of them."
        )
    return net


def _at_most_4(keys: list[str]) -> str:
    return ", ".join(keys[:4]) + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")


def load_reference_state(classifier: Classifier, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load a RepDistiller/mdistiller state_dict (``torch.load(path)['model']``) into the zoo network
    of ``classifier`` with ``strict=True``; a state_dict saved through ``nn.DataParallel`` (every key
    prefixed ``module.``) loads too. A mismatch raises ``UserError`` naming up to 4 missing,
    unexpected and wrong-shape entries each."""
    net = zoo_network(classifier)
    if state_dict and all(key.startswith("module.") for key in state_dict):
        state_dict = {key.removeprefix("module."): value for key, value in state_dict.items()}
    own = net.state_dict()
    missing = [key for key in own if key not in state_dict]
    unexpected = [key for key in state_dict if key not in own]
    wrong = [
        f"{key} {tuple(state_dict[key].shape)} (expected {tuple(own[key].shape)})"
        for key in own
        if key in state_dict and tuple(getattr(state_dict[key], "shape", ())) != tuple(own[key].shape)
    ]
    if missing or unexpected or wrong:
        problems = [
            f"{what}: {_at_most_4(keys)}"
            for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if keys
        ]
        arch = getattr(net, "arch", type(net).__name__)
        reference = REFERENCE_NAMES.get(arch, arch)
        raise UserError(
            f"The checkpoint does not fit {arch} (RepDistiller's {reference!r}): {'; '.join(problems)}. "
            "Give the architecture the checkpoint was trained as (RepDistiller's model_dict name, renamed "
            "here as vgg13 -> vgg13_bn, ResNet50 -> resnet50_cifar, MobileNetV2 -> mobilenetv2, "
            "ShuffleV1/V2 -> shufflenetv1/v2) and the number of classes it was trained on (a head of a "
            "different size shows as a wrong shape of the last layer)."
        )
    net.load_state_dict(state_dict, strict=True)
