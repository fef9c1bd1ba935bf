"""Paired comparisons of two classifiers on the same test images, and intervals over seeds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
        (per_image,),
        np.mean,
        n_resamples=resamples,
        confidence_level=confidence,
        method="percentile",
        vectorized=True,
        batch=1000,
        rng=np.random.default_rng(seed),
    )
    return [float(result.confidence_interval.low), float(result.confidence_interval.high)]


def verdict(
    per_seed_diff: Sequence[float], seed_ci: Sequence[float] | None, image_ci: Sequence[float], a: str, b: str
) -> tuple[str, str]:
    """("supported" | "contradicted" | "inconclusive", one sentence) for the claim "a is more accurate
    than b", from the accuracy differences a - b.

    Two sources of chance are checked, and a model counts as more accurate only when both intervals
    exclude 0 on its side: ``seed_ci``, the Student-t interval of the mean over seeds (training
    randomness: initialisation, dropout, batch order; None with one seed, when it cannot be measured),
    and ``image_ci``, the paired bootstrap interval over test images (the finite test set)."""
    diff = float(np.mean(per_seed_diff))
    seeds = len(per_seed_diff)
    intervals = (
        {"over test images": image_ci} if seed_ci is None else {"over seeds": seed_ci, "over test images": image_ci}
    )
    described = ", ".join(f"95% CI {name} [{100 * ci[0]:+.2f}, {100 * ci[1]:+.2f}]" for name, ci in intervals.items())
    summary = f"{a} minus {b} is {100 * diff:+.2f} points ({described})"
    caveat = (
        " With one seed the variation between training runs is not measured; train more seeds."
        if seed_ci is None
        else ""
    )
    if all(ci[0] > 0 for ci in intervals.values()):
        return "supported", f"Supported: {summary}.{caveat}"
    if all(ci[1] < 0 for ci in intervals.values()):
        return "contradicted", f"Contradicted: {b} is the more accurate; {summary}.{caveat}"
    spanning = [name for name, ci in intervals.items() if ci[0] <= 0 <= ci[1]]
    if len(spanning) == 2:
        why = "both intervals include 0"
    elif spanning:
        why = f"the interval {spanning[0]} includes 0"
    else:
        why = "the two intervals disagree on the sign"
    spread = f" Per seed: {', '.join(f'{100 * d:+.2f}' for d in per_seed_diff)}." if seeds > 1 else ""
    return "inconclusive", f"Inconclusive: {summary}; {why}, so our data cannot tell the two apart.{spread}{caveat}"


def paired_comparison(
    correct_a: np.ndarray, correct_b: np.ndarray, a: str, b: str, resamples: int = 10_000
) -> dict[str, Any]:
    """The claim "a is more accurate than b" tested on (seeds, images) booleans of the same test
    images: per-seed differences, both intervals, McNemar per seed, and the verdict."""
    correct_a, correct_b = np.atleast_2d(correct_a), np.atleast_2d(correct_b)
    per_seed_diff = [float(d) for d in correct_a.mean(1) - correct_b.mean(1)]
    seed_ci = mean_std_ci(per_seed_diff)[2]
    image_ci = paired_bootstrap_ci(correct_a, correct_b, resamples)
    outcome, sentence = verdict(per_seed_diff, seed_ci, image_ci, a, b)
    return {
        "accuracy_diff": float(np.mean(per_seed_diff)),
        "accuracy_diff_per_seed": per_seed_diff,
        "ci95_seeds": seed_ci,
        "ci95_images": image_ci,
        "mcnemar_p": [mcnemar_exact_p(x, y) for x, y in zip(correct_a, correct_b)],
        "outcome": outcome,
        "verdict": sentence,
    }
