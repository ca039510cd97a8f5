"""`dfkd report`: the result tables, cell by cell (fixture: tests/report_fixture.py)."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from tests.report_fixture import (
    FINAL,
    METHODS,
    OFFSETS,
    PAIRS,
    SEEDS,
    START_EPOCH,
    TEACHERS,
    THRESHOLD,
    _completed,
    _expected,
    _numbers,
    _offsets,
)

NAMES = {"dfq": "DFQ", "dafl_bn": 'DAFL_bn "BN" `x` & 5%'}


def _rows(report: dict[str, Any], name: str) -> dict[str, list[str]]:
    """Row label -> cells (its first row of that label), for a table without groups."""
    rows: dict[str, list[str]] = {}
    for row in report["tables"][name][1:]:
        rows.setdefault(row[0], row[1:])
    return rows


def _grouped(report: dict[str, Any], name: str) -> dict[tuple[str, str], dict[str, str]]:
    """(pair, row label) -> {header: cell}, for a table grouped by pair."""
    header, *rows = report["tables"][name]
    table, pair = {}, None
    for row in rows:
        if all(cell == "" for cell in row[1:]) and row[0].startswith("*"):
            if not row[0].startswith("*Published"):  # a pair's published rows stay under it
                pair = PAIRS[0] if "cnn" in row[0] else PAIRS[1]
            continue
        table[(pair, row[0])] = dict(zip(header, row, strict=True))
    return table


def _curve(pair: str, method: str, seed: int) -> list[float]:
    final = FINAL[(pair, method)][seed]
    return [final - offset for offset in _offsets(seed)]


# ---------------------------------------------------------------------------------------------
# Acc@1: methods as rows, pairs as columns


def test_main_table_has_the_teacher_then_the_methods_in_argument_order(report) -> None:
    header, *rows = report["tables"]["table"]
    assert header == ["Method", "cnn_small<br>cnn_tiny", "WRN-40-2<br>WRN-16-2"]
    labels = [row[0] for row in rows]
    assert labels[:3] == ["Teacher", *NAMES.values()]
    assert rows[0][1:] == [f"{TEACHERS['cnn_small']:.2f}", f"{TEACHERS['wrn40_2']:.2f}"]


@pytest.mark.parametrize("pair", PAIRS)
@pytest.mark.parametrize("method", METHODS)
def test_an_acc1_cell_is_the_mean_and_std_over_the_completed_seeds(report, pair, method):
    finals = [FINAL[(pair, method)][seed] for seed in _completed(pair, method)]
    cell = _rows(report, "table")[NAMES[method]][PAIRS.index(pair)]
    assert cell.replace("**", "").replace("<sup>†</sup>", "") == _expected(finals, 2)


def test_the_best_mean_of_each_pair_is_bold_and_a_diverged_cell_is_marked(report) -> None:
    rows = _rows(report, "table")
    assert rows["DFQ"][0].startswith("**") and not rows[NAMES["dafl_bn"]][0].startswith("**")
    assert rows[NAMES["dafl_bn"]][1].startswith("**")  # 93.75 over 71.17
    assert "**93.75**<sup>†</sup> ± " in rows[NAMES["dafl_bn"]][1]
    text = report["markdown"]["table"]
    assert "1 of 3 runs diverged; the mean is over the others." in text
    assert "".join(cell for row in report["tables"]["table"] for cell in row).count("**") == 2 * 2


def test_published_numbers_have_a_block_of_their_own_with_their_sources(report) -> None:
    text = report["markdown"]["table"]
    _, *rows = report["tables"]["table"]
    block = rows[[row[0] for row in rows].index("*Published*") + 1 :]
    assert block[0] == ["Teacher", "91.00<sup>a</sup>", "–"]
    assert block[1] == ["DFQ", "93.33<sup>a</sup>", "–"]
    assert block[2] == [NAMES["dafl_bn"], "–", "95.01<sup>b,1</sup>"]  # its note is the first
    assert 'Published: <sup>a</sup> CuDFKD\'s "Table 1"; <sup>b</sup> CMI_T1 ~ #1.' in text
    assert "1: notes on the marked published numbers, in the provenance." in text
    assert not re.search(r"(?<![\d.])1\.00", text)  # another dataset's published numbers


def test_the_caption_is_short_and_the_provenance_folds_out(report) -> None:
    text = report["markdown"]["table"]
    caption = text.split("\n\n")[1]
    assert caption.startswith("Final-epoch test Acc@1 (%) of the students on scikit-learn digits")
    assert "3 seeds (0, 1, 2)" in caption
    assert len(caption.split()) < 60
    provenance = text[text.index("<details><summary>Provenance</summary>") :]
    for fact in ("0123456+dirty", "NVIDIA H200", "uv.lock abababababab, as locked",
                 "except torch 2.15.0 (locked 2.14.1)", "rendered 2024-01-02",
                 "CMI Table_1 & 5% more; selected as the final epoch (compared with our final",
                 f"Note 1: equals the `README`'s value ({NAMES['dafl_bn']} on WRN-40-2 → "
                 "WRN-16-2)"):  # fmt: skip
        assert fact in provenance, fact


# ---------------------------------------------------------------------------------------------
# Tables grouped by pair


@pytest.mark.parametrize("pair", PAIRS)
@pytest.mark.parametrize("method", METHODS)
def test_fidelity_cells(report, pair, method) -> None:
    finals = [FINAL[(pair, method)][seed] for seed in _completed(pair, method)]
    row = _grouped(report, "fidelity")[(pair, NAMES[method])]
    assert row["Agree@1 (%)"] == _expected([f + 2.0 for f in finals], 2)
    assert row["L_p"] == _expected([0.5 + f / 1000.0 for f in finals], 3)
    assert row["L_p (code)"] == _expected([0.3 + f / 1000.0 for f in finals], 3)
    published = (pair, method) == (PAIRS[0], "dfq")
    assert row["Pub."] == ("0.8123" if published else "–")


@pytest.mark.parametrize("pair", PAIRS)
@pytest.mark.parametrize("method", METHODS)
def test_stability_cells(report, pair, method) -> None:
    row = _grouped(report, "stability")[(pair, NAMES[method])]
    curves = [np.asarray(_curve(pair, method, seed)) for seed in _completed(pair, method)]
    windows = [curve[START_EPOCH - 1 :] for curve in curves]
    assert row["μ (%)"] == _expected([w.mean() for w in windows], 2)
    assert row["σ²"] == _expected([w.var(ddof=0) for w in windows], 2)
    assert row["Best (%)"] == _expected([c.max() for c in curves], 2)
    assert row["Best of<br>seeds"] == f"{max(c.max() for c in curves):.2f}"


def test_a_published_stability_row_sits_under_its_pair(report) -> None:
    for name in ("stability", "cost"):
        _, *rows = report["tables"][name]
        labels = [row[0] for row in rows]
        # under the first pair, after its methods: a line naming the source, then its rows
        at = labels.index('*Published: CuDFKD\'s "Table 1"*')
        assert labels[at - len(METHODS) - 1 : at] == [labels[0], *NAMES.values()]
        assert labels[at + 1] == "*DFQ*" and "cnn_tiny" not in labels[at + 2]
    row = _grouped(report, "stability")[(PAIRS[0], "*DFQ*")]
    assert list(row.values())[1:] == ["*87.2*", "*13.90*", "*93.3*", "–"]
    cost = _grouped(report, "cost")[(PAIRS[0], "*DFQ*")]
    assert cost["Memory<br>(GiB)"] == "*7.85*" and cost["Total<br>(min)"] == "*25.20* h"
    assert "selected as best over trials" in report["markdown"]["stability"]


def _reach(pair: str, method: str, seed: int) -> tuple[float, int] | None:
    """(training minutes, epoch) when the seed's curve first reaches the threshold."""
    for epoch, acc1 in enumerate(_curve(pair, method, seed), start=1):
        if acc1 >= THRESHOLD:
            return (20.0 + 4.0 * seed) * epoch / 60.0, epoch
    return None


