"""Seed statistics and paired tests against closed forms and scipy on fixed inputs."""

import math

import numpy as np
import pytest
from scipy import stats

from distillbench.evaluation.significance import mcnemar_exact_p, mean_std_ci, paired_bootstrap_ci, verdict


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
    "per_seed, ci, favours, outcome",
    [
        ([0.02, 0.03], [0.01, 0.04], "a", "supported"),
        ([0.02, 0.03], [0.01, 0.04], "b", "contradicted"),
        ([-0.02, -0.03], [-0.04, -0.01], "b", "supported"),
        ([0.02, -0.01], [0.001, 0.02], "a", "inconclusive"),  # CI excludes 0 but one seed disagrees
        ([0.01, 0.02], [-0.01, 0.03], "a", "inconclusive"),
    ],
)
def test_verdict(per_seed, ci, favours, outcome):
    label, sentence = verdict(per_seed, ci, favours, "A", "B")
    assert label == outcome
    if outcome == "inconclusive":
        assert ("includes 0" in sentence) == (ci[0] <= 0 <= ci[1])
        assert ("seeds disagree" in sentence) == (ci[0] > 0 or ci[1] < 0)
    assert "A minus B" in sentence and f"{100 * np.mean(per_seed):+.2f}" in sentence
