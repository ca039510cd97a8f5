"""Presentation of a dataset report: rounding, Markdown and LaTeX cells, template views, curves.

Every number is rounded and every emphasis (bold best, divergence counts, published numbers,
"not reached") is decided here, once per output dialect; the Jinja templates under
reports/templates only lay the prepared cells out. Accuracies get 2 decimals, L_p 4, sigma^2 2,
times and memory 3 significant digits, so a cell never claims more precision than the seeds give.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd

from dfkd.errors import UserError
from dfkd.reporting.verdicts import Verdict, summary_line

GIB = 2.0**30

# Per pair of the comparison table: (column of the group table, decimals, published key).
# Published L_p values come from the authors' code (1 - JS^(1/4), see dfkd.evaluate), so they sit
# beside our reference-code variant, never beside the paper's Eq. 14 value.
COMPARISON_COLUMNS = (
    ("final_acc1", 2, "acc1"),
    ("final_agree1", 2, "agree1"),
    ("final_lp", 4, None),
    ("final_lp_reference_code", 4, "lp"),
)
TIME_COLUMNS = ("t_threshold_hours", "train_hours", "total_hours")


@dataclass(frozen=True)
class ReportFacts:
    """What the caption states about the runs behind a table."""

    dataset: str
    dataset_title: str
    protocol: str
    hardware: Sequence[str]
    suite_versions: Sequence[str]
    commits: Sequence[str]
    environments: Sequence[str]  # the lock file's digest, and what differs from it
    seeds: Sequence[int]
    accuracy_threshold: float
    stability_start_epoch: int
    sources: Sequence[tuple[str, str]]  # (key, text) of every published source quoted
    # (method, its (teacher, student) pairs where they ran differently, its loop and options)
    settings: Sequence[tuple[str, Sequence[tuple[str, str]], str]]
    notes: Sequence[tuple[str, str]]  # (method, what to know about its published numbers)
    computes: Sequence[str]  # the compute modes of the runs, as they ran (dfkd/compute.py)
    date: str
    teacher_origins: Sequence[str] = ()  # trained by the suite, or released (file, SHA-256)


# ---------------------------------------------------------------------------------------------
# Numbers


def _finite(value: Any) -> bool:
    return value is not None and not pd.isna(value) and math.isfinite(float(value))


def significant_decimals(value: float, digits: int = 3) -> int:
    """Decimals that show ``value`` with ``digits`` significant digits, never fewer than 0."""
    if not _finite(value) or value == 0:
        return digits - 1
    return max(0, digits - 1 - math.floor(math.log10(abs(value))))


def _fixed(value: Any, decimals: int) -> str | None:
    return f"{float(value):.{decimals}f}" if _finite(value) else None


# ---------------------------------------------------------------------------------------------
# Dialects: the only place that knows Markdown or LaTeX markup


class Dialect:
    """Markup of one output format; cells are composed from these pieces."""

    missing = "–"
    reproduced = "✓"  # the verdict marks (dfkd/reporting/verdicts.py)
    not_reproduced = "✗"

    def escape(self, text: str) -> str:
        raise NotImplementedError

    def measurement(self, mean: str, std: str | None) -> str:
        raise NotImplementedError

    def bold(self, text: str) -> str:
        raise NotImplementedError


class Markdown(Dialect):
    def escape(self, text: str) -> str:
        # A pipe ends a table cell; asterisks would start emphasis.
        return str(text).replace("|", r"\|").replace("*", r"\*")

    def measurement(self, mean: str, std: str | None) -> str:
        return mean if std is None else f"{mean} ± {std}"

    def bold(self, text: str) -> str:
        return f"**{text}**"


_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "_": r"\_",
    "%": r"\%",
    "&": r"\&",
    "#": r"\#",
    "$": r"\$",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


class Latex(Dialect):
    missing = "--"
    reproduced = r"\checkmark"  # amssymb
    not_reproduced = r"$\times$"

    def escape(self, text: str) -> str:
        return "".join(_LATEX_SPECIALS.get(character, character) for character in str(text))

    def measurement(self, mean: str, std: str | None) -> str:
        return f"${mean}$" if std is None else f"${mean} \\pm {std}$"

    def bold(self, text: str) -> str:
        # \boldmath is needed because \textbf alone does not embolden the math-mode digits.
        return f"\\textbf{{\\boldmath {text}}}"


# ---------------------------------------------------------------------------------------------
# Cells


def measurement(dialect: Dialect, mean: Any, std: Any, decimals: int) -> str | None:
    mean_text = _fixed(mean, decimals)
    return None if mean_text is None else dialect.measurement(mean_text, _fixed(std, decimals))


def published_suffix(value: Any, decimals: int) -> str:
    text = _fixed(value, decimals)
    return "" if text is None else f" [{text}]"


def seed_count(completed: int, diverged: int) -> str:
    return f"{completed} + {diverged} diverged" if diverged else str(completed)


def _best_means(groups: pd.DataFrame) -> dict[str, float]:
    # Compared after rounding, so that equal-looking cells are all bold or none is.
    rounded = groups["final_acc1_mean"].round(2)
    return rounded.groupby(groups["pair"], sort=False).max().dropna().to_dict()


def _teacher_cells(
    teacher: str,
    teacher_acc1: Mapping[str, tuple[float, float, int]],
    published: Mapping[str, Any],
    dialect: Dialect,
) -> list[str]:
    mean, std, n = teacher_acc1.get(teacher, (math.nan, math.nan, 0))
    ours = measurement(dialect, mean, std, 2) or dialect.missing
    if n > 1:  # several teacher seeds: say how many, as for the students
        ours += f" ({n})"
    ours += published_suffix(published["teachers"].get(teacher, {}).get("acc1"), 2)
    return [ours] + [dialect.missing] * (len(COMPARISON_COLUMNS) - 1)


def _method_cells(
    row: Mapping[str, Any],
    paper: Mapping[str, Any],
    best: float | None,
    found: Verdict | None,
    dialect: Dialect,
) -> list[str]:
    cells = []
    for column, decimals, published_key in COMPARISON_COLUMNS:
        text = measurement(dialect, row[f"{column}_mean"], row[f"{column}_std"], decimals)
        if column == "final_acc1":
            if text is not None and round(row["final_acc1_mean"], 2) == best:
                text = dialect.bold(text)
            text = f"{text or dialect.missing} ({seed_count(row['completed'], row['diverged'])})"
        text = text or dialect.missing
        if published_key:
            text += published_suffix(paper.get(published_key), decimals)
        if column == "final_acc1" and found is not None:
            text += " " + (dialect.reproduced if found.reproduced else dialect.not_reproduced)
        cells.append(text)
    return cells


def _comparison_rows(
    groups: pd.DataFrame,
    teacher_acc1: Mapping[str, tuple[float, float, int]],
    published: Mapping[str, Any],
    verdicts: Mapping[tuple[str, str], Verdict],
    dialect: Dialect,
) -> list[dict[str, Any]]:
    """The "Teacher" row, then one row per method; four cells per pair."""
    pairs = dict(zip(groups["pair"], groups["teacher"], strict=True))  # pair -> teacher
    teacher_row = [
        cell
        for teacher in pairs.values()
        for cell in _teacher_cells(teacher, teacher_acc1, published, dialect)
    ]
    rows = [{"label": "Teacher", "cells": teacher_row}]
    best = _best_means(groups)
    by_key = {(row["pair"], row["method"]): row for row in groups.to_dict("records")}
    for method in dict.fromkeys(groups["method"]):
        cells: list[str] = []
        for pair in pairs:
            row = by_key.get((pair, method))
            if row is None:  # this method was not run on this pair
                cells += [dialect.missing] * len(COMPARISON_COLUMNS)
            else:
                paper = published["results"].get(pair, {}).get(method, {})
                found = verdicts.get((pair, method))
                cells += _method_cells(row, paper, best.get(pair), found, dialect)
        rows.append({"label": method, "cells": cells})
    return rows


def time_units(groups: pd.DataFrame) -> dict[str, tuple[str, float]]:
    """Per time column: minutes when every mean is under an hour, else hours."""
    units = {}
    for column in TIME_COLUMNS:
        means = groups[f"{column}_mean"].dropna()
        small = len(means) > 0 and bool((means < 1.0).all())
        units[column] = ("min", 60.0) if small else ("h", 1.0)
    return units


def mean_std_cell(
    values: Mapping[str, Any],
    column: str,
    dialect: Dialect,
    decimals: int | None = None,
    scale: float = 1.0,
) -> str:
    """mean ± std of a group-table column; ``decimals=None`` keeps 3 significant digits."""
    mean, std = values[f"{column}_mean"] * scale, values[f"{column}_std"] * scale
    places = significant_decimals(mean) if decimals is None else decimals
    return measurement(dialect, mean, std, places) or dialect.missing


def _interval(values: Mapping[str, Any], column: str, dialect: Dialect) -> str:
    """The 95% Student-t interval of a column's mean over seeds, "[low, high]"; "–" below n = 3."""
    low, high = values[f"{column}_ci_low"], values[f"{column}_ci_high"]
    if not (math.isfinite(low) and math.isfinite(high)):
        return dialect.missing
    return f"[{low:.2f}, {high:.2f}]"


