"""arch timm (issue 21): any timm model, its head sized to the data, its weights from timm's
pretrained set, a local file or none, cut into a frozen prefix and a trained body. timm's tiny
``test_*`` models with random weights: nothing is downloaded."""

import json

import pytest
import torch

timm = pytest.importorskip("timm", reason="arch timm's tests need timm: pip install 'distillbench[timm]'")

from distillbench.cli import main  # noqa: E402  (after the skip: these tests need timm)
from distillbench.config import ModelDef, load_config  # noqa: E402
from distillbench.errors import UserError  # noqa: E402
from distillbench.models import build_model  # noqa: E402
from distillbench.models.classifier import IMAGENET_MEAN  # noqa: E402
from distillbench.study.resolve import check_names  # noqa: E402

IMAGE_SHAPE = (3, 32, 32)
pytestmark = pytest.mark.filterwarnings("ignore:timm model .* was pretrained on:UserWarning")


def _build(name="test_resnet", weights="none", seed=0, **settings):
    torch.manual_seed(seed)
    spec = ModelDef(arch="timm", timm_model=name, lr=1e-3, **settings)
    return build_model(spec, weights, IMAGE_SHAPE, 10)


def _images(n=4):
    return torch.randint(0, 256, (n, *IMAGE_SHAPE), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", ["test_resnet", "test_vit"])
def test_a_timm_model_trains_at_32x32_with_a_head_sized_to_the_data(name):
    model = _build(name, trainable_layers="all")
    logits = model(_images())
    assert logits.shape == (4, 10) and logits.dtype == torch.float32
    logits.logsumexp(1).sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert model.body[-1].out_features == 10


def test_trainable_layers_cut_the_frozen_prefix_and_leave_the_function_unchanged():
    frozen, partial, whole = (_build(trainable_layers=n) for n in (0, 2, "all"))
    # 0: the network without its classifier is the frozen (cacheable) prefix; the head alone trains.
    assert not frozen.prefix_is_trivial and len(frozen.body) == 1
    assert all(p.requires_grad for p in frozen.body.parameters())
    assert not any(p.requires_grad for p in frozen.prefix.parameters())
    # N > 0: no cut (timm networks are no sequence of stages); the last N weight layers and the head train.
    network = partial.body[0]
    trained = [m for m in network.modules() if any(p.requires_grad for p in m.parameters(recurse=False))]
    assert partial.prefix_is_trivial and len(trained) == 2
    assert sum(p.requires_grad for p in network.parameters()) == sum(
        len(list(m.parameters(recurse=False))) for m in trained
    )
    assert all(p.requires_grad for p in whole.parameters())
    images = _images()
    for model in (frozen, partial, whole):  # the same seed: the same weights, cut differently
        model.eval()
    torch.testing.assert_close(frozen(images), whole(images))
    torch.testing.assert_close(partial(images), whole(images))
    with pytest.raises(UserError, match=r"trainable_layers=100000, but the backbone has only \d+"):
        _build(trainable_layers=100_000)


def test_input_norm_pretrained_uses_the_models_own_mean_and_std():
    with pytest.warns(UserWarning, match=r"pretrained on 160x160 images, but sees 32x32; set input_size: 160"):
        model = _build(input_norm="pretrained")
    preprocess = model.prefix[0]
    assert preprocess.norm == "pretrained" and "mean=[0.5, 0.5, 0.5]" in repr(preprocess)
    assert preprocess.mean.flatten().tolist() == [0.5] * 3 and preprocess.std.flatten().tolist() == [0.5] * 3
    imagenet = _build(input_norm="imagenet").prefix[0]
    assert imagenet.mean.flatten().tolist() == pytest.approx(IMAGENET_MEAN)
    assert _build(input_size=160).prefix[0].size == 160  # applied only when asked for


def test_weights_from_a_local_file(tmp_path):
    torch.manual_seed(5)
    imagenet_like = timm.create_model("test_resnet", num_classes=1000)
    torch.save(imagenet_like.state_dict(), tmp_path / "in1k.pth")
    model = _build(weights=str(tmp_path / "in1k.pth"), trainable_layers="all")
    loaded = model.body[0].state_dict()
    for key, value in imagenet_like.state_dict().items():
        if not key.startswith("fc."):  # the 1000-class head is dropped: the study's has 10 classes
            assert torch.equal(loaded[key], value), key
    torch.manual_seed(6)
    cifar = timm.create_model("test_resnet", num_classes=10)
    torch.save({"state_dict": cifar.state_dict(), "epoch": 30}, tmp_path / "cifar.pth")  # timm's train.py format
    head = _build(weights=str(tmp_path / "cifar.pth"), trainable_layers="all").body[-1]
    assert torch.equal(head.weight, cifar.fc.weight)  # a head of the right size is kept
    from safetensors.torch import save_file

    save_file(cifar.state_dict(), tmp_path / "model.safetensors")  # as the Hugging Face hub serves weights
    assert torch.equal(_build(weights=str(tmp_path / "model.safetensors")).body[-1].weight, cifar.fc.weight)
    torch.save(timm.create_model("test_vit", num_classes=10).state_dict(), tmp_path / "vit.pth")
    with pytest.raises(UserError, match=r"vit\.pth is not a state_dict of this timm model: \d+ missing") as error:
        _build(weights=str(tmp_path / "vit.pth"))
    assert "\n" not in str(error.value)


def test_an_unknown_timm_model_is_named_with_the_closest():
    with pytest.raises(UserError, match=r"timm has no model 'test_resnett' \(did you mean 'test_resnet'") as error:
        _build("test_resnett")
    assert "\n" not in str(error.value)


def test_imagenet_weights_offline_say_to_give_a_local_file(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' (offline)")

    import timm.models._builder as builder

    for name in ("load_state_dict_from_hf", "load_state_dict_from_url", "download_cached_file"):
        monkeypatch.setattr(builder, name, offline)
    with pytest.raises(UserError, match=r"could not get timm's pretrained weights from timm/test_resnet") as error:
        _build(weights="imagenet")
    message = str(error.value)
    assert "\n" not in message and "OSError" in message and "PATH" in message


def test_a_study_of_a_timm_teacher_and_its_student(tmp_path, cifar_dir):
    """A timm teacher (its frozen network's features cached) distilled by a small CNN; its record says
    where its weights came from; names are checked before anything trains."""
    config = tmp_path / "timm.yaml"
    config.write_text(
        "models: [tiny, student]\n"
        "zoo:\n"
        "  tiny: {arch: timm, timm_model: test_resnet, lr: 0.01, input_norm: pretrained}\n"
        "  student: {arch: small_cnn, lr: 0.003, teachers: [tiny]}\n"
        "weights: {tiny: none}\nseeds: [0]\ntrain: {epochs: 1, patience: null}\n"
        "data: {train_limit: 200, val_size: 40, test_limit: 50}\ncomparisons: []\n"
        "evaluation: {efficiency: false, figures: false, kd_reference: student}\n"
        f"perf: {{workers: 1, threads: 1, precision: fp32, cache_dir: {tmp_path / 'cache'}}}\n"
    )
    out = tmp_path / "out"
    args = ["run", "--config", str(config), "--data-dir", str(cifar_dir), "--out", str(out), "--device", "cpu"]
    assert main(args) == 0
    record = json.loads((out / "runs" / "tiny" / "seed-0" / "run.json").read_text())
    assert record["weights"] == "timm test_resnet: RANDOM INITIALISATION (weights: none), trained from scratch"
    assert record["trainable_params"] < record["params"] and record["epochs_trained"] == 1
    for sets, message in (
        (
            ["zoo.t2={arch: timm, timm_model: test_vit, lr: 0.1}", "models=[t2]"],
            r"weights\.t2: missing, but model 't2'",
        ),
        (["zoo.tiny.timm_model=resnet_tiny_nonexistent"], r"zoo\.tiny\.timm_model: timm has no model"),
    ):
        with pytest.raises(UserError, match=message):
            check_names(load_config(config, sets))
