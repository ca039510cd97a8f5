"""`dfkd report`: the comparison tables (reproduction, reference, P(A > B), aggregate) and the
per-cell CSV, against values worked out here (fixture: tests/report_fixture.py)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dfkd.cli import main
from tests.report_fixture import (
    DATE_EPOCH,
    FINAL,
    PAIRS,
    SEEDS,
    START_EPOCH,
    TEACHERS,
    THRESHOLD,
    _write_inputs,
    read_outputs,
)

T_975_DF2 = 4.302652729911275
DIGITS_TEST_IMAGES, CHANCE = 451, 10.0
DAFL = 'DAFL_bn "BN" `x` & 5%'


def _body(report: dict[str, Any], name: str) -> list[list[str]]:
    return [row for row in report["tables"][name][1:] if not row[0].startswith("*")]


def test_reproduction_compares_under_each_sources_selection_rule(report) -> None:
    rows = {row[0]: row for row in _body(report, "reproduction")}
    # DFQ's source selects the best epoch: each seed's best is 0.4 (1 + 0.5 seed) above its end.
    best = [FINAL[(PAIRS[0], "dfq")][s] + 0.4 * (1 + 0.5 * s) for s in SEEDS]
    delta = np.mean(best) - 93.33
    half = T_975_DF2 * np.std(best, ddof=1) / math.sqrt(3)
    se = 100 * math.sqrt(0.9333 * 0.0667 / DIGITS_TEST_IMAGES)
    verdict = "inconclusive" if delta - half < 0 < delta + half else "below"
    assert rows["DFQ"][1:] == [
        "best", f"{np.mean(best):.2f}", "93.33",
        f"{delta:.2f}".replace("-", "−"),
        f"[{delta - half:.2f}, {delta + half:.2f}]".replace("-", "−"),
        f"{se:.2f}", verdict,
    ]  # fmt: skip
    # DAFL_bn's source selects the final epoch; two completed seeds give no interval.
    mean = (93.0 + 94.5) / 2
    se = 100 * math.sqrt(0.9501 * 0.0499 / DIGITS_TEST_IMAGES)
    delta = f"{mean - 95.01:.2f}".replace("-", "−")
    published = "95.01<sup>1</sup>"  # with the mark of the cell's note
    assert rows[DAFL][1:] == ["final", f"{mean:.2f}", published, delta, "–", f"{se:.2f}", "n = 2"]
    assert "1: notes on the marked published numbers" in report["markdown"]["reproduction"]


def test_the_cells_csv_holds_one_row_per_cell_with_its_reproduction(report) -> None:
    text = (report["out"] / "digits_cells.csv").read_text()
    rows = {(r["pair"], r["method"]): r for r in csv.DictReader(io.StringIO(text))}
    assert len(rows) == 4
    dfq = rows[(PAIRS[0], "dfq")]
    finals = FINAL[(PAIRS[0], "dfq")]
    assert (dfq["display_name"], dfq["runs"], dfq["completed"], dfq["diverged"]) == (
        "DFQ", "3", "3", "0",
    )  # fmt: skip
    assert float(dfq["final_acc1_mean"]) == pytest.approx(np.mean(finals))
    assert float(dfq["final_acc1_min"]) == min(finals)
    assert float(dfq["final_acc1_max"]) == max(finals)
    assert (dfq["published_rule"], dfq["published_source"]) == ("best_epoch", "cudfkd")
    best = [finals[s] + 0.4 * (1 + 0.5 * s) for s in SEEDS]
    half = T_975_DF2 * np.std(best, ddof=1) / math.sqrt(3)
    assert float(dfq["delta_ci95_low"]) == pytest.approx(np.mean(best) - 93.33 - half)
    assert float(dfq["delta_ci95_high"]) == pytest.approx(np.mean(best) - 93.33 + half)
    assert float(dfq["teacher_acc1"]) == TEACHERS["cnn_small"]
    dafl = rows[(PAIRS[1], "dafl_bn")]
    assert (dafl["diverged"], dafl["verdict"], dafl["delta_ci95_low"]) == ("1", "", "")
    assert rows[(PAIRS[0], "dafl_bn")]["published_acc1"] == ""


def _scores(pair: str, method: str) -> list[float]:
    teacher = TEACHERS[pair.split("-")[0]]
    finals = [CHANCE if f is None else f for f in FINAL[(pair, method)]]
    return [(f - CHANCE) / (teacher - CHANCE) for f in finals]


def _iqm(values: list[float]) -> float:
    ordered = sorted(values)
    cut = len(ordered) // 4
    return float(np.mean(ordered[cut : len(ordered) - cut]))


def test_the_aggregate_ranks_by_the_iqm_of_the_normalised_accuracy(report) -> None:
    iqm = {m: _iqm(_scores(PAIRS[0], m) + _scores(PAIRS[1], m)) for m in ("dfq", "dafl_bn")}
    assert iqm["dafl_bn"] > iqm["dfq"]  # its diverged run (score 0) is trimmed away
    rows = _body(report, "aggregate")
    assert [row[0] for row in rows] == [DAFL, "DFQ"]
    for row, method in zip(rows, ("dafl_bn", "dfq"), strict=True):
        scores = _scores(PAIRS[0], method) + _scores(PAIRS[1], method)
        assert row[1] == "6"
        assert row[2] == f"{iqm[method]:.3f}" and row[4] == f"{np.mean(scores):.3f}"
        low, high = (float(v) for v in row[3].strip("[]").split(", "))
        assert low <= iqm[method] <= high
    metrics = json.loads((report["out"] / "metrics" / "digits.json").read_text())
    assert metrics["aggregate"]["dfq"] == pytest.approx(iqm["dfq"])


def test_p_a_beats_b_per_pair_and_over_pairs(report) -> None:
    header, group, row = report["tables"]["improvement"]
    assert header[-1] == "All<br>pairs"
    assert (group[0], row[0]) == (f"*P({DAFL} > B)*", "DFQ")  # the better IQM is A
    # Pair 1: 85.0, 86.5, 84.1 never beat 91.2, 89.0, 92.0. Pair 2: 93.0 and 94.5 beat all three
    # of DFQ's 70.0, 72.5, 71.0; the diverged run (at chance, 10%) none: 6 of 9.
    expected = [0.0, 6 / 9, (0.0 + 6 / 9) / 2]
    for cell, value in zip(row[1:], expected, strict=True):
        point, interval = cell.split("<br>")
        assert point == f"{value:.2f}"
        low, high = (float(v) for v in interval.strip("[]").split(", "))
        assert low <= value <= high
    assert "A diverged run counts at chance accuracy." in report["markdown"]["improvement"]


def _reference(root: Path, finals: dict[str, dict[str, float]], recipes: dict[str, Any]) -> Path:
    path = root / "reference.json"
    path.write_text(json.dumps({
        "experiment": "digits", "protocol": "tiny",
        "environment": {"commit": "feedbeef" * 5, "torch": "2.14.1", "cpu": "x86_64"},
        "teachers": {"cnn_small": TEACHERS["cnn_small"]},
        "methods": {key: {"final_acc1": values} for key, values in finals.items()},
        "recipes": recipes,
    }))  # fmt: skip
    return path


def test_runs_are_compared_with_their_reference_seed_by_seed(tmp_path: Path) -> None:
    arguments = _write_inputs(tmp_path)
    recipe = {"statistics": {"start_epoch": START_EPOCH, "accuracy_threshold": THRESHOLD}}
    dfq, dafl = f"{PAIRS[0]}/dfq", f"{PAIRS[0]}/dafl_bn"
    finals = {
        dfq: {"0": 91.2, "1": 89.0 + 451**-1 * 100, "2": 92.0},  # seed 1 one image apart
        dafl: {str(s): v for s, v in enumerate(FINAL[(PAIRS[0], "dafl_bn")])},
        f"{PAIRS[1]}/dfq": {"0": 70.0},  # seeds 1 and 2 not in the reference
    }
    recipes = {"teacher/cnn_small": {}, dfq: recipe, dafl: {**recipe, "loop": {"epochs": 9}},
               f"{PAIRS[1]}/dfq": recipe}  # fmt: skip
    reference = _reference(tmp_path, finals, recipes)
    out = tmp_path / "reports"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOURCE_DATE_EPOCH", DATE_EPOCH)
        assert main([*arguments, "--reference", str(reference), "--out", str(out / "d")]) == 0
    report = read_outputs(out, "d")
    header, *rows = report["tables"]["reference"]
    assert header == ["Method", "Seed 0", "Seed 1", "Seed 2", "Verdict"]
    table: dict[str, list[str]] = {}
    for row in rows:  # the first pair's rows come first
        table.setdefault(row[0], row[1:])
    assert table["Teacher (cnn_small)"][0] == "90.79<br>= ref."
    first = [table[name] for name in ("DFQ", DAFL)]
    assert first[0] == ["91.20<br>= ref.", "89.00<br>−0.22 (1 of 451)", "92.00<br>= ref.",
                        "differs"]  # fmt: skip
    assert first[1][-1] == "other recipe"
    caption = report["markdown"]["reference"].split("\n\n")[1]
    # The teacher and four runs compared; DAFL_bn ran another recipe on the first pair.
    assert "1 of the 4 runs and 1 teacher compared differ from their reference" in caption
    assert "3 ran another recipe than the reference and are not compared" in caption
    runs = list(csv.DictReader(io.StringIO((out / "d_runs.csv").read_text())))
    statuses = [(r["pair"], r["method"], r["seed"], r["reference_status"]) for r in runs]
    assert (PAIRS[1], "dfq", "1", "no reference") in statuses
    assert (PAIRS[1], "dafl_bn", "2", "diverged") in statuses


def test_without_a_reference_for_the_experiment_the_table_says_so(report) -> None:
    assert "No committed reference for scikit-learn digits" in report["markdown"]["reference"]
    assert r"\begin{tabular}" not in report["latex"]["reference"]


def _analysis(root: Path):
    from dfkd.reporting.analysis import analyse
    from dfkd.reporting.inputs import (
        load_display_names,
        load_published,
        load_runs,
        load_teachers,
    )

    arguments = _write_inputs(root)

    def values(option: str) -> list[str]:
        start = arguments.index(option) + 1
        end = next((i for i in range(start, len(arguments)) if arguments[i].startswith("--")),
                   len(arguments))  # fmt: skip
        return arguments[start:end]

    runs = load_runs(values("--runs"), "digits")
    teachers = load_teachers(values("--teachers"), "digits", "tiny")
    published = load_published(values("--published")[0], "digits")
    names = load_display_names(values("--methods-dir")[0], ["dfq", "dafl_bn"])
    return analyse(runs, teachers, published, names, None), runs.histories


def test_the_curves_show_every_seed_its_mean_and_the_teacher_per_pair(tmp_path: Path) -> None:
    from matplotlib import pyplot

    from dfkd.reporting.figures import curves_figure, profile_figure
    from tests.report_fixture import OFFSETS, _offsets

    analysis, histories = _analysis(tmp_path)
    figure = curves_figure(analysis, histories)
    axes = [axis for axis in figure.axes if axis.get_visible()]
    assert [axis.get_title() for axis in axes] == ["cnn_small → cnn_tiny", "WRN-40-2 → WRN-16-2"]
    assert "scikit-learn digits, protocol tiny" in figure._suptitle.get_text()
    (legend,) = figure.legends
    assert [t.get_text() for t in legend.get_texts()] == ["DFQ", DAFL, "one seed", "teacher"]
    for axis, pair in zip(axes, PAIRS, strict=True):
        lines = axis.get_lines()
        assert len(lines) == 2 * (len(SEEDS) + 1) + 1  # each seed, each mean, the teacher
        teacher = [line for line in lines if line.get_linestyle() == "--"]
        assert [line.get_ydata()[0] for line in teacher] == [TEACHERS[pair.split("-")[0]]]
        completed = [s for s in SEEDS if FINAL[(pair, "dfq")][s] is not None]
        mean = np.mean([[FINAL[(pair, "dfq")][s] - o for o in _offsets(s)] for s in completed], 0)
        bold = [line for line in lines if line.get_linewidth() == 2.0]
        assert np.allclose(bold[0].get_ydata(), mean) and len(mean) == len(OFFSETS)
    pyplot.close(figure)
    figure = profile_figure(analysis)
    assert [t.get_text() for t in figure.axes[0].get_legend().get_texts()] == [DAFL, "DFQ"]
    pyplot.close(figure)
