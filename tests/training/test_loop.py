import pytest
import torch
import torch.nn.functional as F

from distillbench.config import ModelDef, TrainConfig
from distillbench.errors import UserError
from distillbench.models import build_model
from distillbench.training.loop import (
    EpochSplits,
    FitSettings,
    GroupMember,
    cross_entropy_objective,
    fit,
    fit_group,
    predict,
)
from distillbench.training.optim import EarlyStopping, build_optimizer
from distillbench.training.runtime import Runtime


def _adam(lr: float, config: TrainConfig, augment=None) -> FitSettings:
    """``config`` with Adam at ``lr`` and a constant rate."""
    return FitSettings(
        config, lambda params: build_optimizer(params, ModelDef(arch="small_cnn", lr=lr)), augment=augment
    )


def test_bf16_autocast_is_applied_and_close_to_fp32():
    torch.manual_seed(0)
    model = build_model(ModelDef(arch="small_cnn", lr=1e-3), None, (3, 32, 32), 10)
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    full, half = predict(model, images, Runtime(), 32), predict(model, images, Runtime(precision="bf16"), 32)
    assert half.dtype == torch.float32 and not torch.equal(full, half)  # bf16 really ran
    torch.testing.assert_close(half, full, rtol=0.05, atol=0.05)


def test_early_stopping_restores_the_best_epoch():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    x = torch.randn(64, 4)
    # Validation labels are the opposite of what training teaches: val loss rises from epoch 1 on.
    val = (x, 1 - (x[:, 0] > 0).long())
    train = (x, (x[:, 0] > 0).long())
    result = fit(model, train, val, _adam(0.1, TrainConfig(epochs=10, batch_size=16, patience=2)), seed=0)
    losses = [row["val_loss"] for row in result.history]
    best = losses.index(min(losses)) + 1
    assert result.best_epoch == best and result.epochs_trained == best + 2  # stopped after 2 stale epochs
    restored = torch.nn.functional.cross_entropy(model(val[0]), val[1]).item()
    assert abs(restored - min(losses)) < 1e-5


def test_augmentation_transforms_every_training_batch_and_never_validation():
    seen = []

    def spy(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        seen.append(batch.clone())
        return batch.flip(-1)

    torch.manual_seed(0)
    model = build_model(ModelDef(arch="small_cnn", lr=1e-3), None, (3, 32, 32), 10)
    train = (torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8), torch.randint(0, 10, (40,)))
    val = (torch.full((8, 3, 32, 32), 7, dtype=torch.uint8), torch.zeros(8, dtype=torch.long))
    fit(model, train, val, _adam(1e-3, TrainConfig(epochs=2, batch_size=16, patience=None), augment=spy), seed=0)
    assert [len(batch) for batch in seen] == [16, 16, 8] * 2  # every training batch, both epochs
    seen_images = {bytes(image.numpy()) for batch in seen for image in batch}
    assert seen_images == {bytes(image.numpy()) for image in train[0]}  # each training image, no val image


def test_compile_switch_trains_through_torch_compile():
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    x = torch.randn(256, 4)
    data = (x, (x[:, 0] > 0).long())
    frames_before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    settings = _adam(0.02, TrainConfig(epochs=5, batch_size=64, patience=None))
    result = fit(model, data, data, settings, seed=0, runtime=Runtime(compile=True))
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > frames_before  # dynamo really compiled
    assert result.history[-1]["val_accuracy"] > 0.9


def test_compile_failure_is_a_user_error(monkeypatch):
    def broken_backend(graph, example_inputs):
        raise RuntimeError("no C++ compiler")

    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda module: real_compile(module, backend=broken_backend))
    model = torch.nn.Linear(4, 2)
    data = (torch.randn(32, 4), torch.zeros(32, dtype=torch.long))
    with pytest.raises(UserError, match=r"perf\.compile: torch\.compile could not compile model .*perf\.compile=false"):
        fit(model, data, data, _adam(0.01, TrainConfig(epochs=1, batch_size=16)), seed=0, runtime=Runtime(compile=True))


