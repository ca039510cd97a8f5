"""`dfkd report`: captions, LaTeX, the runs CSV, headline metrics, curves and bad input
(fixture: tests/report_fixture.py)."""

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

from dfkd.cli import main
from dfkd.reporting.format import Latex, significant_decimals
from tests.report_fixture import (
    METHODS,
    PAIRS,
    SEEDS,
    _output_arguments,
    _run_metrics,
    _teacher_metrics,
    _write_inputs,
)
from tests.support import REPOSITORY

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
    assert widths == {1 + 4 * len(PAIRS), 13}


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


def test_headline_metrics_are_one_number_per_cell_and_teacher(report: dict[str, Any]) -> None:
    metrics = _strict_json(report["out"] / "digits_metrics.json")
    assert list(metrics) == [*PAIRS, "teacher"]
    # The mean over the completed seeds: the diverged one is counted in the tables, not here.
    assert metrics[PAIRS[1]]["dafl_bn"] == pytest.approx(93.75)
    leaves = [v for cells in metrics.values() for v in cells.values()]
    assert all(value is None or isinstance(value, float) for value in leaves)
    assert len(leaves) == len(PAIRS) * len(metrics[PAIRS[0]]) + 2
    assert metrics["teacher"] == {"cnn_small": 90.79, "wrn40_2": 94.1}


