"""`dfkd study-report`: a declared study's runs -> its table, in the layout of the paper's, with
the published values beside each cell (params/studies.yaml).

One row per cell: its labels, then final-epoch Acc@1, Agree@1 and L_p as mean ± std over seeds
with the published value in brackets, mu and sigma^2, and the time to the accuracy threshold
(the paper's t_90). The inputs are the cells' `metrics.json` files, each under
`.../studies/<study>/<cell>/seed<k>/`, and the metrics files of the teachers the cells used.
Every input is read and checked and every output rendered before the first file is written.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from dfkd.atomic import atomic_write_text
from dfkd.config.settings import read_yaml
from dfkd.config.studies import StudiesFile, Study, TeacherVariant, read_studies
from dfkd.data import dataset_info
from dfkd.errors import UserError
from dfkd.reporting.format import (
    COMPARISON_COLUMNS,
    Dialect,
    Latex,
    Markdown,
    mean_std_cell,
    measurement,
    published_suffix,
    render,
    seed_count,
    threshold_cells,
    time_units,
)
from dfkd.reporting.tables import RUN_COLUMNS, group_table, read_metrics, report_facts, run_row


def load_study(path: str, name: str) -> Study:
    return _load_studies(path, name).studies[name]


def _load_studies(path: str, name: str) -> StudiesFile:
    studies = read_studies(read_yaml(Path(path)), path)
    if name not in studies.studies:
        have = ", ".join(studies.studies) or "none"
        raise UserError(f"{path}: no study '{name}'; have: {have}")
    return studies


def load_study_runs(paths: Sequence[str], study: Study) -> pd.DataFrame:
    """The tidy per-run table with each run's cell, checked to cover every cell and seed once."""
    rows, seen = [], {}
    for path in paths:
        row = run_row(path, read_metrics(path, "distillation"))
        cell = Path(path).parent.parent.name
        if cell not in study.cells:
            raise UserError(f"{path}: '{cell}' is not a cell of the study")
        key = (cell, row["seed"])
        if key in seen:
            raise UserError(f"{path}: the same cell and seed as {seen[key]}")
        seen[key] = path
        rows.append({**row, "cell": cell})
    missing = [
        f"{cell} seed {seed}"
        for cell in study.cells
        for seed in study.seeds
        if (cell, seed) not in seen
    ]
    if missing:
        raise UserError(f"the study's runs lack {', '.join(missing)}; run them first")
    runs = pd.DataFrame(rows, columns=["cell", *RUN_COLUMNS])
    order = {cell: i for i, cell in enumerate(study.cells)}
    return runs.sort_values("cell", key=lambda c: c.map(order), kind="stable")


def _teacher_lines(paths: Sequence[str], variants: Mapping[str, TeacherVariant]) -> list[str]:
    """ "<architecture> (<variant>): <acc1>%" per teacher metrics file, from its path, and the
    paper's accuracy for its own teacher of a variant's recipe where it gives one."""
    lines = []
    for path in paths:
        record = read_metrics(path, "teacher")
        architecture = (record.get("run") or {}).get("architecture", "?")
        variant = Path(path).parent.parent.name if "teacher_variants" in path else "trained"
        acc1 = (record.get("summary") or {}).get("final_acc1")
        line = f"{architecture} ({variant}): " + ("–" if acc1 is None else f"{acc1:.2f}%")
        published = variants[variant].published_acc1 if variant in variants else None
        lines.append(line + ("" if published is None else f" (paper: {published:.2f}%)"))
    return lines


def _rows(groups: pd.DataFrame, study: Study, dialect: Dialect) -> list[dict[str, Any]]:
    units = time_units(groups)
    scale = units["t_threshold_hours"][1]
    rows = []
    for row in groups.to_dict("records"):
        cell = study.cells[row["cell"]]
        paper = cell.published
        cells = []
        for column, decimals, key in COMPARISON_COLUMNS:
            text = measurement(dialect, row[f"{column}_mean"], row[f"{column}_std"], decimals)
            text = text or dialect.missing
            if key is not None and paper is not None:
                text += published_suffix(getattr(paper, key), decimals)
            cells.append(text)
        hours, epochs = threshold_cells(row, scale, dialect)
        if paper is not None and paper.t90_hours is not None:
            hours += f" [{paper.t90_hours:.2f} h]"
        cells += [
            mean_std_cell(row, "mu", dialect, 2),
            mean_std_cell(row, "sigma2", dialect, 2),
            hours,
            epochs,
            seed_count(row["completed"], row["diverged"]),
        ]
        rows.append({"labels": list(cell.labels), "cells": cells})
    return rows


def build_study_view(
    runs: pd.DataFrame, study: Study, name: str, teachers: Sequence[str], dialect: Dialect
) -> dict[str, Any]:
    groups = group_table(runs, by=("cell",))
    dataset = str(runs["dataset"].iloc[0])
    facts = report_facts(runs, {"sources": {}, "teachers": {}, "results": {}}, dataset,
                         dataset_info(dataset).title)  # fmt: skip
    return {
        "study": study,
        "name": name,
        "facts": facts,
        "teachers": teachers,
        "threshold": f"{facts.accuracy_threshold:g}",
        "units": {column: unit for column, (unit, _) in time_units(groups).items()},
        "rows": _rows(groups, study, dialect),
    }


def run_study_report(arguments: argparse.Namespace) -> int:
    studies = _load_studies(arguments.studies, arguments.study)
    study = studies.studies[arguments.study]
    runs = load_study_runs(arguments.runs, study)
    teachers = _teacher_lines(arguments.teachers, studies.teacher_variants)
    outputs: dict[str, str] = {}
    templates = Path(arguments.templates)
    dialects: Mapping[str, tuple[str, Dialect]] = {
        "markdown": ("study.md.j2", Markdown()),
        "latex": ("study.tex.j2", Latex()),
    }
    for option, (template, dialect) in dialects.items():
        out = getattr(arguments, option)
        if out:
            view = build_study_view(runs, study, arguments.study, teachers, dialect)
            outputs[out] = render(templates, template, view, dialect)
    if arguments.runs_csv:
        outputs[arguments.runs_csv] = runs.to_csv(index=False, lineterminator="\n")
    for path, content in outputs.items():
        atomic_write_text(path, content)
    return 0
