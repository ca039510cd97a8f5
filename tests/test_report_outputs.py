"""`dfkd report`: the files, the LaTeX, the CSVs, headline metrics, figures, provenance and bad
input (fixture: tests/report_fixture.py)."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from dfkd.cli import main
from dfkd.reporting.dialects import Latex
from dfkd.reporting.report import TABLES, report_files
from dfkd.reporting.tables import significant_decimals
from tests.report_fixture import (
    METHODS,
    PAIRS,
    SEEDS,
    _output_arguments,
    _run_metrics,
    _teacher_metrics,
    _write_inputs,
)

# ---------------------------------------------------------------------------------------------
# Files and LaTeX


def test_every_table_is_written_once_per_format(report) -> None:
    out = report["out"]
    written = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    expected = {str(Path(p).relative_to(out)) for p in report_files(str(out / "digits")).values()}
    assert written == expected
    assert len([name for name in written if name.endswith(".tex")]) == len(TABLES)


@pytest.mark.parametrize("name", [name for name in TABLES if name != "reference"])
def test_each_latex_file_is_one_balanced_booktabs_table(report, name: str) -> None:
    latex = report["latex"][name]
    code = "\n".join(line for line in latex.splitlines() if not line.startswith("%"))
    depth = 0
    for character in code.replace(r"\{", "").replace(r"\}", ""):
        depth += {"{": 1, "}": -1}.get(character, 0)
        assert depth >= 0
    assert depth == 0
    assert code.count(r"\begin{table}") == code.count(r"\end{table}") == 1
    assert code.count(r"\caption{") == 1 and r"\label{tab:digits-" in code
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        assert rule in code
    assert r"\hline" not in code and r"\resizebox" not in code and r"\documentclass" not in code
    assert all("|" not in spec for spec in re.findall(r"\\begin\{tabular\}\{([^}]*)\}", code))
    assert re.search(r"(?<!\\)(wrn40|dafl|cnn)_", code) is None
    assert "±" not in code and "→" not in code


def test_latex_rows_have_as_many_cells_as_columns(report) -> None:
    for name, latex in report["latex"].items():
        spec = re.search(r"\\begin\{tabular\}\{@\{\}([lrc]+)@\{\}\}", latex)
        if spec is None:
            continue
        body = latex[latex.index(r"\toprule") : latex.index(r"\bottomrule")]
        body = re.sub(r"\\begin\{tabular\}.*?\\end\{tabular\}", "", body)  # stacked cells
        for row in (line for line in body.splitlines() if line.rstrip().endswith(r"\\")):
            cells = re.split(r"(?<!\\)&", row)
            span = re.match(r"\s*\\multicolumn\{(\d+)\}", cells[0])
            assert (int(span.group(1)) if span else len(cells)) == len(spec.group(1)), (name, row)


def test_the_provenance_is_a_comment_in_latex_and_folds_out_in_markdown(report) -> None:
    latex, markdown = report["latex"]["table"], report["markdown"]["table"]
    header = latex[: latex.index(r"\begin{table}")]
    assert all(line.startswith("%") for line in header.splitlines())
    assert "% Published sources:" in header and "CMI Table_1 & 5% more" in header
    caption = re.search(r"\\caption\{(.*)\}\n", latex).group(1)
    assert "CMI Table" not in caption and len(caption.split()) < 60
    assert markdown.index("<details><summary>Provenance</summary>") > markdown.index("| DFQ |")
    assert "Published sources" in report["html"]["table"]


def test_text_from_the_params_files_is_escaped_for_latex(report) -> None:
    latex = report["latex"]["table"]
    assert r"DAFL\_bn ``BN'' \texttt{x} \& 5\%" in latex  # the display name
    assert r"CMI\_T1 \textasciitilde{} \#1" in latex  # a source's short name
    assert r"CuDFKD's ``Table 1''" in latex
    escape = Latex().escape
    assert escape("a_b%c&d#e$f{g}h") == r"a\_b\%c\&d\#e\$f\{g\}h"
    assert escape('"peak performance", §5.1 `cudfkd_table`') == (
        r"``peak performance'', §5.1 \texttt{cudfkd\_table}"
    )
    assert escape("1 − JS^¼ ≈ 0.9 → 95% ± 2") == (
        r"1 $-$ JS\textasciicircum{}$\frac{1}{4}$ $\approx$ 0.9 $\to$ 95\% $\pm$ 2"
    )


@pytest.mark.parametrize(
    ("value", "decimals"), [(0.942, 3), (3.2, 2), (12.3, 1), (123.0, 0), (1234.0, 0)]
)
def test_times_keep_three_significant_digits(value: float, decimals: int) -> None:
    assert significant_decimals(value) == decimals


# ---------------------------------------------------------------------------------------------
# CSVs, headline metrics, figures


def _csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def test_the_runs_csv_has_one_row_per_run_and_only_per_run_columns(report) -> None:
    rows = _csv(report["out"] / "digits_runs.csv")
    assert len(rows) == len(PAIRS) * len(METHODS) * len(SEEDS)
    assert not {"published_acc1", "delta_acc1", "verdict"} & set(rows[0])  # per-cell values
    diverged = [row for row in rows if row["status"] == "diverged"]
    assert len(diverged) == 1
    assert diverged[0]["final_acc1"] == diverged[0]["normalised_acc1"] == ""
    first = rows[0]
    assert (first["pair"], first["method"], first["seed"]) == (PAIRS[0], "dfq", "0")
    assert float(first["final_acc1"]) == pytest.approx(91.2)
    assert float(first["normalised_acc1"]) == pytest.approx((91.2 - 10) / (90.79 - 10))
    assert first["best_acc1_epoch"] == "6"


def _strict_json(path: Path) -> Any:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in {path}")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_headline_metrics_are_one_number_per_cell_teacher_and_method(report) -> None:
    metrics = _strict_json(report["out"] / "metrics" / "digits.json")
    assert list(metrics) == [*PAIRS, "teacher", "aggregate"]
    # The mean over the completed seeds: the diverged one is counted in the tables, not here.
    assert metrics[PAIRS[1]]["dafl_bn"] == pytest.approx(93.75)
    leaves = [v for cells in metrics.values() for v in cells.values()]
    assert all(value is None or isinstance(value, float) for value in leaves)
    methods = len(metrics[PAIRS[0]])
    assert len(leaves) == len(PAIRS) * methods + 2 + methods
    assert metrics["teacher"] == {"cnn_small": 90.79, "wrn40_2": 94.1}


def test_the_figures_are_png_beside_pdf(report) -> None:
    out = report["out"]
    for png, pdf in ((out / "digits_curves.png", out / "digits_curves.pdf"),
                     (out / "digits" / "profile.png", out / "digits" / "profile.pdf")):  # fmt: skip
        assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        assert pdf.read_bytes().startswith(b"%PDF")
        assert b"CreationDate" not in pdf.read_bytes()  # byte-stable


def test_a_report_is_byte_stable(tmp_path: Path, report) -> None:
    from tests.report_fixture import report_outputs

    again = report_outputs(tmp_path)
    for name in ("digits_table.md", "digits_table.tex", "digits_cells.csv", "digits_curves.pdf",
                 "digits/improvement.html", "digits/profile.png"):  # fmt: skip
        assert (again["out"] / name).read_bytes() == (report["out"] / name).read_bytes(), name


def test_a_single_seed_is_its_cell_and_a_missing_teacher_is_null(tmp_path: Path) -> None:
    arguments = _write_inputs(tmp_path)
    runs = arguments[arguments.index("--runs") + 1 : arguments.index("--teachers")]
    out = tmp_path / "reports"
    published = arguments[arguments.index("--published") :]
    assert main(["report", "--dataset", "digits", "--runs", runs[0], *published,
                 *_output_arguments(out)]) == 0  # fmt: skip
    metrics = _strict_json(out / "metrics" / "digits.json")
    only = json.loads(Path(runs[0]).read_text())
    assert metrics[PAIRS[0]][only["run"]["method"]] == only["summary"]["final_acc1"]
    assert metrics["teacher"] == {"cnn_small": None}
    assert metrics["aggregate"] == {}
    assert "No teacher accuracy to normalise by" in (out / "digits" / "aggregate.md").read_text()


# ---------------------------------------------------------------------------------------------
# Bad input


def _corrupt(kind: str, arguments: list[str]) -> str:
    runs = arguments[arguments.index("--runs") + 1 : arguments.index("--teachers")]
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
    elif kind == "no display name":
        victim = Path(arguments[arguments.index("--methods-dir") + 1]) / "dfq.yaml"
        victim.write_text("implementation: dfq\n")
    elif kind == "source without a rule":
        victim = Path(arguments[arguments.index("--published") + 1])
        data = yaml.safe_load(victim.read_text())
        del data["sources"]["cmi"]["rule"]
        victim.write_text(yaml.safe_dump(data))
    return str(victim)


@pytest.mark.parametrize(
    "kind",
    ["missing", "not json", "other dataset", "other protocol", "teacher as run",
     "text for a number", "no display name", "source without a rule"],
)  # fmt: skip
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, kind) -> None:
    arguments = _write_inputs(tmp_path)
    victim = _corrupt(kind, arguments)
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
# What ran, beside every table


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
    markdown = (out / "digits_table.md").read_text()
    assert "- DFQ: no code exists\n" in markdown
    assert "gan" not in markdown  # only the table's methods
    expected = (
        "adversarial_schedule reference_increment; self_paced log; self_paced_weighting "
        "per_batch; student_loss_type l1"
    )
    assert f"- DFQ [dfq]: {expected}\n" in markdown
    latex = (out / "digits_table.tex").read_text()
    assert f"%   DFQ [dfq]: {expected[:60]}" in latex  # a comment, wrapped, unescaped
    rows = list(csv.DictReader(io.StringIO((out / "digits_runs.csv").read_text())))
    assert {row["settings"] for row in rows if row["method"] == "dfq"} == {expected}
    # The loops as they ran, each with the pair it ran on and the student images it spent.
    first = (
        "10 epochs x 20 rounds of 3 synthesis + 10 student steps, batch 32 (0.064 M student "
        "images), student SGD lr 0.0354 cosine"
    )
    second = (
        "10 epochs x 20 rounds of 3 synthesis + 60 student steps, batch 32 (0.384 M student "
        "images), student SGD lr 0.0354 x0.1 at epochs 3, 7"
    )
    assert f"[dafl_bn] (cnn_small → cnn_tiny): {first}\n" in markdown
    assert f"[dafl_bn] (wrn40_2 → wrn16_2): {second}\n" in markdown


def test_the_provenance_says_where_each_teacher_came_from(tmp_path: Path) -> None:
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
    assert f"- {released}\n" in markdown
    assert "- wrn40_2 trained by the suite\n" in markdown


def test_the_templates_travel_in_the_wheel(tmp_path: Path) -> None:
    """`dfkd report` reads its templates from the package, so an installed wheel renders."""
    import zipfile

    from tests.support import BIN, copy_repository, run_command

    source = copy_repository(tmp_path / "source")  # setuptools writes build/ into the tree
    run_command([str(BIN / "uv"), "build", "--wheel", "--out-dir", str(tmp_path), "-q"], source)
    (wheel,) = tmp_path.glob("dfkd-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for extension in ("md", "tex", "html"):
        assert f"dfkd/reporting/templates/table.{extension}.j2" in names
    assert any(name.endswith("licenses/LICENSE") for name in names)


def test_the_citation_metadata_matches_the_package() -> None:
    import tomllib

    import dfkd
    from tests.support import REPOSITORY

    citation = yaml.safe_load((REPOSITORY / "CITATION.cff").read_text())
    project = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["project"]
    assert citation["cff-version"] == "1.2.0" and citation["version"] == dfkd.__version__
    assert citation["license"] == project["license"] == "MIT"
    assert (REPOSITORY / "LICENSE").read_text().startswith("MIT License")
    assert "## How to cite" in (REPOSITORY / "README.md").read_text()
