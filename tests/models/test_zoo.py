"""The CIFAR KD zoo (``models.zoo``) against RepDistiller's reference networks.

The reference code is not shipped: its parameter counts are hard-coded below, and the state_dict
names and shapes of five of its networks are a fixture (``fixtures/zoo_reference_state_shapes.json``).
Both were produced by building github.com/HobbitLong/RepDistiller's ``models.model_dict[name](num_classes=100)``
(``models/resnet.py``: ``resnet8(num_classes=100)`` ...; ``models/resnetv2.py``: ``ResNet50(num_classes=100)``;
``models/wrn.py``: ``wrn_16_1(num_classes=100)`` ...; ``models/vgg.py``: ``vgg8_bn(num_classes=100)`` ...;
``models/mobilenetv2.py``: ``mobile_half(num_classes=100)``; ``models/ShuffleNetv1.py``: ``ShuffleV1(num_classes=100)``;
``models/ShuffleNetv2.py``: ``ShuffleV2(num_classes=100)``) and counting ``sum(p.numel() for p in net.parameters())``.
"""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from distillbench.config import ModelDef
from distillbench.errors import UserError
from distillbench.models import ARCHITECTURES, build_model
from distillbench.models.classifier import CIFAR100_MEAN, CIFAR100_STD, Float32Linear, Preprocess, count_parameters
from distillbench.models.zoo import ARCHITECTURES_OF_THE_ZOO, load_reference_state, zoo_network

# RepDistiller's parameter counts at num_classes=100 (see the module docstring for the constructor calls).
REFERENCE_PARAMETERS = {
    "resnet8": 83_892,
    "resnet14": 181_108,
    "resnet20": 278_324,
    "resnet32": 472_756,
    "resnet44": 667_188,
    "resnet56": 861_620,
    "resnet110": 1_736_564,
    "resnet8x4": 1_233_540,
    "resnet32x4": 7_433_860,
    "resnet50_cifar": 23_705_252,  # ResNet50
    "wrn_16_1": 180_916,
    "wrn_16_2": 703_284,
    "wrn_40_1": 569_780,
    "wrn_40_2": 2_255_156,
    "vgg8_bn": 3_965_028,  # vgg8
    "vgg11_bn": 9_277_284,  # vgg11
    "vgg13_bn": 9_462_180,  # vgg13
    "vgg16_bn": 14_774_436,  # vgg16
    "vgg19_bn": 20_086_692,  # vgg19
    "mobilenetv2": 812_836,  # MobileNetV2 (mobile_half)
    "shufflenetv1": 949_258,  # ShuffleV1
    "shufflenetv2": 1_355_528,  # ShuffleV2
}
# Stem plus stages RepDistiller's is_feat=True lists before its pooled entry.
FEATURE_MAPS = {"resnet50_cifar": 5, "mobilenetv2": 5, **{name: 5 for name in REFERENCE_PARAMETERS if "vgg" in name}}
FIXTURE = Path(__file__).parent / "fixtures" / "zoo_reference_state_shapes.json"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Batch-2 convolutions are too small to split: on a busy 2-core machine, intra-op threads spent
    # most of their time waiting on each other (10x slower than one thread).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _build(name: str, num_classes: int = 100, init: str = "keras", **extra) -> nn.Module:
    return build_model(ModelDef(arch=name, lr=0.1, init=init, **extra), None, (3, 32, 32), num_classes)


def test_every_zoo_architecture_is_registered():
    assert set(ARCHITECTURES_OF_THE_ZOO) == set(REFERENCE_PARAMETERS)
    assert all(name in ARCHITECTURES for name in REFERENCE_PARAMETERS)


@pytest.mark.parametrize("name", sorted(REFERENCE_PARAMETERS))
def test_parameter_count_is_the_references(name):
    assert count_parameters(_build(name)) == (REFERENCE_PARAMETERS[name],) * 2  # everything trains


@pytest.mark.parametrize("name", ["resnet8x4", "wrn_16_2", "vgg8_bn", "mobilenetv2", "shufflenetv1"])
def test_state_dict_names_and_shapes_are_the_references(name):
    reference = json.loads(FIXTURE.read_text())[name]
    ours = {key: list(value.shape) for key, value in zoo_network(_build(name)).state_dict().items()}
    assert ours == reference
    assert list(_build(name).state_dict())[0].startswith("body.0.")


