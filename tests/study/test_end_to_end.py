"""The CLI runs all five models on the fixture; every file of the layout is checked."""

import csv
import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from distillbench.cli import main
from distillbench.data.cifar10 import CLASS_NAMES

MODELS = ["small_cnn", "resnet50", "vgg16", "kd_resnet50", "kd_ensemble"]


def test_layout_is_complete(paper_study):
    for name in ("config.yaml", "environment.json", "results.json", "report.md", "figures/accuracy.png"):
        assert (paper_study / name).is_file(), name
    for key in MODELS:
        for kind in ("confusion", "loss", "per_class"):
            assert (paper_study / "figures" / f"{key}_{kind}.png").is_file()
        run = paper_study / "runs" / key
        for name in ("predictions.npz", "history.csv", "model.pt", "run.json"):
            assert (run / name).is_file(), f"{key}/{name}"
    assert not list(paper_study.rglob("*.tmp")), "an atomic write left a temporary file"


def test_files_parse(paper_study):
    config = yaml.safe_load((paper_study / "config.yaml").read_text())
    assert config["models"] == MODELS and config["train"]["epochs"] == 3
    env = json.loads((paper_study / "environment.json").read_text())
    assert env["versions"]["torch"] and env["device"] == "cpu" and env["torch_threads"] >= 1
    for png in paper_study.glob("figures/*.png"):
        with Image.open(png) as image:
            assert image.size[0] > 400 and image.size[1] > 250
    with np.load(paper_study / "runs" / "small_cnn" / "predictions.npz", allow_pickle=False) as saved:
        assert saved["logits"].shape == (400, 10)
        np.testing.assert_array_equal(saved["y_pred"], saved["logits"].argmax(1))
    state = torch.load(paper_study / "runs" / "vgg16" / "model.pt", weights_only=True)
    assert "body.0.weight" in state


def test_results_match_scikit_learn_on_saved_predictions(paper_study):
    results = json.loads((paper_study / "results.json").read_text())
    for key in MODELS:
        with np.load(paper_study / "runs" / key / "predictions.npz") as saved:
            y_true, y_pred = saved["y_true"], saved["y_pred"]
        entry = results[key]
        assert entry["test_accuracy"] == pytest.approx(np.mean(y_true == y_pred))
        p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=range(10), zero_division=0)
        for i, name in enumerate(CLASS_NAMES):
            row = entry["per_class"][name]
            assert (row["precision"], row["recall"], row["f1"], row["support"]) == pytest.approx((p[i], r[i], f[i], s[i]))
            assert row["accuracy"] == pytest.approx(np.mean(y_pred[y_true == i] == i))
        assert entry["confusion_matrix"] == confusion_matrix(y_true, y_pred, labels=range(10)).tolist()
        history = list(csv.DictReader(open(paper_study / "runs" / key / "history.csv")))
        assert len(history) == entry["epochs_trained"] == len(entry["history"])
        assert set(history[0]) >= {"epoch", "train_loss", "val_loss", "train_accuracy", "val_accuracy", "lr", "seconds"}
        assert 1 <= entry["best_epoch"] <= entry["epochs_trained"]
        best = min(range(len(history)), key=lambda i: float(history[i]["val_loss"]))
        assert entry["best_epoch"] == best + 1
        assert entry["params"] >= entry["trainable_params"] > 0 and entry["train_seconds"] > 0


def test_small_cnn_learns_and_ensemble_teacher_is_reported(paper_study):
    results = json.loads((paper_study / "results.json").read_text())
    assert results["small_cnn"]["test_accuracy"] > 0.4  # chance is 0.1
    with np.load(paper_study / "runs" / "resnet50" / "predictions.npz") as r, np.load(
        paper_study / "runs" / "vgg16" / "predictions.npz"
    ) as v:
        expected = np.mean(((r["logits"] + v["logits"]) / 2).argmax(1) == r["y_true"])
    assert results["teachers"]["ensemble"]["test_accuracy"] == pytest.approx(expected)
    assert results["teachers"]["ensemble"]["members"] == ["resnet50", "vgg16"]


def test_report_has_the_papers_tables_and_loud_warnings(paper_study):
    report = (paper_study / "report.md").read_text()
    assert "## Table 1: test accuracy" in report and "## Table 2" in report
    assert "GENERATED DATA" in report and "RANDOM BACKBONE WEIGHTS" not in report
    for key in MODELS:
        assert f"figures/{key}_confusion.png" in report
    for name in CLASS_NAMES:
        assert f"| {name} |" in report
    results = json.loads((paper_study / "results.json").read_text())
    assert f"{100 * results['kd_ensemble']['test_accuracy']:.2f}" in report


def test_report_command_rebuilds_identical_results(paper_study):
    before = json.loads((paper_study / "results.json").read_text())
    (paper_study / "results.json").unlink()
    (paper_study / "report.md").unlink()
    (paper_study / "figures" / "accuracy.png").unlink()
    assert main(["report", str(paper_study)]) == 0
    assert json.loads((paper_study / "results.json").read_text()) == before
    assert (paper_study / "report.md").is_file() and (paper_study / "figures" / "accuracy.png").is_file()
