"""Seed statistics and paired tests against closed forms and scipy on fixed inputs."""

import math

import numpy as np
import pytest

from distillbench.evaluation.significance import (
    mcnemar_exact_p,
    mean_std_ci,
    paired_bootstrap_ci,
    paired_comparison,
    verdict,
)


def test_mean_std_ci_is_the_student_t_interval():
    values = [0.70, 0.68, 0.73]
    mean, std, ci = mean_std_ci(values)
    assert mean == pytest.approx(0.70333333) and std == pytest.approx(np.std(values, ddof=1))
    half = 4.302652729911275 * std / math.sqrt(3)  # t(0.975, df=2), from tables
    assert ci == pytest.approx([mean - half, mean + half])


def test_one_seed_has_no_spread():
    assert mean_std_ci([0.5]) == (0.5, None, None)


@pytest.mark.parametrize("only_a, only_b", [(3, 12), (10, 10), (0, 7), (25, 5)])
def test_mcnemar_exact_is_the_two_sided_binomial_closed_form(only_a, only_b):
    both, neither = 40, 20
    correct_a = np.array([True] * both + [True] * only_a + [False] * only_b + [False] * neither)
    correct_b = np.array([True] * both + [False] * only_a + [True] * only_b + [False] * neither)
    n, k = only_a + only_b, min(only_a, only_b)
    expected = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)
    assert mcnemar_exact_p(correct_a, correct_b) == pytest.approx(expected)


def test_mcnemar_without_discordant_pairs_is_one():
    same = np.array([True, False, True])
    assert mcnemar_exact_p(same, same) == 1.0


def test_paired_bootstrap_agrees_with_the_normal_approximation():
    rng = np.random.default_rng(1)
    correct_b = rng.random((3, 4000)) < 0.70
    flip = rng.random((3, 4000)) < 0.10  # a differs from b on ~10% of the images
    correct_a = np.where(flip, rng.random((3, 4000)) < 0.75, correct_b)
    per_image = correct_a.mean(0) - correct_b.mean(0)
    mean, half = per_image.mean(), 1.959964 * per_image.std(ddof=1) / math.sqrt(4000)
    low, high = paired_bootstrap_ci(correct_a, correct_b, resamples=4000)
    assert low == pytest.approx(mean - half, abs=0.15 * half)
    assert high == pytest.approx(mean + half, abs=0.15 * half)
    assert paired_bootstrap_ci(correct_a, correct_b, resamples=4000) == [low, high]  # seeded: reproducible


def test_identical_models_have_a_point_interval():
    correct = np.random.default_rng(2).random((2, 100)) < 0.5
    assert paired_bootstrap_ci(correct, correct) == [0.0, 0.0]


@pytest.mark.parametrize(
    "per_seed, seed_ci, image_ci, outcome",
    [
        ([0.02, 0.03], [0.01, 0.04], [0.01, 0.04], "supported"),
        ([-0.02, -0.03], [-0.04, -0.01], [-0.05, -0.01], "contradicted"),
        ([0.02, 0.03], [-0.01, 0.05], [0.01, 0.04], "inconclusive"),  # training randomness could explain it
        ([0.02, 0.03], [0.01, 0.04], [-0.01, 0.06], "inconclusive"),  # the test set could explain it
        ([0.02], None, [0.01, 0.04], "supported"),  # one seed: the test-set interval alone, with a caveat
    ],
)
def test_verdict_needs_both_intervals_on_one_side(per_seed, seed_ci, image_ci, outcome):
    label, sentence = verdict(per_seed, seed_ci, image_ci, "A", "B")
    assert label == outcome
    assert sentence.startswith(outcome.capitalize()) and "A minus B" in sentence
    assert f"{100 * np.mean(per_seed):+.2f} points" in sentence
    assert ("With one seed" in sentence) == (seed_ci is None)
    assert "not supported" not in sentence.lower()


def _correct_with_accuracies(accuracies: list[float], images: int, rng: np.random.Generator) -> np.ndarray:
    """(seeds, images) booleans with exactly the given accuracy per seed."""
    rows = []
    for accuracy in accuracies:
        row = np.zeros(images, bool)
        row[rng.permutation(images)[: round(accuracy * images)]] = True
        rows.append(row)
    return np.array(rows)


def test_seed_to_seed_variation_makes_a_small_mean_gain_inconclusive():
    """The audit's case: per-seed differences of +0.36, +0.28 and +2.52 points on 10,000 test images.
    The images alone would call it significant; the t-interval over the three seeds is about
    [-2.1, +4.2] points, so the data cannot tell the two models apart."""
    rng = np.random.default_rng(0)
    correct_b = _correct_with_accuracies([0.70, 0.70, 0.70], 10_000, rng)
    correct_a = _correct_with_accuracies([0.7036, 0.7028, 0.7252], 10_000, rng)
    tested = paired_comparison(correct_a, correct_b, "A", "B", resamples=2000)
    assert tested["accuracy_diff_per_seed"] == pytest.approx([0.0036, 0.0028, 0.0252])
    assert tested["ci95_seeds"] == pytest.approx([-0.021, 0.042], abs=0.001)
    assert tested["outcome"] == "inconclusive"
    assert "interval over seeds includes 0" in tested["verdict"] and "+0.36, +0.28, +2.52" in tested["verdict"]
    assert len(tested["mcnemar_p"]) == 3


def test_a_consistent_gain_is_supported_and_a_loss_contradicts_the_claim():
    rng = np.random.default_rng(1)
    base = _correct_with_accuracies([0.70, 0.71, 0.69], 10_000, rng)
    better = _correct_with_accuracies([0.75, 0.76, 0.745], 10_000, rng)
    assert paired_comparison(better, base, "A", "B", resamples=2000)["outcome"] == "supported"
    assert paired_comparison(base, better, "A", "B", resamples=2000)["outcome"] == "contradicted"
