import io

import pytest
import torch
import torchvision
from torch import nn

from distillbench.config import ModelDef
from distillbench.errors import UserError
from distillbench.models import build_model
from distillbench.models.classifier import IMAGENET_STD, Preprocess, count_parameters


def test_small_cnn_matches_the_keras_architecture():
    model = build_model(ModelDef(arch="small_cnn", lr=1e-3), None, (3, 32, 32), 10)
    # Keras summary of the paper's CNN: 896 + 18,496 + (6*6*64*256 + 256) + (256*10 + 10).
    assert count_parameters(model) == (612_042, 612_042)
    out = model(torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8))
    assert out.shape == (5, 10)
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert all(torch.count_nonzero(m.bias) == 0 for m in convs)  # Keras: zero biases
    # Glorot-uniform bound sqrt(6 / (fan_in + fan_out)) for the first conv: 3*9 in, 32*9 out.
    bound = (6 / (27 + 288)) ** 0.5
    assert convs[0].weight.abs().max() <= bound and convs[0].weight.abs().max() > 0.9 * bound


def test_resnet50_paper_setting_freezes_the_whole_backbone(weight_files):
    model = build_model(ModelDef(arch="resnet50", lr=1e-4), str(weight_files["resnet50"]), (3, 32, 32), 10)
    assert count_parameters(model)[1] == 2048 * 10 + 10  # only the new Dense(10) trains
    assert model.body[0].in_features == 2048 and len(model.body) == 1
    assert model.prefix(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)).shape == (2, 2048)


def test_vgg16_paper_setting_trains_only_the_head(weight_files):
    model = build_model(ModelDef(arch="vgg16", lr=1e-4), str(weight_files["vgg16"]), (3, 32, 32), 10)
    assert count_parameters(model)[1] == 512 * 256 + 256 + 256 * 10 + 10
    # The whole convolutional base, block5_pool included, is the cached prefix: 512 x 1 x 1 at 32x32.
    assert model.prefix(torch.zeros(1, 3, 32, 32, dtype=torch.uint8)).shape == (1, 512, 1, 1)


def test_vgg16_with_one_trainable_layer_trains_block5_conv3_and_head(weight_files):
    model = build_model(
        ModelDef(arch="vgg16", lr=1e-4, trainable_layers=1), str(weight_files["vgg16"]), (3, 32, 32), 10
    )
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    conv53 = 512 * 512 * 9 + 512
    head = 512 * 256 + 256 + 256 * 10 + 10
    assert count_parameters(model)[1] == conv53 + head
    assert all(name.startswith("body.") for name in trainable)
    # block5_conv2's output (512 x 2 x 2 at 32x32) is the cached prefix output.
    assert model.prefix(torch.zeros(1, 3, 32, 32, dtype=torch.uint8)).shape == (1, 512, 2, 2)


def test_loaded_weights_are_the_files_weights(weight_files):
    state = torch.load(weight_files["vgg16"], weights_only=True)
    model = build_model(ModelDef(arch="vgg16", lr=1e-4), str(weight_files["vgg16"]), (3, 32, 32), 10)
    first_conv = model.prefix[1]
    torch.testing.assert_close(first_conv.weight, state["features.0.weight"])


def test_frozen_batchnorm_stays_in_inference_mode():
    model = build_model(ModelDef(arch="resnet50", lr=1e-4, trainable_layers=2), "none", (3, 32, 32), 10)
    model.train()
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    trains = [m.training for m in norms]
    assert trains[-1] is True  # bn3 of the last block is one of the two trainable layers
    assert not any(trains[:-1])
    assert not model.prefix.training


def test_too_many_trainable_layers_is_an_error():
    with pytest.raises(UserError, match=r"trainable_layers=999.*only \d+ weight-holding layers"):
        build_model(ModelDef(arch="vgg16", lr=1e-4, trainable_layers=999), "none", (3, 32, 32), 10)


