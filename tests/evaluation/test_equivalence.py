"""Published vs reproduced on constructed samples, every expected number worked out by hand (t
statistics from the mean and standard error, critical values from a t table): the four verdicts,
one seed, identical seeds, and the seeds a gap needs."""

import math
import warnings

import pytest
from scipy import stats

from distillbench.evaluation.equivalence import equivalence, seeds_to_resolve

PUBLISHED, MARGIN = 76.2, 0.5
# Student-t quantiles from tables.
T95_DF2, T95_DF4 = 2.919986, 2.131847  # one-sided 0.95: the 90% interval
T975_DF2, T975_DF4 = 4.302653, 2.776445  # 0.975: the 95% interval


def test_a_sample_centred_on_the_published_value_is_reproduced():
    # Deviations -0.1, 0.1, 0, 0.2, -0.2: sum of squares 0.1, variance 0.025.
    result = equivalence([76.1, 76.3, 76.2, 76.4, 76.0], PUBLISHED, MARGIN)
    se = math.sqrt(0.025) / math.sqrt(5)
    t_lower = (76.2 - (PUBLISHED - MARGIN)) / se  # 7.071
    t_upper = (76.2 - (PUBLISHED + MARGIN)) / se  # -7.071
    assert t_lower == pytest.approx(7.0710678) and t_upper == pytest.approx(-7.0710678)
    assert result["mean"] == pytest.approx(76.2) and result["std"] == pytest.approx(math.sqrt(0.025))
    assert result["p_lower"] == pytest.approx(stats.t.sf(t_lower, 4))
    assert result["p_upper"] == pytest.approx(stats.t.cdf(t_upper, 4))
    assert result["p_tost"] == pytest.approx(max(result["p_lower"], result["p_upper"]))
    assert result["p_tost"] < 0.05
    assert result["ci90"] == pytest.approx([76.2 - T95_DF4 * se, 76.2 + T95_DF4 * se])
    assert result["ci95"] == pytest.approx([76.2 - T975_DF4 * se, 76.2 + T975_DF4 * se])
    assert result["verdict"] == "reproduced" and not result["difference_significant"]


def test_a_sample_well_below_is_below_and_one_well_above_is_above():
    se = 0.2 / math.sqrt(3)  # deviations -0.0, 0.2, -0.2: variance 0.04
    below = equivalence([74.0, 74.2, 73.8], PUBLISHED, MARGIN)
    assert below["ci95"][1] == pytest.approx(74.0 + T975_DF2 * se)  # 74.497 < 76.2
    assert below["p_upper"] == pytest.approx(stats.t.cdf((74.0 - 76.7) / se, 2))
    assert below["p_lower"] == pytest.approx(stats.t.sf((74.0 - 75.7) / se, 2))  # not rejected
    assert below["verdict"] == "below" and below["difference"] == pytest.approx(-2.2)
    above = equivalence([78.0, 78.2, 77.8], PUBLISHED, MARGIN)
    assert above["ci95"][0] == pytest.approx(78.0 - T975_DF2 * se)  # 77.503 > 76.2
    assert above["verdict"] == "above" and above["difference"] == pytest.approx(1.8)


def test_a_noisy_sample_is_inconclusive():
    # Mean 76.1667; deviations -1.1667, 1.3333, -0.1667: sum of squares 3.1667, variance 1.5833.
    result = equivalence([75.0, 77.5, 76.0], PUBLISHED, MARGIN)
    se = math.sqrt(1.583333) / math.sqrt(3)
    assert result["ci95"] == pytest.approx([76.16667 - T975_DF2 * se, 76.16667 + T975_DF2 * se], rel=1e-5)
    assert result["ci90"][0] < PUBLISHED - MARGIN and result["ci90"][1] > PUBLISHED + MARGIN
    assert result["p_tost"] > 0.05
    assert result["verdict"] == "inconclusive" and "more seeds" in result["why"]


def test_within_the_margin_but_significantly_different_is_reproduced_and_says_so():
    # Mean 75.9 (0.3 below), deviations 0, 0.05, -0.05, 0: variance 0.005 / 3.
    result = equivalence([75.9, 75.95, 75.85, 75.9], PUBLISHED, MARGIN)
    assert result["verdict"] == "reproduced"
    assert result["difference_significant"] and "significantly" in result["why"]


def test_one_seed_is_inconclusive_without_a_test():
    result = equivalence([76.2], PUBLISHED, MARGIN)
    assert result["verdict"] == "inconclusive" and "one seed" in result["why"]
    assert result["std"] is None and result["ci95"] is None and result["p_tost"] is None
    assert result["mean"] == 76.2


def test_identical_values_are_compared_exactly_without_nan():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division by a zero spread
        inside = equivalence([76.3, 76.3, 76.3], PUBLISHED, MARGIN)
        outside = equivalence([70.0, 70.0, 70.0], PUBLISHED, MARGIN)
        released = equivalence([76.9], PUBLISHED, MARGIN, fixed=True)
    assert inside["verdict"] == "reproduced" and inside["std"] == 0.0
    assert inside["ci90"] == pytest.approx([76.3, 76.3]) and inside["p_tost"] == 0.0
    assert outside["verdict"] == "below" and outside["p_lower"] == 1.0
    assert released["verdict"] == "above" and released["ci95"] == [76.9, 76.9]
    for result in (inside, outside, released):
        assert not any(isinstance(v, float) and math.isnan(v) for v in result.values())


def test_the_seeds_a_gap_needs_match_the_hand_iteration():
    # std = gap: the normal approximation (1.95996 + 0.84162)^2 = 7.85 seeds; with t quantiles,
    # n = 9 needs (2.30600 + 0.88889)^2 = 10.21 > 9; n = 10 needs (2.26216 + 0.88340)^2 = 9.89 <= 10.
    assert seeds_to_resolve(0.3, 0.3) == 10
    # std 0.5, gap 0.3: n = 23 needs (2.07387 + 0.85827)^2 * 25 / 9 = 23.88 > 23; n = 24 needs 23.79.
    assert seeds_to_resolve(0.5, 0.3) == 24
    # Independently: the noncentral t power of the two-sided test crosses 0.8 between n - 1 and n.
    for std, gap, n in ((0.3, 0.3, 10), (0.5, 0.3, 24)):
        powers = []
        for seeds in (n - 1, n):
            critical, shift = stats.t.ppf(0.975, seeds - 1), math.sqrt(seeds) * gap / std
            powers.append(stats.nct.sf(critical, seeds - 1, shift) + stats.nct.cdf(-critical, seeds - 1, shift))
        assert powers[0] < 0.8 <= powers[1]


def test_seeds_to_resolve_without_spread_or_with_one_seed():
    assert seeds_to_resolve(None, 0.3) is None
    assert seeds_to_resolve(0.0, 0.3) == 2
    assert seeds_to_resolve(0.01, 0.3) == 2  # a tiny spread: the fewest a t-test can use
    with pytest.raises(ValueError):
        seeds_to_resolve(0.3, 0.0)