def test_time_to_threshold_with_partial_full_and_no_reach(report) -> None:
    table = _grouped(report, "cost")
    partial = table[(PAIRS[0], "DFQ")]
    reached = [_reach(PAIRS[0], "dfq", seed) for seed in SEEDS]
    assert reached[1] is None and reached[0] is not None and reached[2] is not None
    minutes, epochs = zip(reached[0], reached[2], strict=True)
    mean, std = _numbers(partial["t_90<br>(min)"])[:2]
    assert partial["t_90<br>(min)"].endswith("(2/3)")
    assert mean == pytest.approx(np.mean(minutes), abs=0.005)
    assert std == pytest.approx(np.std(minutes, ddof=1), abs=0.005)
    assert partial["Epochs<br>to 90%"] == f"{_expected(list(epochs), 1)} (2/3)"
    assert table[(PAIRS[0], NAMES["dafl_bn"])]["t_90<br>(min)"] == "n.r."
    assert "n.r.: no seed reached 90%." in report["markdown"]["cost"]


@pytest.mark.parametrize("pair", PAIRS)
@pytest.mark.parametrize("method", METHODS)
def test_times_per_run_average_the_completed_seeds_only(report, pair, method) -> None:
    row = _grouped(report, "cost")[(pair, NAMES[method])]
    train = [(20.0 + 4.0 * seed) * len(OFFSETS) / 60.0 for seed in _completed(pair, method)]
    for column, minutes in (
        ("Train<br>(min)", train),
        ("Total<br>(min)", [t + 0.06 for t in train]),
    ):
        mean, std = _numbers(row[column])
        assert mean == pytest.approx(np.mean(minutes), abs=0.005)
        assert std == pytest.approx(np.std(minutes, ddof=1), abs=0.005)


def test_memory_uses_the_device_peak_or_marks_host_rss(report) -> None:
    table = _grouped(report, "cost")
    assert table[(PAIRS[0], "DFQ")]["Memory<br>(GiB)"] == "1.50<sup>*</sup>"
    assert table[(PAIRS[1], "DFQ")]["Memory<br>(GiB)"] == "2.00"


@pytest.mark.parametrize("pair", PAIRS)
@pytest.mark.parametrize("method", METHODS)
def test_spread_cells_hold_n_interval_and_range(report, pair, method) -> None:
    from scipy import stats as scipy_stats

    finals = [FINAL[(pair, method)][seed] for seed in _completed(pair, method)]
    row = _grouped(report, "spread")[(pair, NAMES[method])]
    diverged = len(SEEDS) - len(finals)
    assert row["n"] == str(len(finals)) + (f" + {diverged} div." if diverged else "")
    assert row["Min–max"] == f"{min(finals):.2f}–{max(finals):.2f}"
    if len(finals) < 3:  # no interval from two seeds
        assert row["95% interval"] == "–"
        return
    half = scipy_stats.t.ppf(0.975, len(finals) - 1) * np.std(finals, ddof=1) / np.sqrt(3)
    low, high = np.mean(finals) - half, np.mean(finals) + half
    assert row["95% interval"] == f"[{low:.2f}, {high:.2f}]"