def test_weight_file_problems_are_named(tmp_path, weight_files):
    spec = ModelDef(arch="resnet50", lr=1e-4)
    with pytest.raises(UserError, match=r"weights\.resnet50: .*missing\.pt is not a file"):
        build_model(spec, str(tmp_path / "missing.pt"), (3, 32, 32), 10)
    vgg_as_resnet = str(weight_files["vgg16"])
    with pytest.raises(UserError, match=r"not a torchvision resnet50 state_dict: \d+ missing"):
        build_model(spec, vgg_as_resnet, (3, 32, 32), 10)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError, match=r"could not be loaded as a tensor-only state_dict"):
        build_model(spec, str(garbage), (3, 32, 32), 10)


def test_weight_file_that_runs_code_is_refused(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (print, ("code ran",))

    path = tmp_path / "evil.pt"
    buffer = io.BytesIO()
    torch.save({"conv1.weight": Exploit()}, buffer)
    path.write_bytes(buffer.getvalue())
    with pytest.raises(UserError, match=r"weights_only=True refuses code"):
        build_model(ModelDef(arch="resnet50", lr=1e-4), str(path), (3, 32, 32), 10)


def test_full_state_dict_with_classifier_is_accepted(tmp_path):
    path = tmp_path / "resnet50_full.pt"
    torch.save(torchvision.models.resnet50().state_dict(), path)  # includes fc.* (1000 classes)
    model = build_model(ModelDef(arch="resnet50", lr=1e-4), str(path), (3, 32, 32), 10)
    assert model.body[0].out_features == 10


def test_imagenet_download_failure_is_explained(monkeypatch):
    from distillbench.models import weights

    def offline(self, **kwargs):
        raise OSError("<urlopen error [Errno 101] Network is unreachable>")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(UserError, match=r"ImageNet weights for vgg16.*weights\.vgg16 to a local.*--data-dir"):
        build_model(ModelDef(arch="vgg16", lr=1e-4), "imagenet", (3, 32, 32), 10)
    assert weights  # imported for the monkeypatch's target module


def test_preprocessing_is_part_of_a_modules_identity():
    """Cache keys hash a module's repr and state: the input normalisation must show in one of them,
    or features computed for [0, 1] pixels are reused for ImageNet-normalised ones."""
    from distillbench.training.cache import hash_module

    hashes = {norm: hash_module(Preprocess(norm)) for norm in ("none", "imagenet", "keras_notebook")}
    assert len(set(hashes.values())) == 3
    pixels = torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 1, 2).expand(1, 3, 1, 2)
    emulated = Preprocess("keras_notebook")(pixels)
    # RGB into a BGR network, no mean subtracted, 1/255 of the contrast.
    torch.testing.assert_close(emulated[0, :, 0, 1], 1 / (255 * torch.tensor(IMAGENET_STD)))
    assert torch.all(emulated[..., 0] == 0)


def test_frozen_batchnorm_stays_in_inference_mode_when_the_body_trains_alone():
    """On the cached path the loop trains the body by itself: its frozen BatchNorm must neither use
    batch statistics nor update its running statistics."""
    model = build_model(ModelDef(arch="resnet50", lr=1e-4, trainable_layers=1), "none", (3, 32, 32), 10).eval()
    body = model.body.train()
    frozen = [m for m in body.modules() if isinstance(m, nn.BatchNorm2d) and not m.weight.requires_grad]
    assert frozen and not any(m.training for m in frozen)
    before = [m.running_mean.clone() for m in frozen]
    body(torch.randn(4, *model.prefix(torch.zeros(1, 3, 32, 32, dtype=torch.uint8)).shape[1:]))
    assert all(torch.equal(b, m.running_mean) for b, m in zip(before, frozen))


@pytest.mark.parametrize("arch", ["small_cnn", "resnet50", "vgg16"])
def test_logits_are_float32_under_bf16_autocast(arch):
    """bf16 logits keep 8 significant bits and tie (top-2 equal) on ~0.5% of images; the logits layer
    runs in float32, so the logits carry more than bf16's precision."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_model(ModelDef(arch=arch, lr=1e-3), "none", (3, 32, 32), 10).eval()
    images = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(images)
    assert logits.dtype == torch.float32
    assert torch.any(logits != logits.bfloat16().float())  # not bf16 values widened
