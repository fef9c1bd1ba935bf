"""Classification metrics from one set of predictions, so no two tables can disagree."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support


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
