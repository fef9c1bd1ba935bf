"""The CIFAR KD zoo (``models.zoo``) against RepDistiller's reference networks.

The reference code is not shipped: its parameter counts are hard-coded below, and the state_dict
names and shapes of five of its networks are a fixture (``fixtures/zoo_reference_state_shapes.json``).
Both were produced by building github.com/HobbitLong/RepDistiller's ``models.model_dict[name](num_classes=100)``
(``models/resnet.py``: ``resnet8(num_classes=100)`` ...; ``models/resnetv2.py``: ``ResNet50(num_classes=100)``;
``models/wrn.py``: ``wrn_16_1(num_classes=100)`` ...; ``models/vgg.py``: ``vgg8_bn(num_classes=100)`` ...;
``models/mobilenetv2.py``: ``mobile_half(num_classes=100)``; ``models/ShuffleNetv1.py``: ``ShuffleV1(num_classes=100)``;
``models/ShuffleNetv2.py``: ``ShuffleV2(num_classes=100)``) and counting ``sum(p.numel() for p in net.parameters())``.

The pre-activation stage maps (``Features.preact_stages``) are checked two ways. Against the
network's own modules (``_recompute_preact``): each family's definition recomputed layer by layer
from the stage outputs, to 1e-6 absolute (float32; the same operations in the same order), and the
activation that turns them into the stage outputs, exactly. Against mdistiller's ``preact_feats``
(``PREACT_REFERENCE``): megvii-research/mdistiller at a08d46f, ``mdistiller/models/cifar/`` loaded
by path in a scratch directory outside the repo (/tmp/ref22, ``preact.py``): each network built
here, its weights set by ``_fill_(net, seed=1)``, loaded strictly into mdistiller's constructor of
the same network (``resnet8``, ``wrn_16_1``, ``vgg8_bn``, ``ResNet50``, ``ShuffleV1``, ``ShuffleV2``,
``num_classes=100``), both in eval mode on ``_images()``; ours equalled mdistiller's map for map
bitwise (max abs difference 0, in eval and in train mode, stages, pooled embedding and logits
too), and mdistiller's ``(sum, norm, _channel_weighted)`` of each ``preact_feats`` map was printed
and is stored below (the channel-weighted sum tells channel orders apart: ShuffleNetV2's map is
mdistiller's unshuffled one). Tolerance: each norm relative 1e-5; each sum absolute
1e-5 * norm * sqrt(numel) (the largest either sum can be is norm * sqrt(numel); a relative
tolerance would fail on sums that cancel).
"""

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from distillbench.config import ModelDef
from distillbench.errors import UserError
from distillbench.models import ARCHITECTURES, build_model
from distillbench.models.classifier import (
    CIFAR100_MEAN,
    CIFAR100_STD,
    Features,
    Float32Linear,
    Preprocess,
    count_parameters,
)
from distillbench.models.zoo import ARCHITECTURES_OF_THE_ZOO, load_reference_state, zoo_network
from distillbench.models.zoo.base import channel_shuffle

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


pytestmark = pytest.mark.usefixtures("one_thread")


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
    result = net.forward_features(model.prefix(images))
    assert isinstance(result, Features)
    features, pooled, logits = result.stages, result.embedding, result.logits
    assert logits.shape == (2, 100) and logits.dtype == torch.float32
    logits.logsumexp(1).sum().backward()
    params = [p for p in model.parameters() if p.requires_grad]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params)
    with torch.no_grad():  # forward is forward_features' logits (train mode: batch statistics, deterministic)
        assert torch.equal(model(images), logits)
    assert len(features) == FEATURE_MAPS.get(name, 4) and all(f.dim() == 4 and len(f) == 2 for f in features)
    assert len(model.stage_names) == len(features) and len(set(model.stage_names)) == len(features)  # named
    assert all(stage == "stem" or hasattr(net, stage.split(".")[0]) for stage in model.stage_names)  # its modules
    if name == "mobilenetv2":  # mdistiller lists no preact_feats for it
        assert result.preact_stages is None and result.preactivation is features
    else:
        assert [p.shape for p in result.preact_stages] == [f.shape for f in features]
        assert result.preact_stages[0] is features[0]  # the stem's map unchanged, as mdistiller's f0
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


# Pre-activation stage maps (module docstring): one network per family with preact_feats.
PREACT_ARCHITECTURES = ["resnet8", "wrn_16_1", "vgg8_bn", "resnet50_cifar", "shufflenetv1", "shufflenetv2"]

