"""The setup's Training line names the optimizer, schedule and budget the models really trained
with, as their recipes in results.json record them, and says "per model" where they differ."""

import copy
import json
from pathlib import Path

from distillbench.reporting.report import render_markdown

STORED = json.loads((Path(__file__).parent.parent / "fixtures" / "stored_study" / "results.json").read_text())


def _lines(results: dict) -> tuple[str, list[str]]:
    """The Training line and the per-model lines below it."""
    lines = render_markdown(results).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("- **Training:**"))
    per_model = [line for line in lines[start + 1 :] if line.startswith("  - ")]
    return lines[start], per_model


def _with_recipe(results: dict, key: str, **changes) -> dict:
    results = copy.deepcopy(results)
    results["models"][key]["recipe"].update(changes)
    return results


def test_a_shared_recipe_is_said_once_with_each_models_learning_rate():
    training, per_model = _lines(STORED)
    assert training.startswith(
        "- **Training:** Adam, constant learning rate 0.001 (0.0001 for Fine-tuned ResNet50 and Fine-tuned VGG16), "
        "batch 64, up to 2 epochs, no augmentation (as in the paper)"
    )
    assert per_model == []


def test_an_sgd_model_among_adam_models_is_named_with_its_own_optimizer():
    results = _with_recipe(
        STORED, "kd_resnet50", optimizer="sgd", nesterov=True, lr=0.05, schedule="cosine", warmup_epochs=1.0
    )
    training, per_model = _lines(results)
    assert "Adam" not in training and "SGD" not in training
    assert "optimizer and schedule per model (below)" in training
    assert "batch 64, up to 2 epochs" in training
    assert len(per_model) == len(results["models"])  # each model's optimizer is said on its own line
    assert per_model[3].startswith(
        "  - KD from ResNet50: SGD (Nesterov momentum 0.9), lr 0.05 (cosine schedule after 1 warm-up epoch(s))"
    )
    assert per_model[0].startswith("  - Small CNN: Adam, lr 0.001 (constant)")


def test_every_model_on_sgd_is_said_once_and_other_departures_get_their_own_line():
    results = copy.deepcopy(STORED)
    for key in results["models"]:
        results = _with_recipe(results, key, optimizer="sgd", momentum=0.8, epochs=5)
    results = _with_recipe(results, "small_cnn", label_smoothing=0.1)
    training, per_model = _lines(results)
    assert training.startswith("- **Training:** SGD (momentum 0.8), constant learning rate 0.001 (0.0001 for ")
    assert "up to 5 epochs" in training and "per model" not in training
    assert per_model == [
        "  - Small CNN: SGD (momentum 0.8), lr 0.001 (constant), no weight decay, label smoothing 0.1, 5 epochs of "
        "batch 64, trainable layers 0, input the data's size (none normalisation), augmentation none."
    ]


def test_shared_weight_decay_and_multistep_are_said_once_and_a_different_decay_per_model():
    """The CIFAR-100 benchmark's recipe: every model on SGD with decay on every parameter and x0.1 steps."""
    results = copy.deepcopy(STORED)
    for key in results["models"]:
        results = _with_recipe(
            results,
            key,
            optimizer="sgd",
            weight_decay=5e-4,
            decay_all=True,
            schedule="multistep",
            milestones=[150, 180, 210],
            gamma=0.1,
        )
    training, per_model = _lines(results)
    assert "x0.1 after epochs 150, 180, 210, weight decay 0.0005 on every parameter, batch 64" in training
    assert per_model == []
    results = _with_recipe(results, "small_cnn", weight_decay=0.0)
    training, per_model = _lines(results)
    assert "weight decay per model (below)" in training
    assert len(per_model) == len(results["models"])
    assert ", no weight decay, " in per_model[0] and ", weight decay 0.0005 on every parameter, " in per_model[1]


def test_without_finished_models_the_line_names_no_optimizer():
    results = copy.deepcopy(STORED)
    results["models"] = {}
    training, _ = _lines(results)
    assert training.startswith("- **Training:** batch 64, up to 2 epochs, no augmentation")
