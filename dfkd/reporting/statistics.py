"""Statistics that compare: ours against a published number, one method against another, and
methods across teacher-student pairs.

The practice follows Agarwal et al., "Deep RL at the Edge of the Statistical Precipice"
(NeurIPS 2021, the rliable library), with numpy and scipy only:

* **Reproduction delta** (``reproduction``): ours minus the published number, ours selected by
  the published number's own rule (the best-epoch oracle against a best-epoch source, the final
  epoch against a final-epoch one), with the Student-t 95% interval of our mean over seeds. Its
  verdict is an equivalence test (two one-sided tests at the 95% interval): *consistent* when
  the whole interval lies within the margin, *below* or *above* when it excludes zero on that
  side and leaves the margin, *inconclusive* when it holds zero but reaches past the margin.
  A noisy cell is thus never "reproduced" for its noise. Beside it, the test set's binomial
  standard error at the published accuracy: the resolution of any single accuracy on that set.
* **Probability of improvement** P(A > B) over seeds: the Mann-Whitney U statistic over
  n_A x n_B, i.e. the share of seed pairs where A's run beats B's, ties counting one half
  (rliable ``metrics.probability_of_improvement``); across pairs, its mean over the pairs.
* **Interquartile mean** (IQM) of a normalised score pooled over the runs of every pair: the
  mean of the middle half (``scipy.stats.trim_mean(scores, 0.25)``, as rliable's
  ``aggregate_iqm``); robust to an outlier seed, more efficient than the median.
* **Stratified bootstrap** intervals: the runs are resampled with replacement within each pair
  (the stratum), never across, and the statistic recomputed; the 95% interval is the 2.5th and
  97.5th percentiles of the resampled values. The generator is seeded, so reports are
  reproducible byte for byte.
* **Performance profile**: the share of runs whose normalised score exceeds tau, per tau, with a
  stratified-bootstrap band.

The normalised score of a run is (acc - chance) / (teacher - chance): 0 at chance, 1 at the
teacher's accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

from dfkd.stats import aggregate

BOOTSTRAP_REPETITIONS = 10_000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95

CONSISTENT, BELOW, ABOVE, INCONCLUSIVE = "consistent", "below", "above", "inconclusive"


# ---------------------------------------------------------------------------------------------
# Ours against a published number


def binomial_standard_error(accuracy: float, test_size: int) -> float:
    """Standard error, in points, of an accuracy (%) measured on ``test_size`` images."""
    p = accuracy / 100.0
    return 100.0 * math.sqrt(p * (1.0 - p) / test_size)


@dataclass(frozen=True)
class Reproduction:
    """Ours (selected by the published rule) against one published number."""

    n: int  # completed seeds behind our mean
    ours: float  # our mean, selected as the published number was
    published: float
    delta: float  # ours - published, in points
    delta_low: float  # its 95% Student-t interval (nan below 3 seeds)
    delta_high: float
    floor: float  # binomial standard error of the published accuracy on the test set
    margin: float  # equivalence margin, in points
    verdict: str  # CONSISTENT, BELOW, ABOVE or INCONCLUSIVE; "" without an interval


def reproduction(
    values: Sequence[float], published: float, margin: float, test_size: int
) -> Reproduction | None:
    """Ours minus published, from our per-seed values; None without a finite value."""
    summary = aggregate(values)
    if summary.n == 0:
        return None
    low, high = summary.ci_low - published, summary.ci_high - published
    return Reproduction(
        n=summary.n,
        ours=summary.mean,
        published=published,
        delta=summary.mean - published,
        delta_low=low,
        delta_high=high,
        floor=binomial_standard_error(published, test_size),
        margin=margin,
        verdict=equivalence_verdict(low, high, margin),
    )


def equivalence_verdict(low: float, high: float, margin: float) -> str:
    """The verdict of a delta's interval [low, high] against the margin; "" if undefined."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return ""
    if -margin <= low and high <= margin:
        return CONSISTENT
    if high < 0:
        return BELOW
    if low > 0:
        return ABOVE
    return INCONCLUSIVE


# ---------------------------------------------------------------------------------------------
# One method against another


