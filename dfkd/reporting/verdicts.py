"""Whether a reproduced cell agrees with its published number.

A cell (pair, method) with a published Acc@1 is *reproduced* when the published value lies inside
the 95% Student-t interval of the mean final-epoch Acc@1 over the completed seeds; with fewer
than three seeds (no interval is shown) when it lies within the stated tolerance of the mean.
The delta is always ours minus published. A published best-epoch number sits above a final-epoch
mean by construction, so "not reproduced" is a finding to explain, not a verdict on a method.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

INTERVAL = "interval"
TOLERANCE = "tolerance"


@dataclass(frozen=True)
class Verdict:
    published: float
    delta: float  # ours (mean final-epoch Acc@1) minus published, in points
    reproduced: bool
    rule: str  # INTERVAL or TOLERANCE


def verdict(
    mean: float, low: float, high: float, published: float, tolerance: float
) -> Verdict | None:
    """None when the cell has no mean (no completed seed)."""
    if not math.isfinite(mean):
        return None
    if math.isfinite(low) and math.isfinite(high):
        return Verdict(published, mean - published, low <= published <= high, INTERVAL)
    return Verdict(published, mean - published, abs(mean - published) <= tolerance, TOLERANCE)


def cell_verdicts(
    groups: pd.DataFrame, results: Mapping[str, Any], tolerance: float
) -> dict[tuple[str, str], Verdict]:
    """(pair, method) -> Verdict for every cell with a published Acc@1."""
    verdicts = {}
    for row in groups.to_dict("records"):
        published = (results.get(row["pair"]) or {}).get(row["method"])
        acc1 = _acc1(published)
        if acc1 is None:
            continue
        found = verdict(
            row["final_acc1_mean"], row["final_acc1_ci_low"], row["final_acc1_ci_high"], acc1,
            tolerance,
        )  # fmt: skip
        if found is not None:
            verdicts[(row["pair"], row["method"])] = found
    return verdicts


def _acc1(published: Any) -> float | None:
    value = published.get("acc1") if isinstance(published, Mapping) else None
    return None if value is None else float(value)


def summary_line(verdicts: Mapping[tuple[str, str], Verdict], tolerance: float) -> str | None:
    """ "k of n cells with a published Acc@1 reproduced ..."; None without such cells."""
    if not verdicts:
        return None
    rules = {found.rule for found in verdicts.values()}
    how = []
    if INTERVAL in rules:
        how.append("the published value inside the 95% interval over seeds")
    if TOLERANCE in rules:
        how.append(f"within {tolerance:g} points of the mean (fewer than 3 seeds)")
    reproduced = sum(found.reproduced for found in verdicts.values())
    return (
        f"{reproduced} of {len(verdicts)} cells with a published Acc@1 reproduced "
        f"({'; or '.join(how)})"
    )