# mdistiller's preact_feats on _images() with _fill_(net, seed=1), eval mode: (sum, norm,
# _channel_weighted) of each map, printed by /tmp/ref22/preact.py (module docstring).
PREACT_REFERENCE: dict[str, list[tuple[float, float, float]]] = {
    "resnet8": [
        (19137.619140625, 210.21690368652344, 10230.62109375),
        (18184.568359375, 365.99896240234375, 7114.97607421875),
        (-76.6436538696289, 511.0382080078125, 650.021240234375),
        (3740.18212890625, 525.421630859375, 3548.060791015625),
    ],
    "wrn_16_1": [
        (-220.2647247314453, 255.37327575683594, -13.957069396972656),
        (15382.875, 644.9239501953125, 7182.0791015625),
        (6627.18798828125, 917.1785278320312, 430.74951171875),
        (5016.7021484375, 1211.5743408203125, 943.30126953125),
    ],
    "vgg8_bn": [
        (83138.8515625, 431.4786682128906, 43005.8828125),
        (-1704.3323974609375, 795.359619140625, 1681.85791015625),
        (9338.64453125, 775.6536865234375, 5839.47705078125),
        (-1702.3544921875, 708.5975952148438, -604.845458984375),
        (-900.3275146484375, 684.6550903320312, 529.8634643554688),
    ],
    "resnet50_cifar": [
        (79282.8125, 411.972900390625, 40988.3125),
        (969321.75, 3564.364013671875, 469965.53125),
        (3485526.75, 20557.474609375, 1655896.0),
        (54396148.0, 397606.8125, 28596884.0),
        (98638232.0, 1212551.625, 48016076.0),
    ],
    "shufflenetv1": [
        (25257.3203125, 228.97665405273438, 13073.9375),
        (226157.53125, 2112.804443359375, 116973.4296875),
        (2731871.75, 35235.765625, 1578889.125),
        (5318239.0, 72109.0078125, 2750974.25),
    ],
    "shufflenetv2": [
        (25257.3203125, 228.97665405273438, 13073.9375),
        (42256.9453125, 779.1555786132812, 18761.17578125),
        (124108.6171875, 5374.06591796875, 39079.3671875),
        (279187.65625, 14537.05859375, 96453.6953125),
    ],
}


def _fill_(net: nn.Module, seed: int) -> None:
    """Set every weight and statistic from ``torch.Generator().manual_seed(seed)``, module by module in
    ``net.modules()`` order: convolution and linear weights N(0, 2 / fan_in), their biases 0.1 N(0, 1);
    BatchNorm weight 0.5 + U(0, 1), bias 0.2 N(0, 1), running mean 0.2 N(0, 1), running variance
    0.5 + U(0, 1) (in that order). Independent of the init code, and BatchNorm is no identity in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                weight = module.weight
                weight.copy_(torch.randn(weight.shape, generator=g) * (2 / weight[0].numel()) ** 0.5)
                if module.bias is not None:
                    module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=g))
            elif isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(0.5 + torch.rand(n, generator=g))
                module.bias.copy_(0.2 * torch.randn(n, generator=g))
                module.running_mean.copy_(0.2 * torch.randn(n, generator=g))
                module.running_var.copy_(0.5 + torch.rand(n, generator=g))


def _channel_weighted(x: torch.Tensor) -> torch.Tensor:
    """``sum over c of x[:, c].sum() * (c + 1) / C``: a sum that changes when channels are permuted."""
    weights = torch.arange(1, x.shape[1] + 1, dtype=x.dtype) / x.shape[1]
    return (x.sum((0, 2, 3)) * weights).sum()


def _images() -> torch.Tensor:
    """Standard-normal network inputs ``[2, 3, 32, 32]`` from ``torch.Generator().manual_seed(0)``."""
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _last_block_input(stage: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    for block in list(stage)[:-1]:
        x = block(x)
    return x


def _resnet(net: nn.Module, stages: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each stage's last basic block: bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)."""
    out = []
    for stage, x in zip((net.layer1, net.layer2, net.layer3), stages):
        b, x = stage[-1], _last_block_input(stage, x)
        shortcut = x if b.downsample is None else b.downsample[1](b.downsample[0](x))
        out.append(b.bn2(b.conv2(F.relu(b.bn1(b.conv1(x))))) + shortcut)
    return out


