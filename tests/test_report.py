"""`dfkd report`: the comparison and stability tables, cell by cell
(fixture: tests/report_fixture.py)."""

from __future__ import annotations

import csv
import io
from typing import Any

import numpy as np
import pytest
from scipy import stats as scipy_stats

from tests.report_fixture import (
    FINAL,
    METHODS,
    OFFSETS,
    PAIRS,
    SEEDS,
    START_EPOCH,
    THRESHOLD,
    _comparison,
    _completed,
    _expected,
    _numbers,
    _offsets,
)

# ---------------------------------------------------------------------------------------------
# Comparison table


def test_rows_follow_the_argument_order_with_the_teacher_first(report: dict[str, Any]) -> None:
    labels = [row[0] for row in report["tables"][0][2:]]
    assert labels == ["Teacher", "dfq", "dafl_bn"]
    header = report["tables"][0][0]
    assert header[1] == "cnn_small → cnn_tiny<br>Acc@1 (%)"
    assert header[5] == "wrn40_2 → wrn16_2<br>Acc@1 (%)"


@pytest.mark.parametrize("pair", PAIRS)
@pytest.mark.parametrize("method", METHODS)
def test_final_accuracy_cell_is_mean_std_over_completed_seeds(
    report: dict[str, Any], pair: str, method: str
) -> None:
    seeds = _completed(pair, method)
    finals = [FINAL[(pair, method)][seed] for seed in seeds]
    acc1, agree1, lp, lp_code = _comparison(report)[(method, pair)]
    diverged = len(SEEDS) - len(seeds)
    count = f"({len(seeds)} + {diverged} diverged)" if diverged else f"({len(seeds)})"
    assert acc1.replace("**", "").startswith(f"{_expected(finals, 2)} {count}")
    assert agree1.startswith(_expected([f + 2.0 for f in finals], 2))
    assert lp == _expected([0.5 + f / 1000.0 for f in finals], 4)
    assert lp_code.startswith(_expected([0.3 + f / 1000.0 for f in finals], 4))


def test_the_diverged_run_is_counted_and_kept_out_of_the_mean(report: dict[str, Any]) -> None:
    acc1 = _comparison(report)[("dafl_bn", PAIRS[1])][0]
    assert "(2 + 1 diverged)" in acc1
    assert _numbers(acc1)[0] == pytest.approx((93.0 + 94.5) / 2, abs=0.005)


def test_only_the_best_mean_of_each_pair_is_bold(report: dict[str, Any]) -> None:
    cells = _comparison(report)
    bold = {(m, p) for (m, p), row in cells.items() if row[0].startswith("**")}
    assert bold == {("dfq", PAIRS[0]), ("dafl_bn", PAIRS[1])}
    table_text = "".join(cell for row in report["tables"][0] for cell in row)
    assert table_text.count("**") == 2 * 2


def test_published_numbers_sit_beside_the_matching_cells(report: dict[str, Any]) -> None:
    cells = _comparison(report)
    acc1, agree1, lp, lp_code = cells[("dfq", PAIRS[0])]
    assert acc1.endswith("[93.33] ✓")
    assert agree1.endswith("[95.50]")
    assert "[" not in lp  # published L_p follow the authors' code, not Eq. 14
    assert lp_code.endswith("[0.8123]")
    assert all("[" not in cell for cell in cells[("dafl_bn", PAIRS[0])])
    acc1, agree1, _, _ = cells[("dafl_bn", PAIRS[1])]
    assert acc1.endswith("[95.01] ✗")
    assert "[" not in agree1  # published as null
    assert cells[("Teacher", PAIRS[0])] == ["90.79 [91.00]", "–", "–", "–"]
    assert cells[("Teacher", PAIRS[1])][0] == "94.10"
    assert "[1.00]" not in report["markdown"]  # another dataset's published numbers


# ---------------------------------------------------------------------------------------------
# Stability table


def _stability(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, str]]:
    header, _, *rows = report["tables"][1]
    table, pair = {}, None
    for row in rows:
        pair = row[0].replace(" → ", "-") or pair
        table[(pair, row[1])] = dict(zip(header, row, strict=True))
    return table


def _curve(pair: str, method: str, seed: int) -> list[float]:
    final = FINAL[(pair, method)][seed]
    return [final - offset for offset in _offsets(seed)]


def _reach(pair: str, method: str, seed: int) -> tuple[float, int] | None:
    """(training minutes, epoch) when the seed's curve first reaches the threshold."""
    for epoch, acc1 in enumerate(_curve(pair, method, seed), start=1):
        if acc1 >= THRESHOLD:
            return (20.0 + 4.0 * seed) * epoch / 60.0, epoch
    return None


def test_stability_columns_are_labelled_with_threshold_units_and_oracle(
    report: dict[str, Any],
) -> None:
    header = report["tables"][1][0]
    assert "t_90 (min)" in header
    assert "Best Acc@1 (%), oracle" in header
    assert "Train (min)" in header and "Total (min)" in header
    assert "selected on the test set" in report["markdown"]


@pytest.mark.parametrize("pair", PAIRS)
@pytest.mark.parametrize("method", METHODS)
def test_mu_sigma2_and_oracle_per_group(report: dict[str, Any], pair: str, method: str) -> None:
    row = _stability(report)[(pair, method)]
    curves = [np.asarray(_curve(pair, method, seed)) for seed in _completed(pair, method)]
    windows = [curve[START_EPOCH - 1 :] for curve in curves]
    assert row["μ (%)"] == _expected([w.mean() for w in windows], 2)
    assert row["σ²"] == _expected([w.var(ddof=0) for w in windows], 2)
    assert row["Best Acc@1 (%), oracle"] == _expected([c.max() for c in curves], 2)
    assert row["Best of seeds (%), oracle"] == f"{max(c.max() for c in curves):.2f}"


