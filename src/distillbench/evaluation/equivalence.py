"""Published vs reproduced: is our per-seed mean accuracy the number a paper published?

``equivalence`` tests a sample of per-seed accuracies against one published value with two
one-sided t-tests (TOST) and a difference test, and gives one of four exclusive verdicts;
``seeds_to_resolve`` says how many seeds a given gap would need at the observed spread.

Units: any, as long as the values, the published value, the margin (and, for ``seeds_to_resolve``,
the std and the difference) share one; the report uses accuracy points (%), results.json fractions.

The verdict rule, applied in this order (the first that holds wins, so the four are exclusive):

1. ``inconclusive`` with one seed (unless the values are ``fixed``): one training run measures no
   spread between runs, so there is neither a t interval nor a test; train more seeds.
2. ``reproduced`` when TOST passes at ``alpha`` (0.05): both one-sided nulls, H0: mean <= published
   - margin and H0: mean >= published + margin, are rejected by one-sample t-tests; equivalently the
   90% t interval of the mean lies inside (published - margin, published + margin). A mean
   significantly different from the published value yet within the margin is still ``reproduced``
   (the margin is what the researcher said does not matter); ``difference_significant`` says so.
3. ``below`` when the 95% t interval of the mean lies entirely below the published value: ours is
   significantly lower (two-sided t-test at 5%) and not shown to be within the margin.
4. ``above`` when the 95% interval lies entirely above it.
5. ``inconclusive`` otherwise: the interval is too wide to tell (more seeds would; see
   ``seeds_to_resolve``).

Values that do not vary (a sample standard deviation of 0, e.g. a released checkpoint evaluated once
per seed, or ``fixed=True`` for one such value): the number is known exactly, both intervals are the
point and each one-sided test rejects exactly when the mean lies strictly on its side of its bound
(the limit of the t-test as the spread vanishes), so the rule above applies without a NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from distillbench.evaluation.significance import mean_std_ci

VERDICTS = ("reproduced", "below", "above", "inconclusive")

# A spread this small relative to the mean is rounding of identical values (their mean is not
# always exactly representable), not training randomness.
_NO_SPREAD = 1e-12


def _t_interval(mean: float, std: float, n: int, confidence: float) -> list[float]:
    half = float(stats.t.ppf(0.5 + confidence / 2, df=n - 1) * std / math.sqrt(n))
    return [mean - half, mean + half]


def equivalence(
    values: Sequence[float], published: float, margin: float, alpha: float = 0.05, fixed: bool = False
) -> dict[str, Any]:
    """Our per-seed ``values`` against ``published`` with equivalence ``margin`` (same unit).

    Returns ``n``, ``mean``, ``std`` (ddof 1; None with one seed), ``ci95`` and ``ci90`` (Student-t
    intervals of the mean; ``ci90`` is the interval TOST at alpha 0.05 corresponds to; None with one
    seed), ``published``, ``margin``, ``difference`` (mean - published), ``p_lower`` (H0: mean <=
    published - margin), ``p_upper`` (H0: mean >= published + margin), ``p_tost`` (the larger; the
    three are None with one seed), ``difference_significant`` (the 95% interval excludes the
    published value), ``verdict`` (``VERDICTS``, by the module's rule) and ``why`` (the rule that
    gave it, in words without numbers). ``fixed``: the values do not depend on the seed (a released
    checkpoint), so one value is exact rather than a sample of one."""
    if margin <= 0:
        raise ValueError(f"margin must be positive, got {margin}")
    if not values:
        raise ValueError("no values to compare")
    sample = np.asarray(values, dtype=float)
    n = len(sample)
    mean, std, ci95 = mean_std_ci(sample)
    low_bound, high_bound = published - margin, published + margin
    result: dict[str, Any] = {
        "n": n,
        "mean": mean,
        "std": std,
        "ci95": ci95,
        "ci90": None,
        "published": published,
        "margin": margin,
        "difference": mean - published,
        "p_lower": None,
        "p_upper": None,
        "p_tost": None,
        "difference_significant": False,
    }
    exact = fixed or (std is not None and std <= _NO_SPREAD * max(1.0, abs(mean)))
    if n < 2 and not exact:
        return {
            **result,
            "verdict": "inconclusive",
            "why": "one seed measures no spread between training runs, so there is no interval and no test; "
            "train more seeds",
        }
    if exact:
        # The limit of both t-tests as the spread vanishes: certain rejection on the strict side.
        std = 0.0 if std is not None else None
        ci95 = ci90 = [mean, mean]
        p_lower = 0.0 if mean > low_bound else 1.0
        p_upper = 0.0 if mean < high_bound else 1.0
    else:
        ci90 = _t_interval(mean, std, n, 1 - 2 * alpha)
        p_lower = float(stats.ttest_1samp(sample, low_bound, alternative="greater").pvalue)
        p_upper = float(stats.ttest_1samp(sample, high_bound, alternative="less").pvalue)
    p_tost = max(p_lower, p_upper)
    significant = ci95[1] < published or ci95[0] > published
    result.update(
        std=std,
        ci95=ci95,
        ci90=ci90,
        p_lower=p_lower,
        p_upper=p_upper,
        p_tost=p_tost,
        difference_significant=bool(significant),
    )
    what = "the value (exact: it does not vary by seed)" if exact else "the 90% interval of the mean"
    if p_tost < alpha:
        verdict, why = "reproduced", f"{what} lies within the margin of the published value (TOST)"
        if significant and not exact:
            why += "; it differs from it significantly, by less than the margin"
    elif ci95[1] < published:
        verdict, why = "below", f"{'the value' if exact else 'the 95% interval'} lies below the published value"
    elif ci95[0] > published:
        verdict, why = "above", f"{'the value' if exact else 'the 95% interval'} lies above the published value"
    else:
        verdict, why = (
            "inconclusive",
            "the 95% interval includes the published value and the 90% interval reaches past the margin: "
            "more seeds would tell",
        )
    return {**result, "verdict": verdict, "why": why}


def _seeds_needed(n: int, ratio: float, alpha: float, power: float) -> float:
    """The right-hand side of n = ((t_{1-alpha/2, n-1} + t_{power, n-1}) * std / difference)^2."""
    df = n - 1
    return ((stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * ratio) ** 2


def seeds_to_resolve(std: float | None, difference: float, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """How many seeds a two-sided one-sample t-test at level ``alpha`` needs to detect a true gap of
    ``difference`` between our mean and a fixed value (a published number) with probability
    ``power``, if the per-seed standard deviation is ``std`` (same unit as ``difference``).

    The normal approximation n = ((z_{1-alpha/2} + z_power) * std / difference)^2 understates it for
    few seeds; with the t quantiles at n - 1 degrees of freedom in place of z the equation is solved
    for the smallest integer n >= 2 that satisfies n >= ((t_{1-alpha/2,n-1} + t_{power,n-1}) * std /
    difference)^2 (the right side falls as n grows, so the smallest such n is found by bisection,
    starting from the normal approximation, which is a lower bound). None without a std (one seed);
    2, the fewest a t-test can use, when the std is 0."""
    if difference <= 0:
        raise ValueError(f"difference must be positive, got {difference}")
    if not 0 < alpha < 1 or not 0.5 <= power < 1:
        raise ValueError(f"alpha must be in (0, 1) and power in [0.5, 1), got {alpha} and {power}")
    if std is None:
        return None
    if std == 0:
        return 2
    ratio = std / difference
    normal = ((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) * ratio) ** 2
    low = max(2, math.ceil(normal))  # t quantiles exceed z quantiles: the answer is at least this
    if low >= _seeds_needed(low, ratio, alpha, power):
        return low
    high = 2 * low
    while high < _seeds_needed(high, ratio, alpha, power):
        low, high = high, 2 * high
    # Invariant: low does not satisfy the equation, high does.
    while high - low > 1:
        middle = (low + high) // 2
        if middle >= _seeds_needed(middle, ratio, alpha, power):
            high = middle
        else:
            low = middle
    return high
