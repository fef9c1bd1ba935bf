"""A ``FeatureObjective`` through the training loop: the loop hands it the student's ``Features`` (the
very tensors ``forward_features`` gives on the batch), logs train_ce from their logits, and refuses
to batch it or to run it on anything but a whole ``Classifier``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from distillbench.config import ModelDef, TrainConfig
from distillbench.models import build_model
from distillbench.models.classifier import Classifier, Features
from distillbench.training.grouped import NotGroupable
from distillbench.training.loop import FeatureObjective, FitSettings, GroupMember, fit, fit_group
from distillbench.training.optim import build_optimizer

SPEC = ModelDef(arch="resnet8", lr=0.01, optimizer="sgd", init="torch", input_norm="cifar100")


def _model(seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    return build_model(SPEC, None, (3, 32, 32), 10)


def _settings(epochs: int = 1) -> FitSettings:
    config = TrainConfig(epochs=epochs, batch_size=8, patience=None)
    return FitSettings(config, optimizer=lambda params: build_optimizer(params, SPEC, False))


def _data(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    return images, torch.randint(0, 10, (n,), generator=generator)


def test_the_loop_hands_the_objective_the_features_of_the_batch():
    model, (images, labels) = _model(), _data()
    seen: list[tuple[torch.Tensor, Features, Features]] = []

    def loss(idx: torch.Tensor, x: torch.Tensor, y: torch.Tensor, features: Features, epoch: int) -> torch.Tensor:
        with torch.no_grad():  # the same weights and BatchNorm mode as the loop's forward, before its step
            direct = model.forward_features(x)
        seen.append((idx, features, direct))
        assert torch.equal(x, images[idx]) and torch.equal(y, labels[idx]) and epoch == 1
        return F.cross_entropy(features.logits, y) + sum(s.pow(2).mean() for s in features.stages)

    result = fit(model, (images, labels), None, _settings(), seed=0, objective=FeatureObjective(loss), name="s")
    assert len(seen) == 2  # 16 images, batches of 8
    for _, features, direct in seen:
        assert features.logits.requires_grad  # the student's, with gradients
        assert len(features.stages) == len(direct.stages) == 4
        for mine, theirs in zip(
            [*features.stages, features.embedding, features.logits], [*direct.stages, direct.embedding, direct.logits]
        ):
            assert mine.dtype == torch.float32
            torch.testing.assert_close(mine.detach(), theirs, rtol=0, atol=0)
    row = result.history[0]
    # train_ce: the cross-entropy of the features' logits; train_loss: the objective's (larger: a stage term)
    ce = sum(F.cross_entropy(f.logits.detach(), labels[i], reduction="sum").item() for i, f, _ in seen) / 16
    assert row["train_ce"] == pytest.approx(ce, rel=1e-5) and row["train_loss"] > row["train_ce"]


def test_a_feature_objective_needs_a_whole_classifier_and_never_joins_a_group():
    objective = FeatureObjective(lambda idx, x, y, features, epoch: F.cross_entropy(features.logits, y))
    with pytest.raises(TypeError, match="a feature method trains a whole Classifier on images"):
        fit(_model().body, _data(), None, _settings(), seed=0, objective=objective, name="body")
    members = [GroupMember(_model(seed), seed, objective, f"s{seed}") for seed in (0, 1)]
    with pytest.raises(NotGroupable, match="a feature method's run trains alone"):
        fit_group(members, _data(), None, _settings())


def test_learned_parts_train_with_the_student():
    torch.manual_seed(1)
    parts = torch.nn.Linear(64, 4)  # resnet8's embedding -> 4: trained by the student's optimiser
    initial = parts.weight.detach().clone()
    modes = []

    def loss(idx, x, y, student: Features, epoch: int) -> torch.Tensor:
        modes.append(parts.training)
        return F.cross_entropy(student.logits, y) + parts(student.embedding).pow(2).mean()

    images, labels = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8), torch.randint(0, 10, (16,))
    parts.eval()  # the loop puts them in train mode with the student
    fit(_model(), (images, labels), None, _settings(), seed=0, objective=FeatureObjective(loss, parts))
    assert modes == [True, True] and not torch.equal(parts.weight, initial)


def test_early_stopping_restores_the_learned_parts_with_the_student():
    from distillbench.training.loop import _Run

    module, parts = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)
    run = _Run(module, FeatureObjective(lambda *a: None, parts), "m", "m", TrainConfig(patience=5), True)
    row = {"train_loss": 1.0, "train_accuracy": 0.5, "val_accuracy": 0.5, "seconds": 1.0}
    run.record({**row, "epoch": 1, "val_loss": 1.0}, 3)  # the best epoch
    best = (module.weight.detach().clone(), parts.weight.detach().clone())
    with torch.no_grad():
        module.weight.add_(1.0)
        parts.weight.add_(1.0)
    run.record({**row, "epoch": 2, "val_loss": 2.0}, 3)
    result = run.finish(0.0)
    assert result.best_epoch == 1 and torch.equal(module.weight, best[0]) and torch.equal(parts.weight, best[1])
