"""Paired comparisons of two classifiers on the same test images, and intervals over seeds."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats


def mean_std_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float | None, list[float] | None]:
    """Mean, sample standard deviation (ddof=1) and Student-t interval of the mean over seeds;
    std and interval are None for a single value (one seed says nothing about spread)."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, None, None
    std = float(values.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df=len(values) - 1) * std / np.sqrt(len(values)))
    return mean, std, [mean - half, mean + half]


def mcnemar_exact_p(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """McNemar's exact test: two-sided binomial test on the images exactly one model gets right."""
    correct_a, correct_b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    only_a = int(np.sum(correct_a & ~correct_b))
    only_b = int(np.sum(~correct_a & correct_b))
    if only_a + only_b == 0:
        return 1.0
    return float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)


def paired_bootstrap_ci(
    correct_a: np.ndarray, correct_b: np.ndarray, resamples: int = 10_000, confidence: float = 0.95, seed: int = 0
) -> list[float]:
    """Percentile bootstrap interval of accuracy(a) - accuracy(b), averaged over seeds.

    ``correct_*`` are (seeds, images) booleans of the same test images. Images are resampled with
    the same indices for both models and every seed, which keeps the comparison paired."""
    per_image = np.atleast_2d(correct_a).mean(0) - np.atleast_2d(correct_b).mean(0)  # mean over seeds
    if np.ptp(per_image) == 0:  # no variation to resample: the interval is the point
        return [float(per_image[0])] * 2
    result = stats.bootstrap(
        (per_image,), np.mean, n_resamples=resamples, confidence_level=confidence, method="percentile",
        vectorized=True, batch=1000, rng=np.random.default_rng(seed),
    )  # fmt: skip
    return [float(result.confidence_interval.low), float(result.confidence_interval.high)]


def verdict(per_seed_diff: Sequence[float], ci95: Sequence[float], paper_favours: str, a: str, b: str) -> tuple[str, str]:
    """("supported" | "contradicted" | "inconclusive", one sentence) for the paper's claim that
    ``paper_favours`` ("a" or "b") is the more accurate model.

    A model counts as better only if the bootstrap interval excludes 0 *and* it wins in every seed."""
    diff = float(np.mean(per_seed_diff))
    interval = f"{100 * diff:+.2f} points, 95% CI [{100 * ci95[0]:+.2f}, {100 * ci95[1]:+.2f}]"
    if ci95[0] > 0 and all(d > 0 for d in per_seed_diff):
        better = "a"
    elif ci95[1] < 0 and all(d < 0 for d in per_seed_diff):
        better = "b"
    elif ci95[0] <= 0 <= ci95[1]:
        return "inconclusive", f"Not supported by our data: {a} minus {b} is {interval}, which includes 0."
    else:
        return "inconclusive", f"Not supported by our data: {a} minus {b} is {interval}, but the seeds disagree on the sign."
    winner, loser = (a, b) if better == "a" else (b, a)
    label = "supported" if better == paper_favours else "contradicted"
    return label, f"{label.capitalize()}: {winner} beats {loser} ({a} minus {b}: {interval}, same sign in every seed)."
