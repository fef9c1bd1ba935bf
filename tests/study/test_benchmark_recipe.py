"""The CIFAR KD benchmark's recipe end to end: no validation split (data.val_size 0), the last
epoch's weights, test accuracy after every epoch, and the multistep schedule, through the CLI."""

import csv
import json

import numpy as np
import pytest

from distillbench.cli import main

EPOCHS = 3


@pytest.fixture(scope="module")
def benchmark_study(tmp_path_factory, cifar_dir) -> object:
    """Two seeds of the small CNN, trained as one batched group, on every training image."""
    out = tmp_path_factory.mktemp("benchmark") / "study"
    sets = [
        "models=[small_cnn]", "comparisons=[]", "seeds=[0,1]", f"train.epochs={EPOCHS}", "train.patience=null",
        "train.test_every_epoch=true", "data.val_size=0", "data.train_limit=200", "data.test_limit=200",
        "zoo.small_cnn.optimizer=sgd", "zoo.small_cnn.lr=0.05", "zoo.small_cnn.schedule=multistep",
        "zoo.small_cnn.milestones=[1,2]", "perf.batched=true", "perf.workers=1", "perf.precision=fp32",
        "evaluation.efficiency=false", "evaluation.figures=false",
        f"perf.cache_dir={tmp_path_factory.mktemp('cache')}",
    ]  # fmt: skip
    args = ["run", "--data-dir", str(cifar_dir), "--out", str(out), "--device", "cpu"]
    assert main([*args, *[a for s in sets for a in ("--set", s)]]) == 0
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_no_validation_last_epoch_kept_and_test_accuracy_every_epoch(benchmark_study, seed):
    run = benchmark_study / "runs" / "small_cnn" / f"seed-{seed}"
    with open(run / "history.csv", newline="") as handle:
        history = list(csv.DictReader(handle))
    record = json.loads((run / "run.json").read_text())
    assert len(history) == EPOCHS and not any(key.startswith("val_") for key in history[0])
    assert all(row["test_accuracy"] and row["test_loss"] for row in history)
    # the saved test predictions are the last epoch's weights: their accuracy is that row's
    with np.load(run / "predictions.npz", allow_pickle=False) as saved:
        accuracy = float(np.mean(saved["logits"].argmax(1) == saved["y_true"]))
    assert float(history[-1]["test_accuracy"]) == pytest.approx(accuracy, abs=1e-6)  # float32 mean; 1 image: 0.005
    assert record["selected"] == "last_epoch" and record["best_epoch"] == record["epochs_trained"] == EPOCHS
    assert record["trained_with"] == ["small_cnn seed 0", "small_cnn seed 1"]  # the batched path
    # multistep, milestones [1, 2]: 0.05, then x0.1 after epoch 1 and again after epoch 2
    assert [float(row["lr"]) for row in history] == pytest.approx([0.05, 0.005, 0.0005])