def _resnetv2(net: nn.Module, stages: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each stage's last bottleneck: bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x)."""
    out = []
    for stage, x in zip((net.layer1, net.layer2, net.layer3, net.layer4), stages):
        b, x = stage[-1], _last_block_input(stage, x)
        shortcut = b.shortcut[1](b.shortcut[0](x)) if len(b.shortcut) else x
        out.append(b.bn3(b.conv3(F.relu(b.bn2(b.conv2(F.relu(b.bn1(b.conv1(x)))))))) + shortcut)
    return out


def _wrn(net: nn.Module, stages: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each stage's output through the BN that follows it."""
    return [net.block2.layer[0].bn1(stages[1]), net.block3.layer[0].bn1(stages[2]), net.bn1(stages[3])]


def _vgg(net: nn.Module, stages: list[torch.Tensor]) -> list[torch.Tensor]:
    """Blocks 1 to 4 on the pooled previous stage (no pool before block 4 at 32x32), before their ReLU."""
    pooled = [net.pool0(stages[0]), net.pool1(stages[1]), net.pool2(stages[2]), stages[3]]
    return [getattr(net, f"block{i + 1}")(x) for i, x in enumerate(pooled)]


def _shufflenetv1(net: nn.Module, stages: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each stage's last (stride-1) block: bn3(conv3(relu(bn2(conv2(shuffle(relu(bn1(conv1(x))))))))) + x."""
    out = []
    for stage, x in zip((net.layer1, net.layer2, net.layer3), stages):
        b, x = stage[-1], _last_block_input(stage, x)
        branch = channel_shuffle(F.relu(b.bn1(b.conv1(x))), b.first_groups)
        out.append(b.bn3(b.conv3(F.relu(b.bn2(b.conv2(branch))))) + x)
    return out


def _shufflenetv2(net: nn.Module, stages: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each stage's last basic block: cat([x's first half, bn3(conv3(bn2(conv2(relu(bn1(conv1(second half)))))))]),
    unshuffled."""
    out = []
    for stage, x in zip((net.layer1, net.layer2, net.layer3), stages):
        b, x = stage[-1], _last_block_input(stage, x)
        half = x.shape[1] // 2
        branch = b.bn3(b.conv3(b.bn2(b.conv2(F.relu(b.bn1(b.conv1(x[:, half:])))))))
        out.append(torch.cat([x[:, :half], branch], 1))
    return out


# name -> (the pre-activation maps but the stem's, from the stage outputs; the stage output from its
# pre-activation map, where the network computes it so).
RECOMPUTE: dict[str, tuple[Callable, Callable | None]] = {
    "resnet8": (_resnet, F.relu),
    "wrn_16_1": (_wrn, None),  # the stages are the blocks' sums: the BN-ReLU comes after
    "vgg8_bn": (_vgg, F.relu),
    "resnet50_cifar": (_resnetv2, F.relu),
    "shufflenetv1": (_shufflenetv1, F.relu),
    "shufflenetv2": (_shufflenetv2, lambda p: channel_shuffle(F.relu(p), 2)),
}


@pytest.mark.parametrize("name", PREACT_ARCHITECTURES)
def test_preact_stages_are_mdistillers(name):
    net = zoo_network(_build(name))
    _fill_(net, seed=1)
    recompute, activate = RECOMPUTE[name]
    with torch.no_grad():
        f = net.eval().forward_features(_images())
        assert torch.equal(net(_images()), f.logits)
        preact = f.preact_stages
        assert preact[0] is f.stages[0] and len(preact) == len(f.stages)
        for ours, expected in zip(preact[1:], recompute(net, f.stages), strict=True):
            torch.testing.assert_close(ours, expected, rtol=0, atol=1e-6)
        if activate is not None:
            assert all(torch.equal(activate(p), s) for p, s in zip(preact[1:], f.stages[1:]))
        else:  # wrn: the embedding is the last map's activation, pooled
            assert torch.equal(F.avg_pool2d(F.relu(preact[-1]), 8).flatten(1), f.embedding)
        for p, (total, norm, weighted) in zip(preact, PREACT_REFERENCE[name], strict=True):
            assert p.norm().item() == pytest.approx(norm, rel=1e-5)
            assert p.sum().item() == pytest.approx(total, abs=1e-5 * norm * p.numel() ** 0.5)
            assert _channel_weighted(p).item() == pytest.approx(weighted, abs=1e-5 * norm * p.numel() ** 0.5)
    # Computed in the one forward pass: in train mode no BatchNorm runs twice (mdistiller's WRN does).
    net.train().forward_features(_images())
    assert {m.num_batches_tracked.item() for m in net.modules() if isinstance(m, nn.BatchNorm2d)} == {1}
