"""Tests for dfkd.stats on fixture curves whose answers are worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from dfkd.stats import Aggregate, aggregate, stability, summarize_history, time_to_threshold


def _curve_ending(tail: list[float], start_epoch: int = 80) -> list[float]:
    # Epochs 1..start_epoch-1 sit far from the tail so that a window off by one epoch shows up.
    return [10.0] * (start_epoch - 1) + tail


def test_stability_from_epoch_80_by_hand() -> None:
    # Epochs 80, 81, 82 hold 90, 92, 94: mu = 92, sigma^2 = (4 + 0 + 4) / 3.
    mu, sigma2 = stability(_curve_ending([90.0, 92.0, 94.0]), start_epoch=80)
    assert mu == pytest.approx(92.0)
    assert sigma2 == pytest.approx(8.0 / 3.0)


def test_stability_start_epoch_is_inclusive_and_one_based() -> None:
    acc1 = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert stability(acc1, start_epoch=1) == pytest.approx((3.0, 2.0))
    assert stability(acc1, start_epoch=4) == pytest.approx((4.5, 0.25))
    # A run exactly start_epoch long has a one-epoch window.
    assert stability(acc1, start_epoch=5) == pytest.approx((5.0, 0.0))


def test_stability_rejects_short_runs_and_zero_start() -> None:
    with pytest.raises(ValueError):
        stability([90.0] * 79, start_epoch=80)
    with pytest.raises(ValueError):
        stability([90.0] * 5, start_epoch=0)


def test_time_to_threshold_reached_exactly_at_equality() -> None:
    acc1 = [50.0, 89.99, 90.0, 95.0]
    seconds = [3600.0, 7200.0, 9000.0, 10800.0]
    assert time_to_threshold(acc1, seconds, threshold=90.0) == (2.5, 3)


def test_time_to_threshold_uses_first_crossing_despite_later_drop() -> None:
    acc1 = [80.0, 91.0, 85.0, 88.0, 93.0]
    seconds = [1800.0, 3600.0, 5400.0, 7200.0, 9000.0]
    assert time_to_threshold(acc1, seconds, threshold=90.0) == (1.0, 2)


def test_time_to_threshold_never_reached() -> None:
    assert time_to_threshold([10.0, 89.9], [1.0, 2.0], threshold=90.0) == (None, None)


def test_time_to_threshold_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError):
        time_to_threshold([90.0, 91.0], [1.0], threshold=90.0)


def test_aggregate_matches_numpy_and_scipy() -> None:
    values = [94.1, 93.7, 94.6, 93.9]
    result = aggregate(values)
    std = np.std(values, ddof=1)
    low, high = scipy_stats.t.interval(0.95, df=3, loc=np.mean(values), scale=std / 2.0)
    assert result.n == 4
    assert result.mean == pytest.approx(np.mean(values), abs=1e-12)
    assert result.std == pytest.approx(std, abs=1e-12)
    assert result.ci_low == pytest.approx(low, abs=1e-12)
    assert result.ci_high == pytest.approx(high, abs=1e-12)


def test_aggregate_three_values_by_hand_and_no_interval_from_two() -> None:
    # mean 2, std 1, half-width t_{0.975,2} * 1 / sqrt(3) = 4.302653 / 1.7320508 = 2.484138...
    result = aggregate([1.0, 2.0, 3.0])
    assert result.std == pytest.approx(1.0)
    assert result.ci_low == pytest.approx(2.0 - 2.4841377, abs=1e-6)
    assert result.ci_high == pytest.approx(2.0 + 2.4841377, abs=1e-6)
    two = aggregate([1.0, 3.0])
    assert two.std == pytest.approx(math.sqrt(2.0)) and two.n == 2
    assert math.isnan(two.ci_low) and math.isnan(two.ci_high)


def test_aggregate_drops_non_finite_values() -> None:
    result = aggregate([None, 1.0, math.nan, 3.0, math.inf])
    assert result.n == 2
    assert result.mean == pytest.approx(2.0)
    assert result.std == pytest.approx(math.sqrt(2.0))


def test_aggregate_single_value_has_no_spread() -> None:
    result = aggregate([93.5, None])
    assert result.n == 1
    assert result.mean == 93.5
    assert math.isnan(result.std)
    assert math.isnan(result.ci_low) and math.isnan(result.ci_high)


def test_aggregate_empty() -> None:
    result = aggregate([None, math.nan])
    assert result.n == 0
    assert all(math.isnan(x) for x in (result.mean, result.std, result.ci_low, result.ci_high))
    assert isinstance(result, Aggregate)


def _history(acc1: list[float], **metrics: list[float]) -> list[dict[str, float]]:
    # Each epoch takes 900 s of training, so epoch e ends at e / 4 hours.
    return [
        {
            "epoch": epoch,
            "acc1": value,
            "train_seconds": 900.0 * epoch,
            **{name: curve[epoch - 1] for name, curve in metrics.items()},
        }
        for epoch, value in enumerate(acc1, start=1)
    ]


def test_summarize_history_by_hand() -> None:
    acc1 = [50.0, 90.0, 95.0, 93.0]
    agree1 = [60.0, 97.0, 96.0, 98.0]
    lp = [0.5, 0.9, 0.9, 0.8]
    summary = summarize_history(_history(acc1, agree1=agree1, lp=lp), start_epoch=3, threshold=90.0)
    assert summary == {
        "epochs": 4,
        "final_acc1": 93.0,
        "best_acc1": 95.0,
        "best_acc1_epoch": 3,
        "final_agree1": 98.0,
        "best_agree1": 98.0,
        "best_agree1_epoch": 4,
        "final_lp": 0.8,
        "best_lp": 0.9,
        "best_lp_epoch": 2,  # ties go to the earliest epoch
        "mu": pytest.approx(94.0),
        "sigma2": pytest.approx(1.0),
        "t_threshold_hours": 0.5,
        "epochs_to_threshold": 2,
        "train_hours": 1.0,
    }


def test_summarize_history_short_run_and_threshold_not_reached() -> None:
    summary = summarize_history(_history([40.0, 60.0]), start_epoch=80, threshold=90.0)
    assert summary["mu"] is None and summary["sigma2"] is None
    assert summary["t_threshold_hours"] is None and summary["epochs_to_threshold"] is None
    assert summary["train_hours"] == 0.5
    assert "final_agree1" not in summary


def test_summarize_history_rejects_inconsistent_histories() -> None:
    with pytest.raises(ValueError):
        summarize_history([], start_epoch=1, threshold=90.0)
    skipped = _history([1.0, 2.0, 3.0])
    del skipped[1]
    with pytest.raises(ValueError):
        summarize_history(skipped, start_epoch=1, threshold=90.0)
    partial = _history([1.0, 2.0], lp=[0.5, 0.6])
    del partial[0]["lp"]
    with pytest.raises(ValueError):
        summarize_history(partial, start_epoch=1, threshold=90.0)