def probability_of_improvement(a: Sequence[float], b: Sequence[float]) -> float:
    """P(A > B): the share of (a_i, b_j) pairs with a_i > b_j, ties counting 1/2."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.size == 0 or y.size == 0:
        return math.nan
    return float(_pairwise_wins(x[None, :], y[None, :])[0])


def _pairwise_wins(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per row: the mean over (i, j) of [x_i > y_j] + [x_i == y_j] / 2. x (R, n), y (R, m)."""
    difference = x[:, :, None] - y[:, None, :]  # (R, n, m)
    return ((difference > 0) + 0.5 * (difference == 0)).mean(axis=(1, 2))


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its stratified-bootstrap 95% percentile interval."""

    value: float
    low: float
    high: float


def improvement(
    a_by_pair: Sequence[Sequence[float]],
    b_by_pair: Sequence[Sequence[float]],
    repetitions: int = BOOTSTRAP_REPETITIONS,
    seed: int = BOOTSTRAP_SEED,
) -> Estimate:
    """P(A > B) averaged over the pairs, with a bootstrap interval that resamples A's and B's
    seeds within each pair. One pair gives that pair's P(A > B)."""
    if len(a_by_pair) != len(b_by_pair) or not a_by_pair:
        raise ValueError("P(A > B) needs the same pairs, at least one, for A and B")
    generator = np.random.default_rng(seed)
    point, resampled = [], np.zeros(repetitions)
    for a, b in zip(a_by_pair, b_by_pair, strict=True):
        x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        point.append(probability_of_improvement(x, y))
        resampled += _pairwise_wins(
            _resample(x, repetitions, generator), _resample(y, repetitions, generator)
        )
    value = float(np.mean(point))
    low, high = _percentiles(resampled / len(a_by_pair))
    return Estimate(value, low, high)


def _resample(values: np.ndarray, repetitions: int, generator: np.random.Generator) -> np.ndarray:
    """(repetitions, n): each row n draws with replacement from ``values``."""
    return values[generator.integers(0, values.size, size=(repetitions, values.size))]


def _percentiles(values: np.ndarray) -> tuple[float, float]:
    tail = 100.0 * (1.0 - CONFIDENCE) / 2.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


# ---------------------------------------------------------------------------------------------
# Across pairs


def normalised_score(accuracy: float, teacher: float, chance: float) -> float:
    """(acc - chance) / (teacher - chance): 0 at chance, 1 at the teacher's accuracy."""
    return (accuracy - chance) / (teacher - chance)


def interquartile_mean(scores: np.ndarray) -> np.ndarray | float:
    """The 25%-trimmed mean over the last axis (over all values for a 1-D array)."""
    return scipy_stats.trim_mean(scores, 0.25, axis=-1)


def stratified_bootstrap(
    scores_by_pair: Sequence[Sequence[float]],
    statistic: Callable[[np.ndarray], np.ndarray | float],
    repetitions: int = BOOTSTRAP_REPETITIONS,
    seed: int = BOOTSTRAP_SEED,
) -> Estimate:
    """``statistic`` of the pooled runs, with runs resampled within each pair. ``statistic``
    maps an array (..., runs) to one value per row of its last axis."""
    strata = [np.asarray(scores, dtype=np.float64) for scores in scores_by_pair]
    if not strata or any(s.size == 0 for s in strata):
        raise ValueError("every pair needs at least one run")
    generator = np.random.default_rng(seed)
    pooled = np.concatenate([_resample(s, repetitions, generator) for s in strata], axis=1)
    value = float(statistic(np.concatenate(strata)))
    low, high = _percentiles(np.asarray(statistic(pooled)))
    return Estimate(value, low, high)


def performance_profile(
    scores_by_pair: Sequence[Sequence[float]],
    thresholds: np.ndarray,
    repetitions: int = 2_000,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(share, low, high) per threshold tau: the share of all runs with a score > tau, and its
    stratified-bootstrap 95% band."""
    strata = [np.asarray(scores, dtype=np.float64) for scores in scores_by_pair]
    pooled = np.concatenate(strata)
    share = (pooled[None, :] > thresholds[:, None]).mean(axis=1)
    generator = np.random.default_rng(seed)
    resampled = np.concatenate([_resample(s, repetitions, generator) for s in strata], axis=1)
    shares = (resampled[:, None, :] > thresholds[None, :, None]).mean(axis=2)  # (R, taus)
    tail = 100.0 * (1.0 - CONFIDENCE) / 2.0
    low, high = np.percentile(shares, [tail, 100.0 - tail], axis=0)
    return share, low, high
