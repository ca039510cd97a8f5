"""Tests for `dfkd report` on fixture runs whose expected cells are recomputed here with numpy.

The fixture: two pairs x two methods x three seeds of the `tiny` protocol on digits (start epoch
5, threshold 90%), given in experiment order with `dfq` before `dafl_bn` so that the row order must
follow the arguments, not the alphabet. One `dafl_bn` run diverged in epoch 3; one `dfq` seed never
reaches 90%; no `dafl_bn` seed of the first pair does.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from scipy import stats as scipy_stats

from dfkd.cli import main
from dfkd.reporting.format import Latex, significant_decimals
from dfkd.stats import summarize_history

PAIRS = ("cnn_small-cnn_tiny", "wrn40_2-wrn16_2")
METHODS = ("dfq", "dafl_bn")
SEEDS = (0, 1, 2)
START_EPOCH, THRESHOLD = 5, 90.0
FINAL = {  # final-epoch Acc@1 per seed; None marks the diverged run
    ("cnn_small-cnn_tiny", "dfq"): (91.2, 89.0, 92.0),
    ("cnn_small-cnn_tiny", "dafl_bn"): (85.0, 86.5, 84.1),
    ("wrn40_2-wrn16_2", "dfq"): (70.0, 72.5, 71.0),
    ("wrn40_2-wrn16_2", "dafl_bn"): (93.0, 94.5, None),
}
# Distance below the final accuracy per epoch: epoch 6 peaks above the final value. From epoch 5
# on the distances grow with the seed, so that sigma^2 differs between seeds.
OFFSETS = (40.0, 20.0, 10.0, 5.0, 2.0, -0.4, 1.0, 0.0)


def _offsets(seed: int) -> list[float]:
    return [d * (1.0 + 0.5 * seed) if epoch >= 5 else d for epoch, d in enumerate(OFFSETS, 1)]


GIB = 2**30
COMMIT = "0123456789abcdef0123456789abcdef01234567"
DATE_EPOCH = "1704153600"  # 2024-01-02 UTC
PUBLISHED = {
    "sources": {"cudfkd": "CuDFKD Table 1", "cmi": "CMI Table_1 & 5% more"},
    "teachers": {
        "digits": {"cnn_small": {"acc1": 91.0, "agree1": None, "lp": None, "source": "cudfkd"}}
    },
    "results": {
        "digits": {
            "cnn_small-cnn_tiny": {
                "dfq": {"acc1": 93.33, "agree1": 95.5, "lp": 0.8123, "source": "cudfkd"}
            },
            "wrn40_2-wrn16_2": {
                "dafl_bn": {"acc1": 95.01, "agree1": None, "lp": None, "source": "cmi"}
            },
        },
        "cifar10": {"cnn_small-cnn_tiny": {"dafl_bn": {"acc1": 1.0, "source": "cudfkd"}}},
    },
}


def _history(final: float, seed: int, epochs: int = 8) -> list[dict[str, Any]]:
    seconds_per_epoch = 20.0 + 4.0 * seed
    history = []
    for epoch, offset in enumerate(_offsets(seed)[:epochs], start=1):
        acc1 = final - offset
        history.append(
            {
                "epoch": epoch,
                "acc1": acc1,
                "agree1": acc1 + 2.0,
                "lp": 0.5 + acc1 / 1000.0,
                "lp_reference_code": 0.3 + acc1 / 1000.0,
                "train_seconds": seconds_per_epoch * epoch,
                "eval_seconds": 0.1,
            }
        )
    return history


def _provenance(pair: str) -> dict[str, Any]:
    on_gpu = pair == PAIRS[1]
    return {
        "suite_version": "0.1.0",
        "git_commit": None if on_gpu else COMMIT,
        "git_dirty": None if on_gpu else True,
        "config_hash": f"hash-{pair}",
        "lock_sha256": "ab" * 32,
        "lock_mismatches": ["torch 2.15.0 (locked 2.14.1)"] if on_gpu else [],
        "device": "cuda" if on_gpu else "cpu",
        "device_name": "NVIDIA H200" if on_gpu else "x86_64",
    }


def _run_metrics(pair: str, method: str, seed: int, protocol: str = "tiny") -> dict[str, Any]:
    teacher, student = pair.split("-")
    final = FINAL[(pair, method)][seed]
    diverged = final is None
    history = _history(15.0, seed, epochs=2) if diverged else _history(final, seed)
    summary = summarize_history(history, START_EPOCH, THRESHOLD)
    on_gpu = pair == PAIRS[1]
    return {
        "kind": "distillation",
        "status": "diverged" if diverged else "completed",
        "divergence": {"term": "generator/adversarial", "epoch": 3, "step": 17, "value": "nan"}
        if diverged
        else None,
        "run": {
            "protocol": protocol,
            "dataset": "digits",
            "teacher": teacher,
            "student": student,
            "method": method,
            "seed": seed,
        },
        "teacher": {"acc1": 90.5, "config_hash": "t"},
        "summary": summary,
        "epochs_planned": 8,
        "epochs_completed": len(history),
        "provenance": _provenance(pair),
        "config": {"statistics": {"start_epoch": START_EPOCH, "accuracy_threshold": THRESHOLD}},
        "total_hours": summary["train_hours"] + 0.001,
        "peak_device_memory_bytes": 2 * GIB + seed if on_gpu else None,
        "peak_host_memory_bytes": int(1.5 * GIB) + seed,
        "history": history,
    }


def _teacher_metrics(architecture: str, acc1: float) -> dict[str, Any]:
    return {
        "kind": "teacher",
        "status": "completed",
        "run": {"protocol": "tiny", "dataset": "digits", "architecture": architecture, "seed": 0},
        "summary": {"final_acc1": acc1, "train_hours": 0.01},
        "provenance": _provenance(PAIRS[0]),
        "history": [],
    }


def _write_inputs(root: Path) -> list[str]:
    """Writes the fixture inputs under ``root``; returns the `dfkd report` input arguments."""
    runs = []
    for pair in PAIRS:
        for method in METHODS:
            for seed in SEEDS:
                path = root / "results" / pair / method / f"seed{seed}" / "metrics.json"
                path.parent.mkdir(parents=True)
                path.write_text(json.dumps(_run_metrics(pair, method, seed)))
                runs.append(str(path))
    teachers = []
    for architecture, acc1 in (("cnn_small", 90.79), ("wrn40_2", 94.1)):
        path = root / "results" / "teachers" / architecture / "metrics.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(_teacher_metrics(architecture, acc1)))
        teachers.append(str(path))
    published = root / "published.yaml"
    published.write_text(yaml.safe_dump(PUBLISHED))
    templates = Path(__file__).resolve().parents[1] / "reports" / "templates"
    return [
        "report",
        "--dataset",
        "digits",
        "--runs",
        *runs,
        "--teachers",
        *teachers,
        "--published",
        str(published),
        "--templates",
        str(templates),
    ]


def _output_arguments(out: Path) -> list[str]:
    names = {
        "--markdown": "table.md",
        "--latex": "table.tex",
        "--runs-csv": "runs.csv",
        "--metrics": "metrics.json",
        "--curves": "curves.png",
    }
    return [
        part for option, name in names.items() for part in (option, str(out / f"digits_{name}"))
    ]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("report")
    out = root / "reports"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOURCE_DATE_EPOCH", DATE_EPOCH)
        assert main(_write_inputs(root) + _output_arguments(out)) == 0
    markdown = (out / "digits_table.md").read_text()
    return {
        "out": out,
        "markdown": markdown,
        "tables": _markdown_tables(markdown),
        "latex": (out / "digits_table.tex").read_text(),
    }


def _markdown_tables(text: str) -> list[list[list[str]]]:
    tables: list[list[list[str]]] = []
    previous_was_row = False
    for line in text.splitlines():
        is_row = line.startswith("|")
        if is_row:
            if not previous_was_row:
                tables.append([])
            cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
            tables[-1].append([cell.strip() for cell in cells])
        previous_was_row = is_row
    return tables


def _comparison(report: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    """(row label, pair) -> the four cells of that pair: Acc@1, Agree@1, L_p, L_p (code)."""
    header, _, *rows = report["tables"][0]
    assert len(header) == 1 + 4 * len(PAIRS)
    return {
        (row[0], pair): row[1 + 4 * i : 5 + 4 * i] for row in rows for i, pair in enumerate(PAIRS)
    }


def _completed(pair: str, method: str) -> list[int]:
    return [seed for seed in SEEDS if FINAL[(pair, method)][seed] is not None]


def _expected(values: list[float], decimals: int) -> str:
    array = np.asarray(values, dtype=np.float64)
    return f"{array.mean():.{decimals}f} ± {array.std(ddof=1):.{decimals}f}"


def _numbers(cell: str) -> list[float]:
    return [float(number) for number in re.findall(r"-?\d+(?:\.\d+)?", cell)]


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
    assert acc1.endswith("[93.33]")
    assert agree1.endswith("[95.50]")
    assert "[" not in lp  # published L_p follow the authors' code, not Eq. 14
    assert lp_code.endswith("[0.8123]")
    assert all("[" not in cell for cell in cells[("dafl_bn", PAIRS[0])])
    acc1, agree1, _, _ = cells[("dafl_bn", PAIRS[1])]
    assert acc1.endswith("[95.01]")
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


@pytest.mark.parametrize("pair", PAIRS)
@pytest.mark.parametrize("method", METHODS)
def test_final_accuracy_interval_is_the_student_t_interval(
    report: dict[str, Any], pair: str, method: str
) -> None:
    finals = [FINAL[(pair, method)][seed] for seed in _completed(pair, method)]
    headline = json.loads((report["out"] / "digits_metrics.json").read_text())[pair][method]
    cell = _stability(report)[(pair, method)]["Final Acc@1 95% CI"]
    if len(finals) < 3:  # no interval from two seeds
        assert cell == "–" and headline["final_acc1_ci95_low"] is None
        return
    half = scipy_stats.t.ppf(0.975, len(finals) - 1) * np.std(finals, ddof=1) / np.sqrt(len(finals))
    assert cell == f"[{np.mean(finals) - half:.2f}, {np.mean(finals) + half:.2f}]"
    assert headline["final_acc1_ci95_low"] == pytest.approx(np.mean(finals) - half)
    assert headline["final_acc1_ci95_high"] == pytest.approx(np.mean(finals) + half)


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
# Caption and LaTeX


@pytest.mark.parametrize("output", ["markdown", "latex"])
def test_caption_states_protocol_provenance_seeds_and_the_final_epoch_rule(
    report: dict[str, Any], output: str
) -> None:
    text = report[output]
    for fact in (
        "tiny",
        "0123456+dirty",
        "unknown",
        "0.1.0",
        "3 (0, 1, 2)",
        "final-epoch",
        "2024-01-02",
        "x86_64 (CPU)",
        "NVIDIA H200",
        "CuDFKD Table 1",
        "uv.lock abababababab, as locked",
        "uv.lock abababababab, except torch 2.15.0 (locked 2.14.1)",
    ):
        escaped = fact.replace("_", r"\_") if output == "latex" else fact
        assert escaped in text, escaped


def test_latex_is_a_balanced_booktabs_fragment_with_escaped_names(report: dict[str, Any]) -> None:
    latex = report["latex"]
    unescaped = latex.replace(r"\{", "").replace(r"\}", "")
    depth = 0
    for character in unescaped:
        depth += {"{": 1, "}": -1}.get(character, 0)
        assert depth >= 0
    assert depth == 0
    assert latex.count(r"\begin{table*}") == latex.count(r"\end{table*}") == 2
    assert r"\documentclass" not in latex
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        assert rule in latex
    assert r"\hline" not in latex
    assert all("|" not in spec for spec in re.findall(r"\\begin\{tabular\}\{([^}]*)\}", latex))
    assert r"\label{tab:digits-dfkd}" in latex
    assert latex.count(r"\caption{") == 2
    assert r"wrn40\_2 $\to$ wrn16\_2" in latex
    assert r"dafl\_bn & " in latex
    assert re.search(r"(?<!\\)(wrn40|dafl)_", latex) is None
    assert r"CMI Table\_1 \& 5\% more" in latex
    assert r"\textbf{\boldmath $" in latex
    assert latex.count(r"\textbf{") == 2
    assert r"\pm" in latex and "±" not in latex


def test_latex_rows_have_as_many_cells_as_columns(report: dict[str, Any]) -> None:
    rows = [line for line in report["latex"].splitlines() if line.rstrip().endswith(r"\\")]
    widths = set()
    for row in rows:
        cells = re.split(r"(?<!\\)&", row)
        spans = [re.match(r"\s*\\multicolumn\{(\d+)\}", cell) for cell in cells]
        widths.add(sum(int(span.group(1)) if span else 1 for span in spans))
    assert widths == {1 + 4 * len(PAIRS), 12}


# ---------------------------------------------------------------------------------------------
# CSV, headline metrics, curves


def test_runs_csv_has_one_row_per_run(report: dict[str, Any]) -> None:
    rows = list(csv.DictReader(io.StringIO((report["out"] / "digits_runs.csv").read_text())))
    assert len(rows) == len(PAIRS) * len(METHODS) * len(SEEDS)
    required = """protocol dataset teacher student pair method seed status final_acc1 final_agree1
        final_lp final_lp_reference_code best_acc1 best_acc1_epoch mu sigma2 t_threshold_hours
        epochs_to_threshold train_hours total_hours peak_device_memory_bytes
        peak_host_memory_bytes teacher_acc1 device_name git_commit suite_version lock_sha256
        lock_mismatches config_hash"""
    assert set(required.split()) <= set(rows[0])
    diverged = [row for row in rows if row["status"] == "diverged"]
    assert len(diverged) == 1
    assert diverged[0]["final_acc1"] == "" and diverged[0]["divergence_epoch"] == "3"
    first = rows[0]
    assert (first["pair"], first["method"], first["seed"]) == (PAIRS[0], "dfq", "0")
    assert float(first["final_acc1"]) == pytest.approx(91.2)
    assert first["best_acc1_epoch"] == "6"


def _strict_json(path: Path) -> Any:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in {path}")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_headline_metrics_are_nested_and_count_divergence(report: dict[str, Any]) -> None:
    metrics = _strict_json(report["out"] / "digits_metrics.json")
    assert list(metrics) == [*PAIRS, "teacher"]
    cell = metrics[PAIRS[1]]["dafl_bn"]
    assert (cell["n"], cell["diverged"]) == (2, 1)
    assert cell["final_acc1_mean"] == pytest.approx(93.75)
    assert cell["final_acc1_std"] == pytest.approx(np.std([93.0, 94.5], ddof=1))
    assert metrics["teacher"] == {"cnn_small": 90.79, "wrn40_2": 94.1}


def test_curves_are_a_png(report: dict[str, Any]) -> None:
    assert (report["out"] / "digits_curves.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_single_seed_gives_null_std_and_missing_teacher(tmp_path: Path) -> None:
    arguments = _write_inputs(tmp_path)
    runs = arguments[arguments.index("--runs") + 1 : arguments.index("--teachers")]
    out = tmp_path / "reports"
    keep = [runs[0]]
    assert (
        main(
            [
                "report",
                "--dataset",
                "digits",
                "--runs",
                *keep,
                "--published",
                arguments[arguments.index("--published") + 1],
                "--metrics",
                str(out / "m.json"),
            ]
        )
        == 0
    )
    metrics = _strict_json(out / "m.json")
    assert metrics[PAIRS[0]]["dfq"]["final_acc1_std"] is None
    assert metrics["teacher"] == {"cnn_small": None}


# ---------------------------------------------------------------------------------------------
# Bad input


def _corrupt(kind: str, runs: list[str]) -> str:
    victim = Path(runs[4])
    if kind == "missing":
        victim.unlink()
    elif kind == "not json":
        victim.write_text('{"kind": "distillation", ')
    elif kind == "other dataset":
        record = json.loads(victim.read_text())
        record["run"]["dataset"] = "cifar10"
        victim.write_text(json.dumps(record))
    elif kind == "other protocol":
        victim.write_text(json.dumps(_run_metrics(PAIRS[0], "dafl_bn", 1, protocol="quick")))
    elif kind == "teacher as run":
        victim.write_text(json.dumps(_teacher_metrics("cnn_small", 90.0)))
    elif kind == "text for a number":
        record = json.loads(victim.read_text())
        record["summary"]["final_acc1"] = "85.0"
        victim.write_text(json.dumps(record))
    return str(victim)


@pytest.mark.parametrize(
    "kind",
    [
        "missing",
        "not json",
        "other dataset",
        "other protocol",
        "teacher as run",
        "text for a number",
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    arguments = _write_inputs(tmp_path)
    runs = arguments[arguments.index("--runs") + 1 : arguments.index("--teachers")]
    victim = _corrupt(kind, runs)
    out = tmp_path / "reports"
    assert main(arguments + _output_arguments(out)) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("error: ")
    assert victim in error
    assert not out.exists()


def test_a_duplicated_run_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arguments = _write_inputs(tmp_path)
    first_run = arguments[arguments.index("--runs") + 1]
    runs_end = arguments.index("--teachers")
    arguments[runs_end:runs_end] = [first_run]
    assert main(arguments + _output_arguments(tmp_path / "reports")) == 2
    assert "the same run as" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Formatting helpers


def test_latex_escape_covers_every_special_character() -> None:
    assert Latex().escape("a_b%c&d#e$f{g}h") == r"a\_b\%c\&d\#e\$f\{g\}h"


@pytest.mark.parametrize(
    ("value", "decimals"), [(0.942, 3), (3.2, 2), (12.3, 1), (123.0, 0), (1234.0, 0)]
)
def test_times_keep_three_significant_digits(value: float, decimals: int) -> None:
    assert significant_decimals(value) == decimals
