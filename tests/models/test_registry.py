"""A backbone is one spec and one registration: build, weights, cut point and head come from it."""

import pytest
import torch
import torchvision
from torch import nn

from distillbench.config import ModelDef
from distillbench.errors import UserError
from distillbench.models import ARCHITECTURES, BACKBONES, build_model, register_backbone
from distillbench.models.backbone_spec import BackboneSpec
from distillbench.models.classifier import Float32Linear
from distillbench.models.weights import check_backbone_weights, save_random_weights

RESNET18 = BackboneSpec(
    name="resnet18",
    network=lambda: torchvision.models.resnet18(weights=None),
    imagenet=torchvision.models.ResNet18_Weights.IMAGENET1K_V1,
    head_prefixes=("fc.",),
    stages=lambda net: [
        nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool),
        *net.layer1,
        *net.layer2,
        *net.layer3,
        *net.layer4,
        nn.Sequential(net.avgpool, nn.Flatten()),
    ],  # fmt: skip
    head=lambda features, classes: nn.Sequential(Float32Linear(features, classes)),
)


@pytest.fixture
def resnet18():
    """ResNet18 registered for the test, and unregistered afterwards."""
    register_backbone(RESNET18)
    yield RESNET18
    del ARCHITECTURES["resnet18"], BACKBONES["resnet18"]


def test_a_registered_backbone_builds_with_its_weights_and_cut(resnet18, tmp_path):
    assert "resnet18" in BACKBONES and "resnet18" in ARCHITECTURES
    paths = {path.stem: path for path in save_random_weights(tmp_path, BACKBONES.values())}
    assert set(paths) == {"resnet50", "vgg16", "resnet18"}  # every registered backbone
    check_backbone_weights(resnet18, str(paths["resnet18"]))
    model = build_model(ModelDef(arch="resnet18", lr=1e-4, trainable_layers=2), str(paths["resnet18"]), (3, 32, 32), 7)
    assert model.body[-1].out_features == 7 and model.body[-1].in_features == 512
    reference = torchvision.models.resnet18()
    reference.load_state_dict(torch.load(paths["resnet18"], weights_only=True), strict=False)
    torch.testing.assert_close(model.prefix[1][0].weight, reference.conv1.weight)  # the file's weights
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["body.0.conv2.weight", "body.0.bn2.weight", "body.0.bn2.bias", "body.2.weight", "body.2.bias"]


def test_weights_of_another_backbone_are_refused(resnet18, weight_files):
    with pytest.raises(UserError, match=r"weights\.resnet18: .* is not a torchvision resnet18 state_dict"):
        check_backbone_weights(resnet18, str(weight_files["resnet50"]))


def test_backbones_need_rgb_images():
    with pytest.raises(UserError, match="resnet50 takes RGB images"):
        build_model(ModelDef(arch="resnet50", lr=1e-4), "none", (1, 28, 28), 10)


def test_names_are_registered_once():
    from distillbench.models import register_architecture

    with pytest.raises(ValueError, match="architecture 'small_cnn' is already registered"):
        register_architecture("small_cnn", ARCHITECTURES["small_cnn"])
    architectures = list(ARCHITECTURES)
    with pytest.raises(ValueError, match="pretrained backbone 'vgg16' is already registered"):
        register_backbone(BACKBONES["vgg16"])
    assert list(ARCHITECTURES) == architectures  # a refused backbone registers nothing