def threshold_cells(row: Mapping[str, Any], scale: float, dialect: Dialect) -> tuple[str, str]:
    """Time and epochs to the accuracy threshold, over the completed seeds that reached it."""
    if row["completed"] == 0:
        return dialect.missing, dialect.missing
    if row["reached"] == 0:
        return "not reached", "not reached"
    hours = mean_std_cell(row, "t_threshold_hours", dialect, scale=scale)
    epochs = mean_std_cell(row, "epochs_to_threshold", dialect, 1)
    if row["reached"] < row["completed"]:  # a mean over the fast seeds alone would flatter
        share = f" ({row['reached']}/{row['completed']})"
        hours, epochs = hours + share, epochs + share
    return hours, epochs


def _memory_cell(row: Mapping[str, Any], dialect: Dialect) -> str:
    gibibytes = (
        _fixed(row["peak_memory_bytes"] / GIB, 2) if _finite(row["peak_memory_bytes"]) else None
    )
    if gibibytes is None:
        return dialect.missing
    return gibibytes + (" (host RSS)" if row["memory_is_host"] else "")


def _stability_rows(
    groups: pd.DataFrame, units: Mapping[str, tuple[str, float]], dialect: Dialect
) -> list[dict[str, Any]]:
    """One row per (pair, method); the pair is named on its first row only."""
    rows = []
    previous_pair = None
    for row in groups.to_dict("records"):
        first_of_pair = row["pair"] != previous_pair
        previous_pair = row["pair"]
        hours, epochs = threshold_cells(row, units["t_threshold_hours"][1], dialect)
        cells = [
            seed_count(row["completed"], row["diverged"]),
            _interval(row, "final_acc1", dialect),
            mean_std_cell(row, "mu", dialect, 2),
            mean_std_cell(row, "sigma2", dialect, 2),
            mean_std_cell(row, "best_acc1", dialect, 2),
            _fixed(row["best_acc1_max"], 2) or dialect.missing,
            hours,
            epochs,
            _memory_cell(row, dialect),
            mean_std_cell(row, "train_hours", dialect, scale=units["train_hours"][1]),
            mean_std_cell(row, "total_hours", dialect, scale=units["total_hours"][1]),
        ]
        rows.append(
            {
                "new_pair": first_of_pair and bool(rows),
                "pair": (row["teacher"], row["student"]) if first_of_pair else None,
                "method": row["method"],
                "cells": cells,
            }
        )
    return rows


