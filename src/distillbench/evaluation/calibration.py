"""Calibration of a classifier's softmax: ECE (equal-width bins), NLL and the Brier score."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import brier_score_loss
from torchmetrics.functional.classification import multiclass_calibration_error


def softmax(logits: np.ndarray) -> np.ndarray:
    return F.softmax(torch.as_tensor(logits, dtype=torch.float64), dim=1).numpy()


def calibration_metrics(logits: np.ndarray, labels: np.ndarray, bins: int = 15) -> dict[str, float]:
    """``ece``: top-1 expected calibration error over ``bins`` equal-width confidence bins (L1,
    weighted by bin size); ``nll``: mean cross-entropy; ``brier``: mean over images of the summed
    squared error between the probability vector and the one-hot label (0 best, 2 worst)."""
    logits_t = torch.as_tensor(logits, dtype=torch.float64)
    labels_t = torch.as_tensor(labels, dtype=torch.long)
    probs = softmax(logits)
    num_classes = logits.shape[1]
    ece = multiclass_calibration_error(
        torch.from_numpy(probs), labels_t, num_classes=num_classes, n_bins=bins, norm="l1"
    )
    return {
        "ece": float(ece),
        "nll": float(F.cross_entropy(logits_t, labels_t)),
        "brier": float(brier_score_loss(labels, probs, labels=np.arange(num_classes), scale_by_half=False)),
    }


def reliability_bins(logits: np.ndarray, labels: np.ndarray, bins: int = 15) -> dict[str, Any]:
    """Per equal-width confidence bin: images, mean confidence and accuracy (NaN where empty);
    the data of a reliability diagram, binned exactly as the ECE is."""
    probs = softmax(logits)
    confidence, predicted = probs.max(1), probs.argmax(1)
    correct = (predicted == np.asarray(labels)).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bins are (lower, upper]: a confidence of exactly 1/bins belongs to the first bin.
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, confidence, minlength=bins) / counts
        accuracy = np.bincount(index, correct, minlength=bins) / counts
    return {"edges": edges, "counts": counts, "confidence": mean_confidence, "accuracy": accuracy}
