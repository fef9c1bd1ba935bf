"""The Python API: ``run_study``, ``load_results``, ``load_config`` as a notebook uses them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import distillbench
from distillbench.errors import UserError
from distillbench.study.results import SCHEMA_VERSION


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
            "test_top5_accuracy": raw["models"]["small_cnn"]["test_top5_accuracy"],  # 10 classes
            "method": None,
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


def test_a_model_with_one_finished_seed_has_no_interval(tmp_path):
    """One seed: results.json has no std or interval (null); the API says None, and summary() too."""
    study = tmp_path / "study"
    study.mkdir()
    source = json.loads((Path(__file__).parent / "fixtures" / "stored_study" / "results.json").read_text())
    source["schema_version"] = SCHEMA_VERSION  # the fixture's fields that this test reads are in every version
    for other in source["models"].values():
        other.setdefault("method", None)
    entry = source["models"]["small_cnn"]
    entry.update(test_accuracy_std=None, test_accuracy_ci95=None, seeds=entry["seeds"][:1])
    (study / "results.json").write_text(json.dumps(source))
    model = distillbench.load_results(study).models["small_cnn"]
    assert model.test_accuracy_ci95 is None and model.test_accuracy_std is None and model.seeds == [0]
    row = next(r for r in distillbench.load_results(study).summary() if r["model"] == "small_cnn")
    assert row["ci95_low"] is None and row["ci95_high"] is None and row["seeds"] == 1


def _model(accuracy: float, **fields) -> dict:
    return {
        "title": "KD",
        "arch": "small_cnn",
        "teachers": ["resnet50"],
        "test_accuracy": accuracy,
        "test_accuracy_std": 0.01,
        "test_accuracy_ci95": [accuracy - 0.1, accuracy + 0.1],
        "seeds": [{"seed": 0}, {"seed": 1}],
        "calibration": {"ece": 0.05},
        "per_class": {},
        "efficiency": None,
        **fields,
    }


def _write_results(out, schema_version: int, models: dict) -> None:
    out.mkdir()
    raw = {"schema_version": schema_version, "study": {"name": "cifar100"}, "models": models, "teachers": {}}
    (out / "results.json").write_text(json.dumps(raw))


def test_load_results_reads_top5_and_the_method_of_schema_3(tmp_path):
    student = _model(0.6, test_top5_accuracy=0.85, method="kd · mean_logits", aggregation="mean_logits")
    _write_results(tmp_path / "study", 3, {"kd": student, "scratch": _model(0.5, method=None)})
    results = distillbench.load_results(tmp_path / "study")
    kd, scratch = results.models["kd"], results.models["scratch"]
    assert (kd.test_top5_accuracy, kd.method, kd.seeds) == (0.85, "kd · mean_logits", [0, 1])
    assert (scratch.test_top5_accuracy, scratch.method) == (None, None)  # 5 classes or fewer; no teachers
    assert [row["test_top5_accuracy"] for row in results.summary()] == [0.85, None]
    assert results.schema_version == 3 and results.distillation is None


def test_load_results_of_an_older_schema_says_to_rebuild_the_report(tmp_path):
    _write_results(tmp_path / "study", 2, {"kd": _model(0.6)})
    with pytest.raises(UserError, match="schema 2, this distillbench reads 3.*distillbench report"):
        distillbench.load_results(tmp_path / "study")