def build_view(
    groups: pd.DataFrame,
    teacher_acc1: Mapping[str, tuple[float, float, int]],
    published: Mapping[str, Any],
    facts: ReportFacts,
    verdicts: Mapping[tuple[str, str], Verdict],
    dialect: Dialect,
) -> dict[str, Any]:
    """Everything a template needs: pre-formatted cells, header facts and units."""
    units = time_units(groups)
    pairs = groups.drop_duplicates("pair")
    tolerance = published["verdict_tolerance"]
    return {
        "verdict_summary": summary_line(verdicts, tolerance),
        "tolerance": f"{tolerance:g}",
        "facts": facts,
        "threshold": f"{facts.accuracy_threshold:g}",
        "label": f"tab:{facts.dataset}-dfkd",
        "pairs": list(zip(pairs["teacher"], pairs["student"], strict=True)),
        "comparison_rows": _comparison_rows(groups, teacher_acc1, published, verdicts, dialect),
        "stability_rows": _stability_rows(groups, units, dialect),
        "units": {column: unit for column, (unit, _) in units.items()},
        "any_host_memory": bool(groups["memory_is_host"].any()),
    }


# ---------------------------------------------------------------------------------------------
# Templates and curves


def _environment(templates: Path, dialect: Dialect) -> jinja2.Environment:
    # LaTeX is full of braces and percent signs, so its templates use ((( ))) and ((* *)).
    delimiters = (
        {
            "block_start_string": "((*",
            "block_end_string": "*))",
            "variable_start_string": "(((",
            "variable_end_string": ")))",
            "comment_start_string": "((=",
            "comment_end_string": "=))",
        }
        if isinstance(dialect, Latex)
        else {}
    )
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates),
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        **delimiters,
    )
    environment.filters["escape"] = dialect.escape
    return environment


