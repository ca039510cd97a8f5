"""The tables of a CIFAR-sized report (5 pairs x 6 methods x 3 seeds) typeset by a real
pdfLaTeX at natural size in a single-column article (tests/latex.py), with the text of the
suite's own params files; and the small fixture's tables, whose names hold every character
LaTeX must escape."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from dfkd.reporting.report import TABLES
from tests.latex import require_latex, typeset
from tests.report_fixture import (
    CIFAR_METHODS,
    CIFAR_PAIRS,
    read_outputs,
    run_report,
    write_cifar_inputs,
)


@pytest.fixture(scope="module")
def cifar_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("cifar")
    run_report(write_cifar_inputs(root), root / "reports", "cifar10")
    return read_outputs(root / "reports", "cifar10")


def _files(report: dict[str, Any]) -> list[Path]:
    out, prefix = report["out"], report["prefix"]
    return [out / f"{prefix}_table.tex"] + [
        out / prefix / f"{name}.tex" for name in TABLES if name != "table"
    ]


def test_every_table_fits_a_column_at_natural_size(cifar_report, report, tmp_path) -> None:
    require_latex()
    files = _files(cifar_report) + _files(report)
    result = typeset(files, tmp_path)
    assert result.linewidth == 345.0
    assert "Overfull \\hbox" not in result.log and "Missing character" not in result.log
    # Every table with rows was typeset (neither fixture has reference runs).
    assert len(result.widths) == len(files) - 2
    # The CIFAR report's tables, with the suite's display names; the small fixture's long,
    # escape-laden names are typeset for their escaping only.
    cifar = {str(path) for path in _files(cifar_report)}
    widths = {name: width for name, width in result.widths.items() if name in cifar}
    assert len(widths) == len(cifar) - 1
    too_wide = {name: width for name, width in widths.items() if width > result.linewidth}
    assert not too_wide, f"wider than the {result.linewidth} pt line: {too_wide}"


def test_the_cifar_main_table_is_shaped_like_the_papers(cifar_report) -> None:
    header, *rows = cifar_report["tables"]["table"]
    assert header[0] == "Method" and len(header) == 1 + len(CIFAR_PAIRS)
    assert header[1] == "ResNet-34<br>ResNet-18" and header[3] == "WRN-40-2<br>WRN-40-1"
    labels = [row[0] for row in rows]
    assert labels[:7] == ["Teacher", "DAFL", "ADI", "DFQ", "CMI", "CuDFKD", "MAD"]
    published = labels.index("*Published*")
    assert labels[published + 1 :] == [
        "Teacher", "MAD's teacher", "DAFL", "ADI", "DFQ", "CMI", "CuDFKD"
    ]  # fmt: skip
    block = {row[0]: row[1:] for row in rows[published + 1 :]}
    assert block["Teacher"][0] == "95.70<sup>a</sup>"  # CuDFKD Table 1's ResNet-34
    # MAD's own teachers (its supplement Table 10) beside the CuDFKD ones; none for VGG-11
    assert [cell.split("<")[0] for cell in block["MAD's teacher"]] == [
        "95.46", "–", "94.65", "94.65", "94.65"
    ]  # fmt: skip
    assert block["DAFL"][4] == "65.71<sup>d</sup>"  # CMI's DAFL on WRN-40-2 -> WRN-16-1
    # The published file's notes: the cells equal to the CMI README's are marked 1, CMI's
    # scratch number 2, and the notes are in the provenance block.
    assert block["ADI"][0].endswith(",1</sup>") and block["CMI"][4].endswith(",2</sup>")
    assert not block["CMI"][0].endswith(",1</sup>") and "," not in block["CuDFKD"][0]
    text = cifar_report["markdown"]["table"]
    provenance = text[text.index("<details>") :]
    assert "MAD has no public code" in provenance
    assert "Note 2: CMI Table 1's 90.01 is adversarial CMI" in provenance
    assert "the README gives ~88.82 (CMI on WRN-40-2 → WRN-16-1)" in provenance
    assert "90.01" not in text[: text.index("<details>")]
    # Students' sources say which of our numbers they are compared with; teachers' are not.
    assert (
        "selected as the best epoch, selected on the test set (compared with our best-epoch" in text
    )
    assert "selected as not stated (teacher training, test set)\n" in text


def test_every_published_cell_of_the_cifar_report_has_a_verdict(cifar_report) -> None:
    _, *rows = cifar_report["tables"]["reproduction"]
    verdicts = [row[-1] for row in rows if not row[0].startswith("*")]
    # 5 pairs x 5 methods with a published Acc@1 (MAD has none); MAD diverged once, elsewhere.
    assert len(verdicts) == len(CIFAR_PAIRS) * (len(CIFAR_METHODS) - 1)
    assert set(verdicts) <= {"consistent", "below", "above", "inconclusive"}
    _, *rows = cifar_report["tables"]["improvement"]
    pairs = [row for row in rows if not row[0].startswith("*")]
    assert len(pairs) == len(CIFAR_METHODS) * (len(CIFAR_METHODS) - 1) // 2


def _shown(cell: str) -> list[str]:
    """The lines of a Markdown cell as GitHub shows them, without markup."""
    text = re.sub(r"</?(sup|sub|small|b|i)>|\*\*|\*|`|\\", "", cell)
    return text.split("<br>")


def test_every_markdown_table_fits_githubs_page(cifar_report) -> None:
    """GitHub's page holds 980 px of table; a column takes its longest line, at about 8.5 px a
    character of its 16 px font, plus 26 px of padding and border (an estimate, on the high
    side: digits and most letters are narrower)."""
    for name, rows in cifar_report["tables"].items():
        columns = zip(*rows, strict=True)
        widths = [max(len(line) for cell in column for line in _shown(cell)) for column in columns]
        estimate = sum(8.5 * width + 26 for width in widths)
        assert estimate <= 980, (name, widths, estimate)


def test_cudfkd_table_4_stands_under_ours_with_its_source(cifar_report) -> None:
    """CuDFKD Table 4 (params/published.yaml `stability`) under the ResNet-34 -> ResNet-18 rows of
    the stability and cost tables, for the report's methods only, with its selection stated."""
    for name, expected in (
        ("stability", {"*DAFL*": ["*62.6*", "*17.10*", "*92.0*", "–"],
                       "*CuDFKD*": ["*94.1*", "*2.88*", "*95.0*", "–"]}),
        ("cost", {"*ADI*": ["–", "–", "*7.85*", "–", "*25.20* h"],
                  "*CMI*": ["–", "–", "*12.50*", "–", "*13.30* h"]}),
    ):  # fmt: skip
        _, *rows = cifar_report["tables"][name]
        labels = [row[0] for row in rows]
        at = labels.index("*Published: CuDFKD Table 4*")
        assert labels[at - 7 : at] == ["*ResNet-34 → ResNet-18*", *_NAMES]
        block = {row[0]: row[1:] for row in rows[at + 1 : at + 5]}
        assert list(block) == ["*DAFL*", "*ADI*", "*CMI*", "*CuDFKD*"]  # no DFAD, MB-DFKD
        assert {label: block[label] for label in expected} == expected
        assert labels[at + 5] == "*VGG-11 → ResNet-18*"
        text = cifar_report["markdown"][name]
        assert (
            "*Italic*: as published by CuDFKD Table 4, selected as best Acc@1: the highest" in text
        )
    assert labels.count("*Published: CuDFKD Table 4*") == 1
    assert "Published memory in GB and time in hours" in cifar_report["markdown"]["cost"]


_NAMES = ["DAFL", "ADI", "DFQ", "CMI", "CuDFKD", "MAD"]
