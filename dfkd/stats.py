"""Statistics of a run's accuracy curve and of a metric across seeds.

* Stability (CuDFKD, Li et al., arXiv 2208.13648, §5.2.3 and Table 4): the mean mu and variance
  sigma^2 of the per-epoch test Acc@1 (Eq. 12) "from the 80th epoch to the end of the training".
* Time to threshold (CuDFKD Table 5, t_90): training hours until the student first reaches 90%
  test Acc@1. The paper gives GPU hours; a run on one GPU measures the same as wall-clock hours.
  Evaluation time is excluded, so methods are not charged for how often they are evaluated.
* Seed aggregation: mean, sample standard deviation and a 95% Student-t interval over seeds.

A run's history is a sequence of per-epoch records, epochs numbered from 1, each holding at least
``epoch``, ``acc1`` (percent) and ``train_seconds`` (cumulative training time at the end of that
epoch, evaluation excluded).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Metrics whose final and best (oracle: picked on the test set) values a run summary reports.
SUMMARY_METRICS = ("acc1", "agree1", "lp", "lp_reference_code")


def stability(acc1_by_epoch: Sequence[float], start_epoch: int) -> tuple[float, float]:
    """(mu, sigma^2) of Acc@1 from ``start_epoch`` (1-based, inclusive) to the last epoch.

    The paper does not state the variance estimator. The population variance (ddof=0) is used:
    the window is every epoch of the run from start_epoch on, described as it is rather than
    treated as a sample from a larger set of epochs. The two differ by the factor n / (n - 1),
    0.6% over the 171 epochs (80 to 250) of CuDFKD's CIFAR-10 runs.
    """
    if start_epoch < 1:
        raise ValueError(f"start_epoch is 1-based, got {start_epoch}")
    if len(acc1_by_epoch) < start_epoch:
        raise ValueError(f"the run has {len(acc1_by_epoch)} epochs, fewer than {start_epoch}")
    window = np.asarray(acc1_by_epoch, dtype=np.float64)[start_epoch - 1 :]
    return float(window.mean()), float(window.var(ddof=0))


def time_to_threshold(
    acc1_by_epoch: Sequence[float], train_seconds_by_epoch: Sequence[float], threshold: float
) -> tuple[float | None, int | None]:
    """(training hours, epoch) at the end of the first epoch with Acc@1 >= threshold percent.

    The first crossing counts even if accuracy later falls back; (None, None) if never reached.
    """
    if len(acc1_by_epoch) != len(train_seconds_by_epoch):
        raise ValueError(
            f"{len(acc1_by_epoch)} accuracies but {len(train_seconds_by_epoch)} training times"
        )
    pairs = zip(acc1_by_epoch, train_seconds_by_epoch, strict=True)
    for epoch, (acc1, seconds) in enumerate(pairs, start=1):
        if acc1 >= threshold:
            return float(seconds) / 3600.0, epoch
    return None, None


@dataclass(frozen=True)
class Aggregate:
    """Summary of one metric over seeds; std and interval are nan where n is too small."""

    mean: float
    std: float  # sample standard deviation (ddof=1)
    n: int  # number of finite values aggregated
    ci_low: float  # 95% Student-t confidence interval for the mean
    ci_high: float


# The t-interval needs three values: from two, t_{0.975, 1} = 12.7 makes it span tens of
# points (a 2-seed accuracy mean reads like [-370, 455]), which tells a reader nothing.
MIN_VALUES_FOR_INTERVAL = 3


def aggregate(values: Sequence[float | None]) -> Aggregate:
    """Mean, std and 95% t-interval of the finite entries of ``values`` (None, nan, inf dropped).

    Failed or diverged seeds are dropped rather than propagated so that one bad seed does not
    blank a table cell; ``n`` records how many seeds the numbers stand on. The interval is nan
    below MIN_VALUES_FOR_INTERVAL values.
    """
    finite = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    n = int(finite.size)
    if n == 0:
        return Aggregate(mean=math.nan, std=math.nan, n=0, ci_low=math.nan, ci_high=math.nan)
    mean = float(finite.mean())
    if n == 1:
        return Aggregate(mean=mean, std=math.nan, n=1, ci_low=math.nan, ci_high=math.nan)
    from scipy import stats as scipy_stats  # imported here: only reports aggregate over seeds

    std = float(finite.std(ddof=1))
    if n < MIN_VALUES_FOR_INTERVAL:
        return Aggregate(mean=mean, std=std, n=n, ci_low=math.nan, ci_high=math.nan)
    half_width = float(scipy_stats.t.ppf(0.975, df=n - 1)) * std / math.sqrt(n)
    return Aggregate(mean=mean, std=std, n=n, ci_low=mean - half_width, ci_high=mean + half_width)


def _best(values: Sequence[float]) -> tuple[float | None, int | None]:
    # Earliest epoch wins ties; non-finite values (a diverged epoch) are never "best".
    best_value, best_epoch = None, None
    for index, value in enumerate(values):
        if math.isfinite(value) and (best_value is None or value > best_value):
            best_value, best_epoch = value, index + 1
    return best_value, best_epoch


def summarize_history(
    history: Sequence[Mapping[str, Any]], start_epoch: int, threshold: float
) -> dict[str, Any]:
    """Scalars describing one run: final and best metrics, stability, time to threshold.

    Best values are maxima over epochs, i.e. test-set selection; report them as an oracle next to
    the final values. mu and sigma2 are None when the run is shorter than ``start_epoch``.
    """
    if not history:
        raise ValueError("the run history is empty")
    epochs = [int(record["epoch"]) for record in history]
    if epochs != list(range(1, len(history) + 1)):
        raise ValueError("history epochs must run 1, 2, ... without gaps or repeats")
    summary: dict[str, Any] = {"epochs": len(history)}
    for metric in SUMMARY_METRICS:
        present = [metric in record for record in history]
        if not any(present):
            continue
        if not all(present):
            raise ValueError(f"'{metric}' is missing from some epochs of the history")
        curve = [float(record[metric]) for record in history]
        best_value, best_epoch = _best(curve)
        summary[f"final_{metric}"] = curve[-1]
        summary[f"best_{metric}"] = best_value
        summary[f"best_{metric}_epoch"] = best_epoch
    acc1 = [float(record["acc1"]) for record in history]
    train_seconds = [float(record["train_seconds"]) for record in history]
    mu, sigma2 = stability(acc1, start_epoch) if len(acc1) >= start_epoch else (None, None)
    hours, epoch = time_to_threshold(acc1, train_seconds, threshold)
    summary.update(
        mu=mu,
        sigma2=sigma2,
        t_threshold_hours=hours,
        epochs_to_threshold=epoch,
        train_hours=train_seconds[-1] / 3600.0,
    )
    return summary
