"""The Python API: ``run_study``, ``load_results``, ``load_config`` as a notebook uses them."""

from __future__ import annotations

import json

import pytest

import distillbench
from distillbench.errors import UserError


def test_a_notebook_runs_a_study_and_reads_its_results(tmp_path, cifar_dir, cache_dir):
    cfg = distillbench.load_config(
        overrides=[
            "models=[small_cnn]",
            "seeds=[0, 1]",
            "train.epochs=1",
            f"data.dir={cifar_dir}",
            "data.train_limit=400",
            "data.val_size=100",
            "data.test_limit=100",
            "evaluation.efficiency=false",
            "evaluation.figures=false",
            "comparisons=[]",
            "device=cpu",
            "perf.workers=1",
            f"perf.cache_dir={cache_dir}",
        ]
    )
    results = distillbench.run_study(cfg, tmp_path / "study")

    raw = json.loads((tmp_path / "study" / "results.json").read_text())
    model = results.models["small_cnn"]
    assert results.name == "paper" and results.synthetic_data is True and list(results.models) == ["small_cnn"]
    assert model.test_accuracy == raw["models"]["small_cnn"]["test_accuracy"]
    assert model.seeds == [0, 1] and model.arch == "small_cnn" and model.recipe["optimizer"] == "adam"
    low, high = model.test_accuracy_ci95
    assert low <= model.test_accuracy <= high
    assert results.summary() == [
        {
            "model": "small_cnn",
            "title": "Small CNN",
            "test_accuracy": model.test_accuracy,
            "test_accuracy_std": model.test_accuracy_std,
            "ci95_low": low,
            "ci95_high": high,
            "ece": raw["models"]["small_cnn"]["calibration"]["ece"],
            "seeds": 2,
        }
    ]
    assert distillbench.load_results(tmp_path / "study") == results  # what run_study returned is on disk


def test_load_config_applies_overrides_and_checks_names():
    assert distillbench.load_config(overrides=["train.epochs=5"]).train.epochs == 5
    with pytest.raises(UserError, match="unknown architecture 'lenet'"):
        distillbench.load_config(overrides=["zoo.small_cnn.arch=lenet"])


def test_load_results_of_a_directory_without_results_says_what_to_do(tmp_path):
    with pytest.raises(UserError, match="not a finished study.*distillbench run"):
        distillbench.load_results(tmp_path)
