"""Calibration of a classifier's softmax: ECE (equal-width bins), NLL and the Brier score.

One binning serves the ECE and the reliability diagram, so the diagram shows exactly the bins the
ECE sums: B equal-width bins (k/B, (k+1)/B], the first closed at 0. A confidence of exactly 1.0
(a saturated softmax, common for over-confident models) lies in the last bin; torchmetrics' ECE
would put it in a bin of its own, which no diagram shows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import brier_score_loss


def softmax(logits: np.ndarray) -> np.ndarray:
    return F.softmax(torch.as_tensor(logits, dtype=torch.float64), dim=1).numpy()


def reliability_bins(logits: np.ndarray, labels: np.ndarray, bins: int = 15) -> dict[str, Any]:
    """Per equal-width confidence bin: images, mean confidence and accuracy (NaN where empty)."""
    probs = softmax(logits)
    confidence, predicted = probs.max(1), probs.argmax(1)
    correct = (predicted == np.asarray(labels)).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, confidence, minlength=bins) / counts
        accuracy = np.bincount(index, correct, minlength=bins) / counts
    return {"edges": edges, "counts": counts, "confidence": mean_confidence, "accuracy": accuracy}


def expected_calibration_error(bins: dict[str, Any]) -> float:
    """Top-1 ECE from ``reliability_bins``: |accuracy - mean confidence| per bin, weighted by the
    bin's share of images (L1)."""
    counts = np.asarray(bins["counts"], dtype=float)
    filled = counts > 0
    gaps = np.abs(np.asarray(bins["accuracy"])[filled] - np.asarray(bins["confidence"])[filled])
    return float(np.sum(counts[filled] / counts.sum() * gaps))


def calibration_metrics(logits: np.ndarray, labels: np.ndarray, bins: int = 15) -> dict[str, float]:
    """``ece``: top-1 expected calibration error over ``bins`` equal-width confidence bins (L1,
    weighted by bin size); ``nll``: mean cross-entropy; ``brier``: mean over images of the summed
    squared error between the probability vector and the one-hot label (0 best, 2 worst)."""
    logits_t = torch.as_tensor(logits, dtype=torch.float64)
    labels_t = torch.as_tensor(labels, dtype=torch.long)
    probs = softmax(logits)
    return {
        "ece": expected_calibration_error(reliability_bins(logits, labels, bins)),
        "nll": float(F.cross_entropy(logits_t, labels_t)),
        "brier": float(brier_score_loss(labels, probs, labels=np.arange(logits.shape[1]), scale_by_half=False)),
    }


def bins_to_json(bins: dict[str, Any]) -> dict[str, list]:
    """``reliability_bins`` for results.json: lists, with null for the empty bins' NaN."""
    return {
        name: [None if isinstance(v, float) and np.isnan(v) else v for v in np.asarray(values).tolist()]
        for name, values in bins.items()
    }