def render(templates: Path, template_name: str, view: Mapping[str, Any], dialect: Dialect) -> str:
    """Fills ``templates/template_name`` with ``view``; a missing template is the user's error."""
    if not (templates / template_name).is_file():
        raise UserError(
            f"{templates / template_name}: template not found; pass --templates reports/templates"
        )
    return _environment(templates, dialect).get_template(template_name).render(**view)


def curves_png(runs: pd.DataFrame, histories: Mapping[int, Sequence[Mapping[str, Any]]]) -> bytes:
    """Test Acc@1 per epoch, one panel per pair, one line per method (mean ± std band)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    completed = runs["status"] == "completed"
    pairs = runs.drop_duplicates("pair")
    figure, axes = pyplot.subplots(
        1, len(pairs), figsize=(4.2 * len(pairs), 3.4), squeeze=False, sharey=True
    )
    for axis, pair in zip(axes[0], pairs.itertuples(index=False), strict=True):
        for method in dict.fromkeys(runs.loc[runs["pair"] == pair.pair, "method"]):
            group = (runs["pair"] == pair.pair) & (runs["method"] == method)
            curves = [
                [float(r["acc1"]) for r in histories[i]] for i in runs.index[group & completed]
            ]
            if not curves:
                continue
            length = min(len(curve) for curve in curves)
            acc1 = np.asarray([curve[:length] for curve in curves])
            epochs = np.arange(1, length + 1)
            mean = acc1.mean(axis=0)
            diverged = int((group & ~completed).sum())
            label = f"{method} (n={len(curves)}" + (f", {diverged} diverged)" if diverged else ")")
            (line,) = axis.plot(epochs, mean, label=label)
            if len(curves) > 1:
                spread = acc1.std(axis=0, ddof=1)
                axis.fill_between(
                    epochs, mean - spread, mean + spread, alpha=0.2, lw=0, color=line.get_color()
                )
        axis.set_title(f"{pair.teacher} → {pair.student}")
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    axes[0][0].set_ylabel("test Acc@1 (%)")
    figure.suptitle("mean ± std over completed seeds", fontsize="small")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=150, metadata={"Software": None})
    pyplot.close(figure)
    return buffer.getvalue()
