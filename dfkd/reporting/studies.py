"""`dfkd study-report`: a declared study's runs -> its table, in the layout of the paper's, with
the published values under each cell (params/studies.yaml).

One row per cell: its labels, then final-epoch Acc@1, Agree@1 and L_p (the authors' code's
form, which published values use) as mean ± std over seeds, the time to the accuracy threshold
(the paper's t_90), and n. The inputs are the cells' `metrics.json` files, each under
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
from dfkd.reporting.cells import group_table
from dfkd.reporting.dialects import DIALECTS, Dialect
from dfkd.reporting.facts import pair_name, run_sections
from dfkd.reporting.inputs import RUN_COLUMNS, read_metrics, report_date, run_row
from dfkd.reporting.layout import Column, Row, Table, render
from dfkd.reporting.tables import significant_decimals


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


def _cells(row: Mapping[str, Any], paper: Any, scale: float, d: Dialect) -> list[str]:
    """Ours over the published value (in brackets, where the paper gives one)."""

    def under(ours: str, key: str, decimals: int, unit: str = "") -> str:
        value = getattr(paper, key) if paper is not None else None
        return d.stack(ours, f"[{d.number(value, decimals)}{unit}]" if value is not None else "")

    hours = row["t_threshold_hours_mean"] * scale
    if row["reached"] == 0:
        time = d.escape("not reached")
    else:
        time = d.measure(hours, row["t_threshold_hours_std"] * scale, significant_decimals(hours))
        if row["reached"] < row["completed"]:
            time += f" ({row['reached']}/{row['completed']})"
    n = str(row["completed"]) + (f" + {row['diverged']} div." if row["diverged"] else "")
    return [
        under(d.measure(row["final_acc1_mean"], row["final_acc1_std"], 2), "acc1", 2),
        under(d.measure(row["final_agree1_mean"], row["final_agree1_std"], 2), "agree1", 2),
        under(
            d.measure(row["final_lp_reference_code_mean"], row["final_lp_reference_code_std"], 3),
            "lp",
            4,
        ),
        under(time, "t90_hours", 2, " h"),
        n,
    ]


def study_table(
    runs: pd.DataFrame, study: Study, name: str, teachers: Sequence[str], dialect: Dialect
) -> Table:
    d = dialect
    groups = group_table(runs, by=("cell",))
    dataset = str(runs["dataset"].iloc[0])
    title = dataset_info(dataset).title
    threshold = f"{float(runs['accuracy_threshold'].iloc[0]):g}"
    means = [v for v in groups["t_threshold_hours_mean"] if v == v]
    unit, scale = ("min", 60.0) if means and max(means) < 1.0 else ("h", 1.0)
    columns = (
        *(Column((d.escape(column),), "l") for column in study.columns),
        Column((d.escape("Acc@1 (%)"),)),
        Column((d.escape("Agree@1 (%)"),)),
        Column((d.subscript("L", "p") + " (code)",)),
        Column((f"{d.subscript('t', threshold)} ({unit})",)),
        Column(("n",)),
    )
    rows = []
    for row in groups.to_dict("records"):
        cell = study.cells[row["cell"]]
        labels = [d.escape(label) for label in cell.labels]
        rows.append(Row((*labels, *_cells(row, cell.published, scale, d))))
    seeds = sorted({int(seed) for seed in runs["seed"]})
    caption = d.compose(
        "{title} on {dataset} ({pair}, protocol {protocol}): final-epoch test Acc@1, Agree@1 and "
        f"{{lp}}, and the training time to {threshold}% test Acc@1, mean ± std over {len(seeds)} "
        "seeds; in brackets, the published value.",
        title=d.escape(study.title),
        dataset=d.escape(title),
        pair=pair_name(study.pair, d),
        protocol=d.code(str(runs["protocol"].iloc[0])),
        lp=d.subscript("L", "p"),
    )
    settings = [
        f"{', '.join(study.cells[c].labels)}: {text}"
        for c, text in dict.fromkeys(zip(runs["cell"], runs["settings"], strict=True))
        if text
    ]
    sections = [
        (
            "Study",
            (
                f"{name}: {study.source}",
                study.selection,
                "L_p (code): 1 - JS^(1/4), the authors' code's form of CuDFKD's Eq. 14",
            ),
        ),
        *run_sections(runs, title, report_date()),
        ("Teachers", tuple(teachers)),
        ("Settings", tuple(settings)),
    ]
    return Table(
        name=name,
        title=d.escape(study.title),
        caption=caption,
        label=f"tab:study-{name}",
        columns=columns,
        rows=tuple(rows),
        spaced=True,
        provenance=tuple((heading, tuple(lines)) for heading, lines in sections if lines),
    )


def run_study_report(arguments: argparse.Namespace) -> int:
    studies = _load_studies(arguments.studies, arguments.study)
    study = studies.studies[arguments.study]
    runs = load_study_runs(arguments.runs, study)
    teachers = _teacher_lines(arguments.teachers, studies.teacher_variants)
    templates = Path(arguments.templates) if arguments.templates else None
    outputs = {
        f"{arguments.out}.{d.extension}": render(
            study_table(runs, study, arguments.study, teachers, d), d, templates
        )
        for d in DIALECTS
    }
    outputs[f"{arguments.out}_runs.csv"] = runs.to_csv(index=False, lineterminator="\n")
    for path, content in outputs.items():
        atomic_write_text(path, content)
    return 0
