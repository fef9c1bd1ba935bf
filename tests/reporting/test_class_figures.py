"""The confusion matrix and the per-class figure stay legible at 100 classes: a heatmap with no
text in its cells, names as large as the rows allow; the per-class bars sorted, only the best and
worst named. One test draws a 100-class model's figures (and the study's); the others inspect
figures without drawing them."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from distillbench.reporting.class_figures import (
    NAMED,
    SMALLEST_FONT,
    confusion_figure,
    label_step,
    per_class_figure,
)
from distillbench.reporting.confusions import class_order
from distillbench.reporting.study_figures import write_model_figures, write_study_figures
from tests.reporting.generated import generated_results


@pytest.fixture(scope="module")
def large() -> dict:
    return generated_results(figures=True)


def test_up_to_20_classes_every_cell_shows_its_count():
    matrix = np.arange(100).reshape(10, 10)
    fig = confusion_figure(matrix, [f"c{i}" for i in range(10)], "T")
    assert sorted(int(text.get_text()) for text in fig.axes[0].texts) == list(range(100))
    plt.close(fig)


def test_100_classes_are_a_heatmap_in_superclass_order_without_cell_text(large):
    study, model = large["study"], large["models"]["small_cnn"]
    order, words = class_order(large)
    fig = confusion_figure(model["confusion_matrix"], study["class_names"], "T", order, words, study["superclasses"])
    ax = fig.axes[0]
    assert sorted(text.get_text() for text in ax.texts) == sorted(study["superclasses"])  # their names, no counts
    labels = [label.get_text() for label in ax.get_yticklabels()]
    members = [name for group in study["superclasses"].values() for name in group]
    assert labels == members  # every class named, grouped by its superclass
    assert all(label.get_fontsize() >= SMALLEST_FONT for label in ax.get_yticklabels())
    shown = ax.images[0].get_array()
    matrix = np.asarray(model["confusion_matrix"], dtype=float)
    first, second = order[0], order[1]
    assert shown[0, 1] == pytest.approx(matrix[first, second] / matrix[first].sum())
    assert "grouped by superclass" in ax.get_title()
    plt.close(fig)


def test_class_names_that_cannot_fit_are_shown_every_kth():
    assert label_step(100, 8.5) == (1, pytest.approx(0.85 * 8.5 * 72 / 100))
    step, size = label_step(1000, 12.0)
    assert step == 7 and SMALLEST_FONT <= size <= 7  # a row is 0.86 points: every 7th name, at 5.1 points


def test_the_per_class_figure_is_sorted_and_names_only_the_extremes_of_100(large):
    per_class = large["models"]["small_cnn"]["per_class"]
    fig = per_class_figure(per_class, 0.5, "T")
    ax = fig.axes[0]
    heights = [bar.get_height() for bar in ax.patches]
    assert heights == sorted(heights, reverse=True) and len(heights) == 100
    lists = [text.get_text().split("\n") for text in ax.texts]
    assert [len(lines) for lines in lists] == [1 + NAMED, 1 + NAMED]
    best = max(per_class, key=lambda name: per_class[name]["accuracy"])
    assert lists[0][1] == f"1. {best}: {100 * per_class[best]['accuracy']:.1f}%"
    assert not [label for label in ax.get_xticklabels() if label.get_text().startswith("class_")]
    plt.close(fig)
    few = {name: per_class[name] for name in list(per_class)[:10]}
    fig = per_class_figure(few, 0.5, "T")
    names = [label.get_text() for label in fig.axes[0].get_xticklabels()]
    assert names == sorted(few, key=lambda name: -few[name]["accuracy"])
    plt.close(fig)


def test_a_100_class_15_model_study_draws_its_figures(large, tmp_path):
    write_study_figures(tmp_path, large)
    write_model_figures(tmp_path, large, "small_cnn", class_order(large))
    drawn = {path.name: Image.open(path).size for path in tmp_path.glob("*.png")}
    assert set(drawn) == {
        "accuracy.png",
        "accuracy_vs_cost.png",
        "distillation_forest.png",
        "small_cnn_confusion.png",
        "small_cnn_loss.png",
        "small_cnn_per_class.png",
        "small_cnn_reliability.png",
    }
    width, height = drawn["small_cnn_confusion.png"]
    assert width > 1000 and height > 1000  # sized for 100 rows of names
    assert drawn["accuracy.png"][1] > 15 * 40  # a row per model
