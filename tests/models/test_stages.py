"""Every built-in architecture declares its stages (issue 22): ``Classifier.forward_features`` returns
the named stage outputs, the embedding the logits layer reads and the very logits ``forward`` gives,
wherever the frozen prefix ends, with no hook left behind. Random weights, 32x32 images, nothing
downloaded; the torchvision networks are built once (on the meta device, then initialised) and
copied per cut, since building VGG16's ImageNet classifier alone takes seconds."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch import nn

from distillbench.config import ModelDef
from distillbench.models import (
    ARCHITECTURES,
    BACKBONES,
    build_model,
    declares_stages,
    register_architecture,
    staged_architectures,
)
from distillbench.models.backbone import build_backbone
from distillbench.models.classifier import Classifier, Features, Float32Linear, Preprocess, StageLayout
from distillbench.models.zoo import ARCHITECTURES_OF_THE_ZOO

IMAGE_SHAPE = (3, 32, 32)


pytestmark = pytest.mark.usefixtures("one_thread")  # ResNet50's forward was ~40x slower with two


def _images(n: int = 2, shape: tuple[int, int, int] = IMAGE_SHAPE) -> torch.Tensor:
    return torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))


def _no_hooks(model: nn.Module) -> bool:
    return not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def _features(model: Classifier, x: torch.Tensor, names: tuple[str, ...], shapes: list[tuple], width: int) -> Features:
    """``forward_features`` in eval mode, checked against ``forward`` and the declaration."""
    model.eval()
    state = set(model.state_dict())
    with torch.no_grad():
        features, logits = model.forward_features(x), model(x)
    assert model.stage_names == names
    assert [tuple(s.shape) for s in features.stages] == [(len(x), *shape) for shape in shapes]
    assert features.embedding.shape == (len(x), width)
    assert torch.equal(features.logits, logits)  # exactly: the same modules in the same order
    assert isinstance(model.body[-1], Float32Linear)
    assert torch.equal(model.body[-1](features.embedding), logits)  # the embedding is what the head reads
    assert torch.isfinite(logits).all()
    assert _no_hooks(model) and set(model.state_dict()) == state  # nothing left behind
    return features


def _same(a: Features, b: Features) -> None:
    for x, y in zip([*a.stages, a.embedding, a.logits], [*b.stages, b.embedding, b.logits], strict=True):
        assert torch.equal(x, y)


def test_small_cnn_stages_are_its_conv_blocks_relu_outputs():
    torch.manual_seed(0)
    model = build_model(ModelDef(arch="small_cnn", lr=1e-3), None, IMAGE_SHAPE, 10)
    x = _images()
    # valid 3x3 convolutions: 32 -> 30 (block1, before its 2x2 pooling), 15 -> 13 (block2)
    features = _features(model, x, ("block1", "block2"), [(32, 30, 30), (64, 13, 13)], 256)
    body = model.body
    with torch.no_grad():
        block1 = body[1](body[0](model.prefix(x)))
        torch.testing.assert_close(features.stages[0], block1, rtol=0, atol=0)
        torch.testing.assert_close(features.stages[1], body[5](body[4](body[3](body[2](block1)))), rtol=0, atol=0)
    # In train mode the stages carry gradients to the body (a feature student's loss trains them).
    trained = model.train().forward_features(x)
    assert all(s.requires_grad for s in trained.stages) and trained.logits.requires_grad
    # One-channel images of another size: the same declaration.
    gray = build_model(ModelDef(arch="small_cnn", lr=1e-3), None, (1, 28, 28), 10)
    _features(gray, _images(shape=(1, 28, 28)), ("block1", "block2"), [(32, 26, 26), (64, 11, 11)], 256)


@pytest.fixture(scope="module")
def torchvision_nets() -> dict[str, nn.Module]:
    """Each registered torchvision backbone's network, randomly initialised, without its ImageNet
    classifier (dropped by the builder anyway; VGG16's is 120M parameters)."""
    nets = {}
    for name in ("resnet50", "vgg16"):
        with torch.device("meta"):
            net = BACKBONES[name].network()
        for head in ("fc", "classifier"):
            if hasattr(net, head):
                setattr(net, head, nn.Identity())
        net.to_empty(device="cpu")
        torch.manual_seed(0)
        for module in net.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()  # BatchNorm: weight 1, bias 0, running statistics reset
        nets[name] = net
    return nets


def _backbone(nets: dict[str, nn.Module], arch: str, trainable_layers: int | str) -> Classifier:
    spec = dataclasses.replace(BACKBONES[arch], network=lambda: copy.deepcopy(nets[arch]))
    torch.manual_seed(1)  # the same head for every cut
    return build_backbone(
        spec, ModelDef(arch=arch, lr=1e-3, trainable_layers=trainable_layers), "none", IMAGE_SHAPE, 10
    )


RESNET50_STAGES = [(64, 16, 16), (256, 8, 8), (512, 4, 4), (1024, 2, 2), (2048, 1, 1)]
VGG16_STAGES = [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4), (512, 2, 2)]