@pytest.mark.parametrize("pair", PAIRS)
@pytest.mark.parametrize("method", METHODS)
def test_final_accuracy_interval_is_the_student_t_interval(
    report: dict[str, Any], pair: str, method: str
) -> None:
    finals = [FINAL[(pair, method)][seed] for seed in _completed(pair, method)]
    cell = _stability(report)[(pair, method)]["Final Acc@1 95% CI"]
    if len(finals) < 3:  # no interval from two seeds
        assert cell == "–"
        return
    half = scipy_stats.t.ppf(0.975, len(finals) - 1) * np.std(finals, ddof=1) / np.sqrt(len(finals))
    assert cell == f"[{np.mean(finals) - half:.2f}, {np.mean(finals) + half:.2f}]"


def test_time_to_threshold_with_partial_full_and_no_reach(report: dict[str, Any]) -> None:
    table = _stability(report)
    partial = table[(PAIRS[0], "dfq")]
    reached = [_reach(PAIRS[0], "dfq", seed) for seed in SEEDS]
    assert reached[1] is None and reached[0] is not None and reached[2] is not None
    minutes, epochs = zip(reached[0], reached[2], strict=True)
    mean, std = _numbers(partial["t_90 (min)"])[:2]
    assert partial["t_90 (min)"].endswith("(2/3)")
    assert mean == pytest.approx(np.mean(minutes), abs=0.005)
    assert std == pytest.approx(np.std(minutes, ddof=1), abs=0.005)
    assert partial["Epochs to 90%"] == f"{_expected(list(epochs), 1)} (2/3)"
    assert table[(PAIRS[0], "dafl_bn")]["t_90 (min)"] == "not reached"
    assert table[(PAIRS[1], "dfq")]["Epochs to 90%"] == "not reached"
    full = table[(PAIRS[1], "dafl_bn")]
    assert full["n"] == "2 + 1 diverged"
    assert "/" not in full["t_90 (min)"]


@pytest.mark.parametrize("pair", PAIRS)
@pytest.mark.parametrize("method", METHODS)
def test_times_per_run_average_the_completed_seeds_only(
    report: dict[str, Any], pair: str, method: str
) -> None:
    row = _stability(report)[(pair, method)]
    train = [(20.0 + 4.0 * seed) * len(OFFSETS) / 60.0 for seed in _completed(pair, method)]
    for column, minutes in (("Train (min)", train), ("Total (min)", [t + 0.06 for t in train])):
        mean, std = _numbers(row[column])
        assert mean == pytest.approx(np.mean(minutes), abs=0.005)
        assert std == pytest.approx(np.std(minutes, ddof=1), abs=0.005)


def test_memory_uses_the_device_peak_or_labels_host_rss(report: dict[str, Any]) -> None:
    table = _stability(report)
    assert table[(PAIRS[0], "dfq")]["Peak memory (GiB)"] == "1.50 (host RSS)"
    assert table[(PAIRS[1], "dfq")]["Peak memory (GiB)"] == "2.00"


# ---------------------------------------------------------------------------------------------
# Verdicts


def test_a_verdict_uses_the_interval_from_three_seeds_and_the_tolerance_below() -> None:
    from dfkd.reporting.verdicts import verdict

    inside = verdict(90.0, 88.0, 92.0, 91.5, tolerance=0.1)
    assert (inside.reproduced, inside.rule, inside.delta) == (True, "interval", -1.5)
    outside = verdict(90.0, 88.0, 92.0, 92.5, tolerance=5.0)  # the tolerance does not apply
    assert (outside.reproduced, outside.delta) == (False, -2.5)
    near = verdict(90.0, float("nan"), float("nan"), 91.0, tolerance=1.0)
    assert (near.reproduced, near.rule) == (True, "tolerance")
    assert not verdict(90.0, float("nan"), float("nan"), 91.01, tolerance=1.0).reproduced
    assert verdict(float("nan"), float("nan"), float("nan"), 91.0, tolerance=1.0) is None


def test_every_published_cell_has_a_verdict_in_the_tables_and_the_csv(
    report: dict[str, Any],
) -> None:
    # dfq on the first pair: 3 seeds, the published 93.33 inside their Student-t interval.
    finals = np.array(FINAL[(PAIRS[0], "dfq")])
    half = scipy_stats.t.ppf(0.975, 2) * finals.std(ddof=1) / np.sqrt(3)
    assert finals.mean() - half <= 93.33 <= finals.mean() + half
    # dafl_bn on the second pair: 2 completed seeds, 93.75, more than 1 point from 95.01.
    summary = (
        "1 of 2 cells with a published Acc@1 reproduced (the published value inside the 95% "
        "interval over seeds; or within 1 points of the mean (fewer than 3 seeds))"
    )
    assert f"**{summary}.**" in report["markdown"]
    assert summary.replace("%", r"\%") + "." in report["latex"]
    assert r"[93.33] \checkmark" in report["latex"] and r"[95.01] $\times$" in report["latex"]
    csv_text = (report["out"] / "digits_runs.csv").read_text()
    runs = list(csv.DictReader(io.StringIO(csv_text)))
    rows = {(row["pair"], row["method"], row["seed"]): row for row in runs}
    dfq = rows[(PAIRS[0], "dfq", "0")]
    assert dfq["verdict"] == "reproduced"
    assert float(dfq["delta_acc1"]) == pytest.approx(finals.mean() - 93.33)
    dafl = rows[(PAIRS[1], "dafl_bn", "1")]
    assert (dafl["verdict"], float(dafl["published_acc1"])) == ("not reproduced", 95.01)
    assert rows[(PAIRS[0], "dafl_bn", "0")]["verdict"] == ""  # nothing published
