"""Per-cell values: one row per (pair, method) of the per-run table, over its completed seeds.

A diverged run stopped before the end of its schedule, so its numbers are not final-epoch
numbers: it is kept out of every mean here and counted in the cell instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from dfkd.stats import aggregate

# Aggregated over the completed seeds of each cell: mean, std, 95% t-interval, min and max.
AGGREGATED = (
    "final_acc1", "final_agree1", "final_lp", "final_lp_reference_code", "best_acc1", "mu",
    "sigma2", "t_threshold_hours", "epochs_to_threshold", "train_hours", "total_hours",
)  # fmt: skip
STATISTICS = ("mean", "std", "ci_low", "ci_high", "min", "max")


def group_table(runs: pd.DataFrame, by: Sequence[str] = ("pair", "method")) -> pd.DataFrame:
    """One row per distinct value of the `by` columns, in experiment order (first column first,
    each in order of appearance): seed counts and aggregates."""
    orders = [{value: i for i, value in enumerate(dict.fromkeys(runs[c]))} for c in by]
    keys = sorted(
        dict.fromkeys(zip(*(runs[c] for c in by), strict=True)),
        key=lambda key: tuple(order[value] for order, value in zip(orders, key, strict=True)),
    )
    rows = []
    for key in keys:
        selected = pd.Series(True, index=runs.index)
        for column, value in zip(by, key, strict=True):
            selected &= runs[column] == value
        group = runs[selected]
        completed = group[group["status"] == "completed"]
        row: dict[str, Any] = {
            **dict(zip(by, key, strict=True)),
            "pair": group["pair"].iloc[0],
            "teacher": group["teacher"].iloc[0],
            "student": group["student"].iloc[0],
            "method": group["method"].iloc[0],
            "runs": len(group),
            "completed": len(completed),
            "diverged": int((group["status"] == "diverged").sum()),
            "reached": int(completed["t_threshold_hours"].notna().sum()),
        }
        for column in AGGREGATED:
            values = numbers(completed[column])
            summary = aggregate(values)
            finite = [v for v in values if math.isfinite(v)]
            row.update(
                {
                    f"{column}_mean": summary.mean,
                    f"{column}_std": summary.std,
                    f"{column}_ci_low": summary.ci_low,
                    f"{column}_ci_high": summary.ci_high,
                    f"{column}_min": min(finite, default=math.nan),
                    f"{column}_max": max(finite, default=math.nan),
                }
            )
        # A CPU run has no device memory; its host peak (RSS) stands in, and is labelled so.
        device = numbers(group["peak_device_memory_bytes"])
        host = numbers(group["peak_host_memory_bytes"])
        peaks = [d if math.isfinite(d) else h for d, h in zip(device, host, strict=True)]
        row["peak_memory_bytes"] = max((p for p in peaks if math.isfinite(p)), default=math.nan)
        row["memory_is_host"] = any(not math.isfinite(d) for d in device)
        rows.append(row)
    return pd.DataFrame(rows)


def numbers(column: pd.Series) -> list[float]:
    """A column as floats, missing values as nan."""
    return [math.nan if pd.isna(v) else float(v) for v in column]


def cell_values(runs: pd.DataFrame, pair: str, method: str, column: str) -> list[float]:
    """The finite values of ``column`` over the completed seeds of one cell."""
    selected = (runs["pair"] == pair) & (runs["method"] == method) & (runs["status"] == "completed")
    return [v for v in numbers(runs.loc[selected, column]) if math.isfinite(v)]


def _json_number(value: Any) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def headline_metrics(
    cells: pd.DataFrame,
    teacher_acc1: Mapping[str, float],
    aggregates: Mapping[str, Mapping[str, float]],
) -> dict[str, Any]:
    """What `dvc metrics show` lists, one number each: {pair: {method: mean final Acc@1},
    teacher: {architecture: acc1}, aggregate: {method: IQM}}; undefined numbers are null. The
    spread, n, intervals and the other metrics are in the tables and the CSVs."""
    metrics: dict[str, Any] = {}
    for row in cells.itertuples(index=False):
        metrics.setdefault(row.pair, {})[row.method] = _json_number(row.final_acc1_mean)
    metrics["teacher"] = {
        teacher: _json_number(teacher_acc1.get(teacher, math.nan))
        for teacher in dict.fromkeys(cells["teacher"])
    }
    metrics["aggregate"] = {
        method: _json_number(values["iqm"]) for method, values in aggregates.items()
    }
    return metrics
