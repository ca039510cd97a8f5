"""`dfkd report`: one dataset's runs -> tables a paper can use, the per-run and per-cell CSVs,
headline metrics and figures.

With ``--out reports/cifar10`` it writes

    reports/cifar10_table.md, .tex     the main table: final-epoch Acc@1, methods x pairs
    reports/cifar10_runs.csv           one row per run
    reports/cifar10_cells.csv          one row per (pair, method): every statistic of the cell
    reports/metrics/cifar10.json       headline numbers for `dvc metrics show`
    reports/cifar10_curves.png, .pdf   test Acc@1 per epoch
    reports/cifar10/<table>.md, .tex   every other table (TABLES), one per file
    reports/cifar10/<table>.html       every table, the main one too, for Snakemake's report
    reports/cifar10/profile.png, .pdf  performance profiles

Every input is read and checked, and every output rendered in memory, before the first file is
written; each file is then replaced atomically, so bad input leaves the old reports untouched.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from dfkd.atomic import atomic_write_bytes, atomic_write_text
from dfkd.reporting.analysis import Analysis, analyse
from dfkd.reporting.cells import headline_metrics
from dfkd.reporting.comparisons import (
    aggregate_table,
    improvement_table,
    reference_table,
    reproduction_table,
)
from dfkd.reporting.dialects import DIALECTS, Dialect, Html, Latex
from dfkd.reporting.facts import Provenance, provenance
from dfkd.reporting.figures import curves, profile
from dfkd.reporting.inputs import (
    load_display_names,
    load_published,
    load_runs,
    load_teachers,
    report_date,
)
from dfkd.reporting.layout import Table, render
from dfkd.reporting.reference import load_reference
from dfkd.reporting.tables import (
    cost_table,
    fidelity_table,
    main_table,
    spread_table,
    stability_table,
)

Builder = Callable[[Analysis, Dialect, Provenance], Table]
# Every table of a report, by file stem, in the order the main table links to them.
TABLES: dict[str, tuple[str, Builder]] = {
    "table": ("Acc@1", main_table),
    "fidelity": ("Agree@1 and L_p", fidelity_table),
    "stability": ("stability", stability_table),
    "cost": ("cost", cost_table),
    "spread": ("spread over seeds", spread_table),
    "reproduction": ("reproduction", reproduction_table),
    "reference": ("reference runs", reference_table),
    "improvement": ("P(A > B)", improvement_table),
    "aggregate": ("aggregate", aggregate_table),
}
FIGURES = ("curves", "profile")


def report_files(prefix: str) -> dict[str, str]:
    """Every file a report writes, by role, for the output prefix (e.g. "reports/cifar10")."""
    files = {
        "runs_csv": f"{prefix}_runs.csv",
        "cells_csv": f"{prefix}_cells.csv",
        # Headline numbers where `dvc metrics show` reads them (dvc.yaml), one file per report.
        "metrics": str(Path(prefix).parent / "metrics" / f"{Path(prefix).name}.json"),
        "curves_png": f"{prefix}_curves.png",
        "curves_pdf": f"{prefix}_curves.pdf",
        "profile_png": f"{prefix}/profile.png",
        "profile_pdf": f"{prefix}/profile.pdf",
    }
    for name in TABLES:
        for dialect in DIALECTS:
            extension = dialect.extension
            flat = name == "table" and extension != "html"
            files[f"{name}_{extension}"] = (
                f"{prefix}_table.{extension}" if flat else f"{prefix}/{name}.{extension}"
            )
    return files


def _links(name: str, dialect: Dialect, prefix: str) -> tuple[str, ...]:
    """From the main table to the others: the flat Markdown file links into the folder."""
    if name != "table" or isinstance(dialect, Latex):
        return ()
    folder = "" if isinstance(dialect, Html) else f"{Path(prefix).name}/"
    return tuple(
        dialect.link(dialect.escape(text), f"{folder}{other}.{dialect.extension}")
        for other, (text, _) in TABLES.items()
        if other != "table"
    )


def run_report(arguments: argparse.Namespace) -> int:
    """Reads and checks every input, renders every output in memory, then writes them."""
    runs = load_runs(arguments.runs, arguments.dataset)
    protocol = str(runs.table["protocol"].iloc[0])
    teachers = load_teachers(arguments.teachers, arguments.dataset, protocol)
    published = load_published(arguments.published, arguments.dataset)
    names = load_display_names(arguments.methods_dir, list(dict.fromkeys(runs.table["method"])))
    reference = load_reference(arguments.reference) if arguments.reference else None
    analysis = analyse(runs, teachers, published, names, reference)
    common = provenance(analysis, report_date())
    templates = Path(arguments.templates) if arguments.templates else None

    files = report_files(arguments.out)
    outputs: dict[str, str | bytes] = {}
    for name, (_, build) in TABLES.items():
        for dialect in DIALECTS:
            table = build(analysis, dialect, common)
            table = replace(table, links=_links(name, dialect, arguments.out))
            outputs[files[f"{name}_{dialect.extension}"]] = render(table, dialect, templates)
    outputs[files["runs_csv"]] = (
        analysis.runs.drop(columns=["score"])
        .assign(
            normalised_acc1=analysis.runs["score"].where(analysis.runs["status"] == "completed")
        )
        .to_csv(index=False, lineterminator="\n")
    )
    outputs[files["cells_csv"]] = cells_csv(analysis)
    for figure, drawn in (
        ("curves", curves(analysis, runs.histories)),
        ("profile", profile(analysis)),
    ):
        for kind, data in drawn.items():
            outputs[files[f"{figure}_{kind}"]] = data
    teacher_acc1 = {name: teachers.mean(name) for name in teachers.acc1}
    aggregates = {
        method: {
            "iqm": found.iqm.value,
            "iqm_ci95_low": found.iqm.low,
            "iqm_ci95_high": found.iqm.high,
            "mean": found.mean.value,
        }
        for method, found in analysis.aggregates.items()
    }
    metrics = headline_metrics(analysis.cells, teacher_acc1, aggregates)
    outputs[files["metrics"]] = json.dumps(metrics, indent=2) + "\n"
    for path, content in outputs.items():
        if isinstance(content, bytes):
            atomic_write_bytes(path, content)
        else:
            atomic_write_text(path, content)
    return 0


def cells_csv(analysis: Analysis) -> str:
    """The per-cell table with its display name, teacher, published number and reproduction."""
    cells = analysis.cells.copy()
    cells.insert(
        cells.columns.get_loc("method") + 1,
        "display_name",
        [analysis.names[m] for m in cells["method"]],
    )
    cells.insert(0, "protocol", analysis.protocol)
    cells.insert(0, "dataset", analysis.dataset)
    cells["teacher_acc1"] = [analysis.teachers.mean(t) for t in cells["teacher"]]
    scores = analysis.runs.groupby(["pair", "method"], sort=False)["score"]
    # Diverged runs score 0 here, as in the aggregate; the per-run CSV leaves them blank.
    cells["normalised_score_mean"] = [
        scores.get_group((p, m)).mean() for p, m in zip(cells["pair"], cells["method"], strict=True)
    ]
    columns = (
        "published_acc1",
        "published_source",
        "published_rule",
        "ours_selected",
        "delta_acc1",
        "delta_ci95_low",
        "delta_ci95_high",
        "test_set_se",
        "margin",
        "verdict",
    )
    values: dict[str, list] = {column: [] for column in columns}
    for pair, method in zip(cells["pair"], cells["method"], strict=True):
        found = analysis.reproductions.get((pair, method))
        source = analysis.published.result(pair, method).get("source")
        rule = analysis.published.source(source).rule if found else None
        row = (
            (
                found.published,
                source,
                rule,
                found.ours,
                found.delta,
                found.delta_low,
                found.delta_high,
                found.floor,
                found.margin,
                found.verdict,
            )
            if found
            else (None,) * len(columns)
        )
        for column, value in zip(columns, row, strict=True):
            values[column].append(value)
    return cells.assign(**values).to_csv(index=False, lineterminator="\n")
