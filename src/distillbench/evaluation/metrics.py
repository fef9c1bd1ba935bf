"""Classification metrics from one set of predictions, so no two tables can disagree.

``prediction_metrics`` is what a run's test logits give: top-1 accuracy, per-class
precision/recall/F1/accuracy/support and the confusion matrix of the argmax; top-5 accuracy when
there are more than 5 classes (with 5 or fewer it is 1 by construction, so it is left out); and,
for a dataset that groups its classes into superclasses (CIFAR-100's 20), the accuracy per
superclass, coarse (the predicted class lies in the true class's superclass) and fine (it is the
true class).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support, top_k_accuracy_score

TOP_K = 5  # results.json's ``top5_accuracy``: the standard second number on CIFAR-100 and ImageNet


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Test accuracy, per-class precision/recall/F1/accuracy/support, and the confusion matrix.

    Per-class accuracy is correct / support of that class: by definition the class's recall.
    """
    labels = np.arange(len(class_names))
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    correct = np.diag(matrix)
    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "accuracy": float(correct[i] / support[i]) if support[i] else 0.0,
            "support": int(support[i]),
        }
        for i, name in enumerate(class_names)
    }
    return {
        "test_accuracy": float(accuracy_score(y_true, y_pred)),
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
    }


def top_k_accuracy(y_true: np.ndarray, logits: np.ndarray, k: int = TOP_K) -> float | None:
    """The fraction of images whose label is among the ``k`` highest logits; None when there are
    ``k`` classes or fewer (every label is then among them).

    Tied logits rank as ``argmax`` ranks them, the lower class index first, so that top-1 here is
    the test accuracy and top-k is never below it. scikit-learn ranks ties the other way (the higher
    index first), so it is given the classes in reverse order.
    """
    classes = logits.shape[1]
    if classes <= k:
        return None
    reversed_labels = classes - 1 - np.asarray(y_true)
    return float(top_k_accuracy_score(reversed_labels, logits[:, ::-1], k=k, labels=np.arange(classes)))


def superclass_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str], superclasses: Mapping[str, Sequence[str]]
) -> dict[str, Any]:
    """``test_superclass_accuracy``: the fraction of images predicted in their true superclass; and
    per superclass (``superclass_accuracy``) over its test images: ``accuracy`` (predicted in that
    superclass), ``fine_accuracy`` (predicted exactly right) and ``support``. A superclass without
    test images has accuracies 0, as ``per_class`` does. ``superclasses`` must cover every class
    once (the dataset checks it when it loads)."""
    index = {name: i for i, name in enumerate(class_names)}
    group = np.empty(len(class_names), dtype=np.int64)  # each class's superclass number
    for number, members in enumerate(superclasses.values()):
        group[[index[name] for name in members]] = number
    coarse_true, coarse_pred = group[y_true], group[y_pred]
    count = len(superclasses)
    support = np.bincount(coarse_true, minlength=count)
    coarse_hits = np.bincount(coarse_true, weights=coarse_true == coarse_pred, minlength=count)
    fine_hits = np.bincount(coarse_true, weights=np.asarray(y_true) == np.asarray(y_pred), minlength=count)
    per_superclass = {
        name: {
            "accuracy": float(coarse_hits[i] / support[i]) if support[i] else 0.0,
            "fine_accuracy": float(fine_hits[i] / support[i]) if support[i] else 0.0,
            "support": int(support[i]),
        }
        for i, name in enumerate(superclasses)
    }
    return {
        "test_superclass_accuracy": float(accuracy_score(coarse_true, coarse_pred)),
        "superclass_accuracy": per_superclass,
    }


def prediction_metrics(
    y_true: np.ndarray,
    logits: np.ndarray,
    class_names: Sequence[str],
    superclasses: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """Every metric of one run's test predictions: ``classification_metrics`` of the argmax,
    ``top5_accuracy`` with more than 5 classes, and ``superclass_metrics`` when the dataset has
    superclasses; a metric that does not apply is absent, not null."""
    y_pred = logits.argmax(1)
    classified = classification_metrics(y_true, y_pred, class_names)
    top5 = top_k_accuracy(y_true, logits)
    return {
        "test_accuracy": classified["test_accuracy"],  # first, the accuracies side by side
        **({"top5_accuracy": top5} if top5 is not None else {}),
        **(superclass_metrics(y_true, y_pred, class_names, superclasses) if superclasses else {}),
        **classified,
    }