def test_fp16_scales_the_loss_so_small_gradients_do_not_underflow():
    """A loss of ~1e-9 has gradients far below fp16's smallest number (6e-8): without loss scaling
    they flush to zero and nothing trains; fp16 training scales the loss (GradScaler) first."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    before = model[0].weight.detach().clone()
    x = torch.randn(64, 8)
    data = (x, (x[:, 0] > 0).long())

    def tiny_loss(idx, xb, yb, logits, epoch):
        return 1e-9 * torch.nn.functional.cross_entropy(logits, yb)

    settings = _adam(1e-3, TrainConfig(epochs=1, batch_size=64, patience=None))
    fit(model, data, data, settings, seed=0, runtime=Runtime(precision="fp16"), objective=tiny_loss)
    assert not torch.equal(model[0].weight, before)


def test_same_seed_same_run_whatever_the_global_rng_did_before():
    """Batch order and dropout come from the run's own streams: drawing from torch's global RNG
    between two runs of the same seed changes nothing, and leaves that RNG where it was."""
    results = []
    for noise in (0, 5):
        torch.manual_seed(noise)
        torch.rand(noise)
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = build_model(ModelDef(arch="small_cnn", lr=1e-3), None, (3, 32, 32), 10)
        train = (torch.randint(0, 256, (96, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)),
                 torch.arange(96) % 10)  # fmt: skip
        state = torch.get_rng_state()
        fit(model, train, train, _adam(1e-3, TrainConfig(epochs=1, batch_size=32, patience=None)), seed=3)
        assert torch.equal(torch.get_rng_state(), state)
        results.append(predict(model, train[0], Runtime(), 64))
    torch.testing.assert_close(results[0], results[1], rtol=0, atol=0)


def test_early_stopping_counts_stale_epochs_and_keeps_the_best_weights():
    model = torch.nn.Linear(2, 1)
    stopping = EarlyStopping(model, patience=2)
    for epoch, loss in enumerate([1.0, 0.5, 0.7, 0.6], start=1):
        if epoch == 2:
            best = {k: v.clone() for k, v in model.state_dict().items()}
        assert stopping.update(epoch, loss, model) == (loss == min([1.0, 0.5, 0.7, 0.6][:epoch]))
        with torch.no_grad():
            model.weight.add_(1.0)
    assert stopping.should_stop and stopping.best_epoch == 2 and stopping.best_loss == 0.5
    stopping.restore(model)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in best.items())
    assert not EarlyStopping(model, patience=None).should_stop


def _recording(calls: list[int]):
    """Cross-entropy that records the epoch it is told, once per call (one call per step)."""

    def objective(idx, x, y, logits, epoch):
        calls.append(epoch)
        return torch.nn.functional.cross_entropy(logits, y)

    return objective


def test_the_objective_is_told_the_epoch_it_trains_once_per_step():
    """Warm-ups (DKD's) read the epoch from the loop: 1..E in order, one call per step, in ``fit``
    and for each member of ``fit_group``."""
    x = torch.randn(40, 4, 1, 1)  # features as a cached prefix gives them: a head on them can be grouped
    data = (x, (x[:, 0, 0, 0] > 0).long())
    settings = _adam(1e-3, TrainConfig(epochs=3, batch_size=16, patience=None))  # 3 steps an epoch
    expected = [epoch for epoch in (1, 2, 3) for _ in range(3)]

    def head() -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))

    alone: list[int] = []
    fit(head(), data, data, settings, seed=0, objective=_recording(alone))
    assert alone == expected
    calls: list[list[int]] = [[], []]
    fit_group([GroupMember(head(), seed, _recording(calls[seed]), f"m{seed}") for seed in (0, 1)], data, data, settings)
    assert calls == [expected, expected]


def _features(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cached-prefix-like features [n, 4, 1, 1] and a label the first feature decides."""
    x = torch.randn(n, 4, 1, 1, generator=torch.Generator().manual_seed(seed))
    return x, (x[:, 0, 0, 0] > 0).long()


def _head() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))


def _loss_and_accuracy(module: torch.nn.Module, split: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, float]:
    logits = predict(module, split[0], Runtime(), 64)
    return F.cross_entropy(logits, split[1]).item(), (logits.argmax(1) == split[1]).float().mean().item()


def test_without_validation_every_epoch_trains_and_the_last_is_kept_solo_and_batched():
    """val None (data.val_size 0): no val_* keys, no early stop, the last epoch's weights, solo and
    for each member of a batched group (whose module gets its weights from the group at the end)."""
    train, test = _features(64, 0), _features(48, 1)
    settings = _adam(0.05, TrainConfig(epochs=4, batch_size=16, patience=None))
    torch.manual_seed(0)
    solo, members = _head(), [GroupMember(_head(), seed, cross_entropy_objective, f"m{seed}") for seed in (0, 1)]
    results = [fit(solo, train, EpochSplits(None, test), settings, seed=0)]
    results += fit_group(members, train, EpochSplits(None, test), settings)
    for module, result in zip([solo] + [m.module for m in members], results):
        assert (result.selected, result.best_epoch, result.epochs_trained) == ("last_epoch", 4, 4)
        assert [list(row) for row in result.history] == [
            ["epoch", "train_loss", "train_ce", "train_accuracy", "test_loss", "test_accuracy", "lr", "seconds"]
        ] * 4
        last = result.history[-1]
        assert _loss_and_accuracy(module, test) == pytest.approx((last["test_loss"], last["test_accuracy"]), abs=1e-6)
    bare = fit(_head(), train, EpochSplits(None), settings, seed=0)  # nothing measured at all
    assert "test_loss" not in bare.history[0] and bare.selected == "last_epoch"


def test_the_test_split_is_recorded_every_epoch_and_never_selects_the_weights():
    """With validation and test: the kept weights are the best validation epoch's even though the
    test split (labelled as training teaches) keeps improving after it."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    x = torch.randn(64, 4)
    train, val = (x, (x[:, 0] > 0).long()), (x, 1 - (x[:, 0] > 0).long())  # val loss rises from epoch 1 on
    settings = _adam(0.1, TrainConfig(epochs=5, batch_size=16, patience=None))
    result = fit(model, train, EpochSplits(val, train), settings, seed=0)
    assert all({"val_loss", "val_accuracy", "test_loss", "test_accuracy"} <= set(row) for row in result.history)
    val_losses = [row["val_loss"] for row in result.history]
    assert result.selected == "validation" and result.best_epoch == val_losses.index(min(val_losses)) + 1 < 5
    assert result.history[-1]["test_accuracy"] > result.history[result.best_epoch - 1]["test_accuracy"]
    assert _loss_and_accuracy(model, val)[0] == pytest.approx(min(val_losses), abs=1e-5)
