"""configs/kd-methods.yaml runs offline on generated data: every method, ensemble strategy and
control trains, and the report's "Which distillation works here" section and its figure are there."""

import json
from pathlib import Path

from PIL import Image

from distillbench.cli import main
from distillbench.config import load_config
from tests.conftest import study_args

PRESET = Path(__file__).parent.parent.parent / "configs" / "kd-methods.yaml"


def test_the_preset_names_at_least_twelve_students():
    cfg = load_config(PRESET)
    students = [key for key in cfg.models if cfg.zoo[key].teachers]
    assert len(students) >= 12 and "small_cnn" in cfg.models


def test_kd_methods_study_offline(tmp_path, cifar_dir, weight_files, cache_dir):
    out = tmp_path / "methods"
    args = [*study_args(cifar_dir, weight_files, cache_dir, out, "train.epochs=1",
            "data.train_limit=400", "data.val_size=100", "data.test_limit=200", "evaluation.efficiency=false",
            "evaluation.bootstrap_resamples=200", "seeds=[0,1]", "evaluation.figures=true")]  # fmt: skip
    assert main([*args, "--config", str(PRESET)]) == 0
    results = json.loads((out / "results.json").read_text())
    table = results["distillation"]
    cfg = load_config(PRESET)
    assert {row["model"] for row in table} == {key for key in cfg.models if key not in ("resnet50", "vgg16")}
    accuracies = [row["test_accuracy"] for row in table]
    assert accuracies == sorted(accuracies, reverse=True)
    by_model = {row["model"]: row for row in table}
    assert "vs_scratch" not in by_model["small_cnn"] and "vs_kd" not in by_model["kd_resnet50"]
    assert by_model["ensemble_mean_kl"]["method"] == "kd · mean_kl"
    assert by_model["dkd_resnet50"]["method"] == "dkd · mean_logits (warmup_epochs=5)"
    diff = by_model["dist_resnet50"]["vs_scratch"]["accuracy_diff"]
    expected = results["models"]["dist_resnet50"]["test_accuracy"] - results["models"]["small_cnn"]["test_accuracy"]
    assert abs(diff - expected) < 1e-9
    report = (out / "report.md").read_text()
    assert "## Which distillation works here" in report and "Shuffled teacher (control)" in report
    with Image.open(out / "figures" / "distillation_forest.png") as image:
        assert image.size[0] > 500 and image.size[1] > 300