@pytest.mark.parametrize(
    ("arch", "names", "shapes", "width", "cuts"),
    [
        ("resnet50", ("stem", "layer1", "layer2", "layer3", "layer4"), RESNET50_STAGES, 2048, (0, 2, "all")),
        ("vgg16", tuple(f"block{n}" for n in range(1, 6)), VGG16_STAGES, 256, (0, 1, "all")),
    ],
)
def test_backbone_stages_span_the_frozen_prefix_and_the_body(torchvision_nets, arch, names, shapes, width, cuts):
    x = _images()
    models = {cut: _backbone(torchvision_nets, arch, cut) for cut in cuts}
    frozen, partly, whole = models.values()
    assert len(frozen.body) < len(partly.body) < len(whole.body) and len(whole.prefix) == 1  # three cuts
    results = [_features(model, x, names, shapes, width) for model in models.values()]
    for other in results[1:]:
        _same(results[0], other)  # the same network cut elsewhere: the same stages
    features, chain = results[0], [*whole.prefix, *whole.body]
    with torch.no_grad():
        if arch == "resnet50":  # stem: after its ReLU, before its max-pooling; the embedding: layer4 pooled
            torch.testing.assert_close(features.stages[0], chain[1][:3](chain[0](x)), rtol=0, atol=0)
            torch.testing.assert_close(features.embedding, features.stages[-1].mean((2, 3)))
        else:  # each block before its max-pooling; the embedding: the head's hidden layer
            assert isinstance(chain[-5], nn.MaxPool2d) and isinstance(chain[-4], nn.Flatten)  # block5's pooling
            hidden = chain[-2](chain[-3](chain[-4](chain[-5](features.stages[-1]))))
            torch.testing.assert_close(features.embedding, hidden, rtol=0, atol=0)
    assert declares_stages(arch)


@pytest.mark.filterwarnings("ignore:timm model .* was pretrained on:UserWarning")
def test_timm_stages_are_its_feature_info_by_forward_intermediates_or_by_hooks_it_removes(monkeypatch):
    timm = pytest.importorskip("timm", reason="arch timm needs timm")
    x = _images()
    models = {}
    for cut in (0, 2, "all"):
        torch.manual_seed(0)
        models[cut] = build_model(ModelDef(arch="timm", timm_model="test_resnet", lr=1e-3, trainable_layers=cut), "none",
                                  IMAGE_SHAPE, 10)  # fmt: skip
    network = models["all"].body[0]
    info = network.feature_info
    names = tuple(entry["module"] for entry in info)
    assert names == ("act1", "layer1", "layer2", "layer3", "layer4")
    shapes = [(entry["num_chs"], 32 // entry["reduction"], 32 // entry["reduction"]) for entry in info]
    width = models["all"].body[-1].in_features
    results = [_features(model, x, names, shapes, width) for model in models.values()]
    assert not models[0].prefix_is_trivial and models["all"].prefix_is_trivial  # with and without a frozen prefix
    for other in results[1:]:
        _same(results[0], other)
    # Without forward_intermediates: the feature_info modules' outputs, by hooks removed before returning.
    monkeypatch.delattr(timm.models.ResNet, "forward_intermediates")
    _same(_features(models["all"], x, names, shapes, width), results[0])
    assert declares_stages("timm")


def test_a_stage_layout_names_modules_of_the_chain():
    prefix = nn.Sequential(Preprocess())
    body = nn.Sequential(nn.Flatten(), nn.Sequential(nn.Linear(12, 4), nn.ReLU()), Float32Linear(4, 3))
    layout = StageLayout.at([*prefix, *body], {"hidden": body[1][1]})
    assert layout.taps == ((2, 1),)  # the chain's third module, its second
    model = Classifier(prefix, body, layout).eval()
    x = _images(shape=(3, 2, 2))
    features = model.forward_features(x)
    assert torch.equal(features.stages[0], features.embedding) and torch.equal(features.logits, model(x))
    with pytest.raises(ValueError, match="stage 'stray': its module is not in the chain"):
        StageLayout.at([*prefix, *body], {"stray": nn.ReLU()})
    with pytest.raises(ValueError, match=r"stage path \(7,\): no module at index 7"):
        Classifier(prefix, body, StageLayout(("far",), ((7,),)))
    with pytest.raises(ValueError, match="distinct and in forward order"):
        StageLayout(("b", "a"), ((2, 1), (1,)))
    with pytest.raises(NotImplementedError, match="does not declare its stages"):
        Classifier(prefix, body).forward_features(x)  # no layout, no network of its own


def test_the_registry_records_which_architectures_declare_their_stages():
    staged = staged_architectures()
    assert staged[:4] == ["small_cnn", "resnet50", "vgg16", "timm"] and "resnet8" in staged
    assert set(ARCHITECTURES_OF_THE_ZOO) <= set(staged)  # every built-in one (plugins of other tests aside)

    def builder(*args):
        return None

    register_architecture("plugin_net", builder)
    try:
        assert not declares_stages("plugin_net")
        del ARCHITECTURES["plugin_net"]
        register_architecture("plugin_net", builder, stages=True)
        assert declares_stages("plugin_net")
        del ARCHITECTURES["plugin_net"]
        ARCHITECTURES["plugin_net"] = lambda *args: None  # another entry under the name: not declared
        assert not declares_stages("plugin_net") and not declares_stages("no_such_arch")
    finally:
        ARCHITECTURES.pop("plugin_net", None)