@pytest.mark.parametrize("name", sorted(REFERENCE_PARAMETERS))
def test_forward_and_backward_at_32x32(name):
    torch.manual_seed(0)
    model = _build(name).train()
    net, images = zoo_network(model), torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    features, pooled, logits = net.forward_features(model.prefix(images))
    assert logits.shape == (2, 100) and logits.dtype == torch.float32
    logits.logsumexp(1).sum().backward()
    params = [p for p in model.parameters() if p.requires_grad]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params)
    with torch.no_grad():  # forward is forward_features' logits (train mode: batch statistics, deterministic)
        assert torch.equal(model(images), logits)
    assert len(features) == FEATURE_MAPS.get(name, 4) and all(f.dim() == 4 and len(f) == 2 for f in features)
    (head,) = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert isinstance(head, Float32Linear)  # logits in float32 under autocast
    assert pooled.shape == (2, head.in_features)


def test_reference_init_or_keras_init():
    torch_init = zoo_network(_build("vgg8_bn", init="torch"))
    assert 0.008 < torch_init.classifier.weight.std() < 0.012  # the reference's N(0, 0.01^2)
    conv = torch_init.block1[0]  # He-normal, fan_out = 128 * 3 * 3
    assert abs(conv.weight.std() - (2 / (128 * 9)) ** 0.5) < 0.003
    keras = zoo_network(_build("vgg8_bn"))
    bound = (6 / (512 + 100)) ** 0.5  # Glorot-uniform
    assert keras.classifier.weight.abs().max() <= bound and keras.classifier.weight.std() > 0.03
    assert all(torch.count_nonzero(m.bias) == 0 for m in keras.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


def test_a_reference_state_dict_loads_strictly():
    source, target = _build("resnet8"), _build("resnet8")
    state = zoo_network(source).state_dict()
    load_reference_state(target, state)
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(source.eval()(images), target.eval()(images))
    # Saved through nn.DataParallel: every key prefixed "module.".
    load_reference_state(_build("resnet8"), {f"module.{key}": value for key, value in state.items()})


def test_a_checkpoint_that_does_not_fit_names_the_keys():
    state = zoo_network(_build("resnet8", num_classes=10)).state_dict()
    with pytest.raises(UserError, match=r"wrong shape: fc.weight \(10, 64\) \(expected \(100, 64\)\)"):
        load_reference_state(_build("resnet8"), state)
    state = zoo_network(_build("resnet8")).state_dict()
    state["extra.weight"] = state.pop("conv1.weight")
    with pytest.raises(UserError, match=r"missing: conv1.weight; unexpected: extra.weight"):
        load_reference_state(_build("resnet8"), state)
    vgg = zoo_network(_build("vgg8_bn")).state_dict()
    with pytest.raises(UserError, match=r"resnet14 .*missing: .* and \d+ more; unexpected: .* and \d+ more"):
        load_reference_state(_build("resnet14"), vgg)
    with pytest.raises(UserError, match="CIFAR zoo"):
        zoo_network(build_model(ModelDef(arch="small_cnn", lr=0.1), None, (3, 32, 32), 10))


def test_refuses_what_it_cannot_take():
    with pytest.raises(UserError, match="RGB"):
        build_model(ModelDef(arch="resnet8", lr=0.1), None, (1, 32, 32), 10)
    with pytest.raises(UserError, match="cifar100"):
        _build("resnet8", input_norm="pretrained")


def test_cifar100_and_pretrained_input_norms():
    model = _build("resnet8", input_norm="cifar100")
    assert "cifar100" in repr(model.prefix) and "0.50709" in repr(model.prefix)
    pixels = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    expected = (1 - torch.tensor(CIFAR100_MEAN)) / torch.tensor(CIFAR100_STD)
    assert torch.allclose(Preprocess("cifar100")(pixels)[0, :, 0, 0], expected)
    with pytest.raises(ValueError, match="mean and std"):
        Preprocess("pretrained")
    with pytest.raises(ValueError, match="pretrained' only"):
        Preprocess("imagenet", mean=(0.5,) * 3, std=(0.5,) * 3)
    custom = Preprocess("pretrained", mean=(0.5,) * 3, std=(0.25,) * 3)
    assert torch.allclose(custom(pixels), torch.full((1, 3, 2, 2), 2.0))
    assert "0.25" in repr(custom)
