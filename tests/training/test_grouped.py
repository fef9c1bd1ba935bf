"""Runs trained side by side as one batched model compute what each computes alone: forward,
dropout streams, Adam steps, histories, early stopping and best-weight restore."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from distillbench.config import ModelDef, TrainConfig
from distillbench.models import build_model
from distillbench.models.classifier import Float32Linear
from distillbench.training.grouped import GroupedModel, NotGroupable, load_member
from distillbench.training.loop import FitSettings, GroupMember, cross_entropy_objective, fit, fit_group
from distillbench.training.optim import build_optimizer
from distillbench.training.randomness import derive_seed, global_rng, stream_generator

SPEC = ModelDef(arch="small_cnn", lr=1e-3)


def _small_cnn(seed: int) -> nn.Module:
    with global_rng(derive_seed(seed, "init")):
        return build_model(SPEC, None, (3, 32, 32), 10)


def _data(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=generator)
    images = torch.randint(0, 120, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    images[torch.arange(n), labels % 3] += 100  # a little signal, so that training moves
    return images, labels


def test_grouped_forward_is_each_members_forward():
    members = [_small_cnn(seed) for seed in (0, 1, 2)]
    group = GroupedModel(members, [stream_generator(s, "dropout") for s in (0, 1, 2)]).eval()
    images = _data(16)[0]
    batches = torch.stack([images, images.flip(0), images.roll(3, 0)])
    with torch.no_grad():
        logits = group(batches)
        for index, member in enumerate(members):
            torch.testing.assert_close(logits[index], member.eval()(batches[index]), atol=1e-5, rtol=1e-5)
    load_member(target := _small_cnn(9), group, 1)
    for (name, mine), theirs in zip(target.state_dict().items(), members[1].state_dict().values()):
        assert torch.equal(mine, theirs), name


def test_grouped_dropout_draws_each_members_own_masks():
    members = [_small_cnn(seed) for seed in (0, 1)]
    group = GroupedModel(members, [stream_generator(s, "dropout") for s in (0, 1)]).train()
    images = _data(8)[0]
    logits = group(torch.stack([images, images]))
    for index, member in enumerate(members):
        with global_rng(derive_seed(index, "dropout")):  # what fit seeds for a run alone
            alone = member.train()(images)
        torch.testing.assert_close(logits[index], alone, atol=1e-5, rtol=1e-5)


def _wrong_labels(idx, x, y, logits, epoch):
    return F.cross_entropy(logits, (y + 1) % 10)  # drives validation loss up: stops early


def test_fit_group_equals_fit_alone_member_by_member():
    train, val = _data(256, seed=1), _data(64, seed=2)
    cfg = TrainConfig(epochs=4, batch_size=32, patience=1)
    settings = FitSettings(cfg, lambda params: build_optimizer(params, SPEC))
    runs = [(0, cross_entropy_objective), (1, cross_entropy_objective), (0, _wrong_labels)]

    alone = []
    for seed, objective in runs:
        module = _small_cnn(seed)
        result = fit(module, train, val, settings, seed=seed, objective=objective)
        alone.append((module, result))
    done = []
    members = [GroupMember(_small_cnn(seed), seed, objective, f"m{i}") for i, (seed, objective) in enumerate(runs)]
    results = fit_group(members, train, val, settings, on_done=lambda i, r: done.append(i))
    assert done[0] == 2 and sorted(done) == [0, 1, 2]  # the member that stopped early was handed over first
    assert results[2].epochs_trained < cfg.epochs
    for member, result, (module, expected) in zip(members, results, alone):
        assert (result.epochs_trained, result.best_epoch) == (expected.epochs_trained, expected.best_epoch)
        for row, expected_row in zip(result.history, expected.history):
            for column in ("train_loss", "train_ce", "train_accuracy", "val_loss", "val_accuracy"):
                assert row[column] == pytest.approx(expected_row[column], abs=1e-4), column
        for (name, mine), theirs in zip(member.module.state_dict().items(), module.state_dict().values()):
            torch.testing.assert_close(mine, theirs, atol=1e-4, rtol=1e-3, msg=name)


def test_heads_on_cached_features_group_too():
    heads = [nn.Sequential(nn.Flatten(), nn.Linear(8, 4), nn.ReLU(), Float32Linear(4, 3)) for _ in range(2)]
    group = GroupedModel(heads, [torch.Generator(), torch.Generator()])
    features = torch.randn(2, 5, 8, 1, 1)
    with torch.no_grad():
        out = group(features)
        for index, head in enumerate(heads):
            torch.testing.assert_close(out[index], head(features[index]))


def test_what_cannot_be_grouped_says_so():
    with_bn = [nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2)) for _ in range(2)]
    with pytest.raises(NotGroupable, match="BatchNorm2d"):
        GroupedModel(with_bn, [torch.Generator(), torch.Generator()])
    different = [nn.Sequential(nn.Flatten(), nn.Linear(8, n)) for n in (2, 3)]
    with pytest.raises(NotGroupable, match="different structure"):
        GroupedModel(different, [torch.Generator(), torch.Generator()])


def _alone_and_grouped(runtime, val_images: int) -> list[tuple[nn.Module, nn.Module]]:
    """Seeds 0 and 1 of the small CNN trained 2 epochs on 256 images on ``runtime``, each alone and
    both as one group: (group member, the same run alone) per seed."""
    train, val = _data(256, seed=1), _data(val_images, seed=2)
    settings = FitSettings(
        TrainConfig(epochs=2, batch_size=32, patience=None), lambda params: build_optimizer(params, SPEC)
    )

    alone = []
    for seed in (0, 1):
        module = _small_cnn(seed).to(runtime.device)
        fit(module, train, val, settings, seed=seed, runtime=runtime)
        alone.append(module)
    members = [
        GroupMember(_small_cnn(seed).to(runtime.device), seed, cross_entropy_objective, f"m{seed}") for seed in (0, 1)
    ]
    fit_group(members, train, val, settings, runtime=runtime)
    return [(member.module, module) for member, module in zip(members, alone)]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fit_group_equals_fit_alone_on_cuda():
    from distillbench.training.runtime import Runtime

    for member, module in _alone_and_grouped(Runtime(device=torch.device("cuda"), precision="fp32"), 64):
        for mine, theirs in zip(member.state_dict().values(), module.state_dict().values()):
            torch.testing.assert_close(mine, theirs, atol=1e-4, rtol=1e-3)


# Batched members differ from solo runs by float summation order only, which training then amplifies
# like any rounding difference. Measured on the development CPU with this test's models (logits of
# size ~3): 2 epochs of 256 images, fp32 3e-6, bf16 2e-7; of 512 images, fp32 5e-7 and bf16 1.4e-2;
# 4 epochs of 512, fp32 9e-3 and bf16 2.9e-2. The README states these; the bounds leave room.
BATCHED_TOLERANCE = {"fp32": 1e-4, "bf16": 5e-2}


@pytest.mark.parametrize("precision", list(BATCHED_TOLERANCE))
def test_batched_members_equal_solo_runs_within_the_stated_tolerance(precision):
    from distillbench.training.loop import predict
    from distillbench.training.runtime import Runtime

    runtime = Runtime(precision=precision)
    val = _data(128, seed=2)
    for member, module in _alone_and_grouped(runtime, len(val[1])):
        difference = (predict(member, val[0], runtime) - predict(module, val[0], runtime)).abs().max()
        assert difference <= BATCHED_TOLERANCE[precision], difference