def test_curves_are_a_png(report: dict[str, Any]) -> None:
    assert (report["out"] / "digits_curves.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_a_single_seed_is_its_cell_and_a_missing_teacher_is_null(tmp_path: Path) -> None:
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
    only = json.loads(Path(keep[0]).read_text())
    assert metrics[PAIRS[0]][only["run"]["method"]] == only["summary"]["final_acc1"]
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


def _loop(student_steps: int, schedule: str, milestones: list[int]) -> dict[str, Any]:
    optimizer = {"algorithm": "sgd", "learning_rate": 0.035355, "momentum": 0.9,
                 "weight_decay": 5e-4, "schedule": schedule, "milestones": milestones,
                 "gamma": 0.1}  # fmt: skip
    return {"epochs": 10, "rounds_per_epoch": 20, "generator_steps_per_round": 3,
            "student_steps_per_round": student_steps, "batch_size": 32,
            "student_optimizer": optimizer}  # fmt: skip


def test_the_loop_and_named_options_of_a_method_are_stated_beside_it(tmp_path: Path) -> None:
    arguments = _write_inputs(tmp_path)
    runs = arguments[arguments.index("--runs") + 1 : arguments.index("--teachers")]
    for path in runs:  # the fixture's dfq runs become CuDFKD runs with the reference options
        record = json.loads(Path(path).read_text())
        if record["run"]["method"] == "dfq":
            record["config"]["implementation"] = "cudfkd"
            record["config"]["hyperparameters"] = {
                "adversarial_schedule": "reference_increment", "self_paced": "log",
                "self_paced_weighting": "per_batch", "student_loss_type": "l1",
            }  # fmt: skip
        else:  # dafl_bn runs one loop on one pair and another on the other
            first = record["run"]["teacher"] == "cnn_small"
            record["config"]["loop"] = (
                _loop(10, "cosine", []) if first else _loop(60, "multistep", [3, 7])
            )
        Path(path).write_text(json.dumps(record))
    published = Path(arguments[arguments.index("--published") + 1])
    data = yaml.safe_load(published.read_text())
    published.write_text(yaml.safe_dump({**data, "notes": {"dfq": "no code exists", "gan": "x"}}))
    out = tmp_path / "reports"
    assert main(arguments + _output_arguments(out)) == 0
    assert "- **Note on `dfq`:** no code exists." in (out / "digits_table.md").read_text()
    assert "gan" not in (out / "digits_table.md").read_text()  # only the table's methods
    expected = (
        "adversarial_schedule reference_increment; self_paced log; self_paced_weighting "
        "per_batch; student_loss_type l1"
    )
    assert f"- **Settings of `dfq`:** {expected}" in (out / "digits_table.md").read_text()
    latex = (out / "digits_table.tex").read_text()
    escaped = expected.replace("_", "\\_")
    assert "Settings of \\texttt{dfq}: " + escaped + "." in latex
    rows = list(csv.DictReader(io.StringIO((out / "digits_runs.csv").read_text())))
    assert {row["settings"] for row in rows if row["method"] == "dfq"} == {expected}
    # The loops as they ran, each with the pair it ran on.
    first = (
        "10 epochs x 20 rounds of 3 synthesis + 10 student steps, batch 32, student SGD lr 0.0354 "
        "cosine"
    )
    second = (
        "10 epochs x 20 rounds of 3 synthesis + 60 student steps, batch 32, student SGD lr 0.0354 "
        "x0.1 at epochs 3, 7"
    )
    markdown = (out / "digits_table.md").read_text()
    assert f"- **Settings of `dafl_bn` (cnn_small → cnn_tiny):** {first}\n" in markdown
    assert f"- **Settings of `dafl_bn` (wrn40_2 → wrn16_2):** {second}\n" in markdown
    assert "Settings of \\texttt{dafl\\_bn} (wrn40\\_2 $\\to$ wrn16\\_2): " + second in latex


def test_the_caption_says_where_each_teacher_came_from(tmp_path: Path) -> None:
    arguments = _write_inputs(tmp_path)
    teachers = arguments[arguments.index("--teachers") + 1 : arguments.index("--published")]
    record = json.loads(Path(teachers[0]).read_text())
    record["provenance"]["released"] = {
        "file": "checkpoints/pretrained/x.pth", "sha256": "ab" * 32, "source": "a release",
    }  # fmt: skip
    Path(teachers[0]).write_text(json.dumps(record))
    out = tmp_path / "reports"
    assert main(arguments + _output_arguments(out)) == 0
    released = f"{record['run']['architecture']} released (a release; x.pth, SHA-256 {'ab' * 8}...)"
    markdown = (out / "digits_table.md").read_text()
    assert f"- **Teachers:** {released}; " in markdown
    assert "trained by the suite." in markdown


def test_a_cifar_report_marks_its_cells_against_the_published_numbers(tmp_path: Path) -> None:
    """The fixture's runs as CIFAR-10 runs (dfq and cmi on two published pairs), rendered with
    the suite's own params/published.yaml."""
    from scipy import stats as scipy_stats

    arguments = _write_inputs(tmp_path)
    renamed = {"cnn_small": "resnet34", "cnn_tiny": "resnet18", "dafl_bn": "cmi"}
    finals: dict[tuple[str, str], list[float]] = {}
    for path in [Path(p) for p in arguments if p.endswith("metrics.json")]:
        record = json.loads(path.read_text())
        run = record["run"]
        run["dataset"] = "cifar10"
        for key in ("teacher", "student", "method", "architecture"):
            if key in run:
                run[key] = renamed.get(run[key], run[key])
        if record["kind"] == "distillation" and record["status"] == "completed":
            key = (f"{run['teacher']}-{run['student']}", run["method"])
            finals.setdefault(key, []).append(record["summary"]["final_acc1"])
        path.write_text(json.dumps(record))
    arguments[arguments.index("--dataset") + 1] = "cifar10"
    arguments[arguments.index("--published") + 1] = str(REPOSITORY / "params" / "published.yaml")
    out = tmp_path / "reports"
    assert main(arguments + _output_arguments(out)) == 0
    markdown = (out / "digits_table.md").read_text()
    published = yaml.safe_load((REPOSITORY / "params" / "published.yaml").read_text())
    tolerance = published["verdict_tolerance"]
    reproduced = 0
    for (pair, method), values in finals.items():
        value = published["results"]["cifar10"][pair][method]["acc1"]
        mean = float(np.mean(values))
        if len(values) >= 3:
            half = scipy_stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1)
            inside = abs(mean - value) <= half / np.sqrt(len(values))
        else:
            inside = abs(mean - value) <= tolerance
        reproduced += inside
        assert f"[{value:.2f}] {'✓' if inside else '✗'}" in markdown, (pair, method)
    assert f"**{reproduced} of {len(finals)} cells with a published Acc@1 reproduced" in markdown
    assert "\n- **L_p:** Eq. 14" in markdown  # the summary ends its own list item
    assert "- **Source `cudfkd`:** CuDFKD (Li et al." in markdown
    assert "selected as the highest per-epoch test accuracy" in markdown
