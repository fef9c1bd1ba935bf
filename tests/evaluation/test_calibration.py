"""ECE, NLL and Brier against hand computations on fixed inputs."""

import math

import numpy as np
import pytest

from distillbench.evaluation.calibration import calibration_metrics, expected_calibration_error, reliability_bins


def _hand_ece(probs: np.ndarray, labels: np.ndarray, bins: int) -> float:
    """The textbook definition, one image at a time: bins (k/B, (k+1)/B], |accuracy - confidence|
    weighted by the bin's share of images."""
    members: dict[int, list[tuple[float, bool]]] = {}
    for p, y in zip(probs, labels):
        confidence = max(p)
        k = min(bins - 1, max(0, math.ceil(confidence * bins) - 1))
        members.setdefault(k, []).append((confidence, int(np.argmax(p)) == y))
    return sum(
        len(m) / len(labels) * abs(np.mean([c for _, c in m]) - np.mean([conf for conf, _ in m]))
        for m in members.values()
    )


@pytest.fixture
def predictions():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=2.0, size=(500, 10))
    labels = np.where(rng.random(500) < 0.6, logits.argmax(1), rng.integers(0, 10, 500))
    return logits, labels


def test_metrics_match_hand_computation(predictions):
    logits, labels = predictions
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    metrics = calibration_metrics(logits, labels, bins=15)
    assert metrics["ece"] == pytest.approx(_hand_ece(probs, labels, 15), abs=1e-6)
    assert metrics["nll"] == pytest.approx(-np.mean(np.log(probs[np.arange(500), labels])))
    assert metrics["brier"] == pytest.approx(np.mean(np.sum((probs - np.eye(10)[labels]) ** 2, axis=1)))


def test_reliability_bins_reproduce_the_ece(predictions):
    logits, labels = predictions
    bins = reliability_bins(logits, labels, bins=15)
    assert bins["counts"].sum() == 500 and len(bins["edges"]) == 16
    filled = bins["counts"] > 0
    ece = np.sum(bins["counts"][filled] / 500 * np.abs(bins["accuracy"][filled] - bins["confidence"][filled]))
    assert ece == pytest.approx(calibration_metrics(logits, labels, bins=15)["ece"], abs=1e-6)


def test_a_perfect_confident_classifier_has_zero_error():
    labels = np.arange(10).repeat(3)
    logits = np.eye(10)[labels] * 50.0
    metrics = calibration_metrics(logits, labels)
    assert metrics["ece"] == pytest.approx(0, abs=1e-6) and metrics["brier"] == pytest.approx(0, abs=1e-6)
    assert metrics["nll"] == pytest.approx(0, abs=1e-6)


def test_a_uniform_classifier_has_known_scores():
    labels = np.arange(10).repeat(2)
    metrics = calibration_metrics(np.zeros((20, 10)), labels)
    assert metrics["nll"] == pytest.approx(math.log(10))
    assert metrics["brier"] == pytest.approx(0.9)  # (1 - 0.1)^2 + 9 * 0.1^2


def test_confidence_of_exactly_one_is_binned_like_any_other():
    """A saturated softmax (confidence exactly 1.0 in float64) belongs to the last bin, with the
    other confident predictions, in the ECE and the reliability diagram alike. Three images at
    confidence 1.0 (two right), one at ~0.96 (right): one bin, accuracy 3/4, mean confidence
    (3 + c) / 4."""
    logits = np.zeros((4, 10))
    logits[:3, 0] = 800.0  # exp(-800) underflows: probability exactly 1.0
    logits[3, 0] = np.log(0.96 / 0.04 * 9)  # ~0.96 confidence on class 0
    labels = np.array([0, 0, 1, 0])
    c = np.exp(logits[3, 0]) / (np.exp(logits[3, 0]) + 9)
    bins = reliability_bins(logits, labels, bins=15)
    assert bins["counts"][-1] == 4 and bins["counts"].sum() == 4
    expected = abs(3 / 4 - (3 + c) / 4)
    assert calibration_metrics(logits, labels, bins=15)["ece"] == pytest.approx(expected, abs=1e-12)
    assert expected_calibration_error(bins) == pytest.approx(expected, abs=1e-12)
