"""Top-k and superclass accuracy against hand-made predictions whose answers are worked out by hand,
and top-5 against a direct numpy ranking on random logits."""

import numpy as np
import pytest

from distillbench.evaluation.metrics import prediction_metrics, superclass_metrics, top_k_accuracy

CLASSES = ["apple", "pear", "plum", "cat", "dog", "fox"]  # 6 classes: fruit 0-2, animals 3-5
SUPERCLASSES = {"fruit": ["apple", "pear", "plum"], "animals": ["cat", "dog", "fox"]}


def test_top5_counts_a_label_among_the_five_highest_logits():
    logits = np.array(
        [
            [9.0, 8.0, 7.0, 6.0, 5.0, 4.0],  # label 4 ranks 5th: in
            [9.0, 8.0, 7.0, 6.0, 5.0, 4.0],  # label 5 ranks 6th: out
            [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],  # label 0 ranks 6th: out
            [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],  # label 2 ranks 4th: in
        ]
    )
    assert top_k_accuracy(np.array([4, 5, 0, 2]), logits) == 0.5


def test_tied_logits_rank_as_argmax_does_lower_class_first():
    logits = np.zeros((4, 7))  # every logit tied: argmax says class 0, top-5 holds classes 0-4
    labels = np.array([0, 0, 1, 6])
    assert top_k_accuracy(labels, logits) == pytest.approx(3 / 4)
    assert top_k_accuracy(labels, logits, k=1) == np.mean(logits.argmax(1) == labels) == pytest.approx(2 / 4)
    # A tie at the fifth place: classes 1-6 share the second-highest logit, so 1-4 are in and 5, 6 out.
    partly_tied = np.array([[3.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]] * 3)
    assert top_k_accuracy(np.array([4, 5, 0]), partly_tied) == pytest.approx(2 / 3)


def test_top5_equals_a_direct_ranking_on_random_logits():
    generator = np.random.default_rng(0)
    logits = generator.normal(size=(500, 12))
    labels = generator.integers(0, 12, size=500)
    five_highest = np.argsort(-logits, axis=1)[:, :5]
    assert top_k_accuracy(labels, logits) == pytest.approx(np.mean((five_highest == labels[:, None]).any(1)))


@pytest.mark.parametrize("classes", [2, 5])
def test_top5_is_absent_with_five_classes_or_fewer(classes):
    logits = np.eye(classes)
    labels = np.arange(classes)
    assert top_k_accuracy(labels, logits) is None
    metrics = prediction_metrics(labels, logits, [str(c) for c in range(classes)])
    assert "top5_accuracy" not in metrics and metrics["test_accuracy"] == 1.0


def test_superclass_accuracy_coarse_and_fine():
    y_true = np.array([0, 0, 1, 2, 3, 3, 4, 5, 5, 5])
    y_pred = np.array([0, 1, 3, 2, 3, 4, 0, 5, 5, 2])
    # fruit (images 0-3): predicted fruit 0, 1, 3 (image 2 became a cat); exactly right 0, 3.
    # animals (images 4-9): predicted animal 4, 5, 7, 8 (6 and 9 became fruit); exactly right 4, 7, 8.
    metrics = superclass_metrics(y_true, y_pred, CLASSES, SUPERCLASSES)
    assert metrics["superclass_accuracy"] == {
        "fruit": {"accuracy": pytest.approx(3 / 4), "fine_accuracy": pytest.approx(2 / 4), "support": 4},
        "animals": {"accuracy": pytest.approx(4 / 6), "fine_accuracy": pytest.approx(3 / 6), "support": 6},
    }
    assert metrics["test_superclass_accuracy"] == pytest.approx(7 / 10)


def test_superclasses_need_not_list_classes_in_order():
    shuffled = {"animals": ["fox", "cat", "dog"], "fruit": ["plum", "apple", "pear"]}
    y_true, y_pred = np.array([5, 2, 3]), np.array([3, 1, 0])  # fox -> cat, plum -> pear, cat -> apple
    metrics = superclass_metrics(y_true, y_pred, CLASSES, shuffled)
    assert list(metrics["superclass_accuracy"]) == ["animals", "fruit"]
    assert metrics["superclass_accuracy"]["animals"] == {"accuracy": 0.5, "fine_accuracy": 0.0, "support": 2}
    assert metrics["superclass_accuracy"]["fruit"] == {"accuracy": 1.0, "fine_accuracy": 0.0, "support": 1}


def test_prediction_metrics_adds_top5_and_superclasses_where_they_apply():
    logits = np.eye(6)[[0, 3, 2, 2, 5, 1]]  # argmax: 0, 3, 2, 2, 5, 1
    y_true = np.array([0, 1, 2, 3, 4, 5])
    plain = prediction_metrics(y_true, logits, CLASSES)
    assert plain["test_accuracy"] == pytest.approx(2 / 6) and "superclass_accuracy" not in plain
    # A wrong image's label ties at 0 with four others, behind the predicted class and the lower tied
    # ones: image 1 (label 1 behind 3, 0) and image 3 (label 3 behind 2, 0, 1) are in the top 5,
    # images 4 (label 4 behind 5, 0, 1, 2, 3) and 5 (label 5 behind 1, 0, 2, 3, 4) are not.
    assert plain["top5_accuracy"] == pytest.approx(4 / 6)
    grouped = prediction_metrics(y_true, logits, CLASSES, SUPERCLASSES)
    assert grouped["test_superclass_accuracy"] == pytest.approx(3 / 6)  # images 0, 2, 4
    assert {k: v for k, v in grouped.items() if "superclass" not in k} == plain
