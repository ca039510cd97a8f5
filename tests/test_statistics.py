"""Golden values for the comparison statistics of the reports (dfkd/reporting/statistics.py),
each worked out by hand, by enumerating every bootstrap resample, or with scipy's own routines."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from dfkd.reporting.statistics import (
    ABOVE,
    BELOW,
    CONSISTENT,
    INCONCLUSIVE,
    binomial_standard_error,
    equivalence_verdict,
    improvement,
    interquartile_mean,
    normalised_score,
    performance_profile,
    probability_of_improvement,
    reproduction,
    stratified_bootstrap,
)

T_975_DF2 = 4.302652729911275  # Student-t 97.5% quantile, 2 degrees of freedom (tables)


def test_binomial_standard_error_by_hand() -> None:
    # 94% on 10,000 images: sqrt(0.94 x 0.06 / 10,000) = 0.0023749 -> 0.23749 points.
    assert binomial_standard_error(94.0, 10_000) == pytest.approx(0.2374868)
    assert binomial_standard_error(50.0, 451) == pytest.approx(100 * 0.5 / math.sqrt(451))


def test_the_delta_and_its_interval_by_hand() -> None:
    # Seeds 90, 92, 94: mean 92, std 2, half-width t x 2 / sqrt(3) = 4.96827.
    found = reproduction([90.0, 92.0, 94.0], published=95.0, margin=2.0, test_size=10_000)
    half = T_975_DF2 * 2.0 / math.sqrt(3.0)
    assert (found.n, found.ours, found.delta) == (3, pytest.approx(92.0), pytest.approx(-3.0))
    assert found.delta_low == pytest.approx(-3.0 - half)
    assert found.delta_high == pytest.approx(-3.0 + half)
    assert found.floor == pytest.approx(100 * math.sqrt(0.95 * 0.05 / 10_000))
    assert found.verdict == INCONCLUSIVE  # holds 0 and reaches past -2 and +2


@pytest.mark.parametrize(
    ("seeds", "published", "verdict"),
    [
        ([93.9, 94.0, 94.1], 94.0, CONSISTENT),  # [-0.25, 0.25] inside +-2
        ([92.9, 93.0, 93.1], 94.0, CONSISTENT),  # [-1.25, -0.75]: excludes 0, inside the margin
        ([89.9, 90.0, 90.1], 94.0, BELOW),  # [-4.25, -3.75]
        ([95.9, 96.1, 96.0], 94.0, ABOVE),  # [1.75, 2.25]: excludes 0, leaves the margin
        ([90.0, 94.0, 98.0], 94.0, INCONCLUSIVE),  # [-9.9, 9.9]: a noisy cell proves nothing
    ],
)
def test_the_verdict_is_an_equivalence_test(seeds, published, verdict) -> None:
    found = reproduction(seeds, published, margin=2.0, test_size=10_000)
    half = T_975_DF2 * np.std(seeds, ddof=1) / math.sqrt(3)
    assert found.delta_high - found.delta_low == pytest.approx(2 * half)
    assert found.verdict == verdict


def test_no_verdict_below_three_seeds_and_none_without_values() -> None:
    two = reproduction([90.0, 91.0], 90.5, margin=2.0, test_size=451)
    assert two.verdict == "" and math.isnan(two.delta_low) and two.delta == pytest.approx(0.0)
    assert reproduction([], 90.0, 2.0, 451) is None
    assert equivalence_verdict(-1.0, 1.0, margin=1.0) == CONSISTENT  # the margin is inclusive


def test_probability_of_improvement_by_hand_and_as_scipys_mann_whitney_u() -> None:
    # (1,2) (1,2) lose, (2,2) (2,2) tie, (3,2) (3,2) win: (0 + 0 + 0.5 + 0.5 + 1 + 1) / 6.
    assert probability_of_improvement([1.0, 2.0, 3.0], [2.0, 2.0]) == pytest.approx(0.5)
    assert probability_of_improvement([5.0, 6.0], [1.0, 2.0, 3.0]) == 1.0
    assert probability_of_improvement([1.0], [1.0]) == 0.5
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 5, 7).astype(float), rng.integers(0, 5, 4).astype(float)
    u = scipy_stats.mannwhitneyu(a, b, alternative="two-sided").statistic
    assert probability_of_improvement(a, b) == pytest.approx(u / (a.size * b.size))


def _exact_percentiles(values: list[float], weights: list[float]) -> tuple[float, float]:
    """The 2.5% and 97.5% points of a discrete distribution, checked to lie away from a step
    of its distribution function (where a Monte Carlo percentile could land between values)."""
    rounded = np.round(np.asarray(values), 12)
    points = np.unique(rounded)
    cdf = np.cumsum([np.asarray(weights)[rounded == point].sum() for point in points])
    for q in (0.025, 0.975):
        assert np.min(np.abs(cdf - q)) > 0.005, "choose data whose quantiles are clear"
    return float(points[np.searchsorted(cdf, 0.025)]), float(points[np.searchsorted(cdf, 0.975)])


def test_the_improvement_interval_equals_the_exact_bootstrap_distribution() -> None:
    a, b = [1.0, 2.0, 4.0], [1.5, 3.0]
    values, weights = [], []
    for x in itertools.product(a, repeat=3):  # every resample of A's seeds ...
        for y in itertools.product(b, repeat=2):  # ... with every resample of B's
            values.append(probability_of_improvement(x, y))
            weights.append(1.0 / (27 * 4))
    found = improvement([a], [b])
    assert found.value == pytest.approx(probability_of_improvement(a, b))  # 3.5 / 6
    assert (found.low, found.high) == pytest.approx(_exact_percentiles(values, weights))


def test_over_pairs_the_improvement_is_the_mean_of_the_pairs() -> None:
    first, second = ([3.0, 4.0], [1.0, 2.0]), ([1.0, 2.0], [1.5, 2.5])  # P = 1 and 0.25
    found = improvement([first[0], second[0]], [first[1], second[1]])
    assert found.value == pytest.approx((1.0 + 0.25) / 2)
    assert found.low >= 0.5 and found.high <= 1.0  # the first pair always gives 1


def test_interquartile_mean_by_hand() -> None:
    # Eight values: the lowest two and highest two go, the mean of 3, 4, 5, 6 stays.
    assert interquartile_mean(np.array([8.0, 1.0, 7.0, 2.0, 6.0, 3.0, 5.0, 4.0])) == 4.5
    assert interquartile_mean(np.array([0.0, 10.0, 1.0, 2.0])) == 1.5
    assert interquartile_mean(np.array([0.2, 0.6])) == pytest.approx(0.4)  # nothing trimmed


def test_the_bootstrap_resamples_within_each_pair() -> None:
    # Pair 2 has one run (always drawn); pair 1's two runs give means 10/3, 11/3, 4 with
    # probabilities 1/4, 1/2, 1/4. A bootstrap across pairs would draw 10 twice at times.
    found = stratified_bootstrap([[0.0, 1.0], [10.0]], lambda v: np.mean(v, axis=-1))
    exact = _exact_percentiles([10 / 3, 11 / 3, 4.0], [0.25, 0.5, 0.25])
    assert found.value == pytest.approx(11 / 3)
    assert (found.low, found.high) == pytest.approx(exact)


def test_one_pair_gives_scipys_percentile_bootstrap() -> None:
    data = np.random.default_rng(1).normal(80.0, 2.0, size=12)
    ours = stratified_bootstrap([data], interquartile_mean)
    theirs = scipy_stats.bootstrap(
        (data,), lambda v, axis=-1: scipy_stats.trim_mean(v, 0.25, axis=axis),
        n_resamples=10_000, method="percentile", rng=np.random.default_rng(7),
    ).confidence_interval  # fmt: skip
    assert ours.value == pytest.approx(scipy_stats.trim_mean(data, 0.25))
    assert ours.low == pytest.approx(theirs.low, abs=0.1)  # Monte Carlo error about 0.02
    assert ours.high == pytest.approx(theirs.high, abs=0.1)


def test_performance_profile_by_hand() -> None:
    thresholds = np.array([0.0, 0.3, 0.6, 0.9])
    share, low, high = performance_profile([[0.2, 0.5], [0.8]], thresholds)
    assert share.tolist() == pytest.approx([1.0, 2 / 3, 1 / 3, 0.0])
    assert np.all(low <= share) and np.all(share <= high)
    assert low[-1] == high[-1] == 0.0 and low[0] == high[0] == 1.0  # no run above 0.9, all above 0


def test_normalised_score_is_zero_at_chance_and_one_at_the_teacher() -> None:
    assert normalised_score(10.0, 90.0, 10.0) == 0.0
    assert normalised_score(90.0, 90.0, 10.0) == 1.0
    assert normalised_score(55.0, 100.0, 10.0) == pytest.approx(0.5)
