"""The result tables of a dataset report, in the layout of the papers the suite reproduces
(CuDFKD Tables 1-2 and 4, the CMI README):

- ``table``: final-epoch Acc@1, methods as rows and teacher -> student pairs as columns, the
  teacher's accuracy first, the published numbers in a block of their own below;
- ``fidelity``: Agree@1 and L_p; ``stability``: mu, sigma^2 and the best-epoch oracles;
  ``cost``: time to the accuracy threshold, memory and time; ``spread``: n, the 95% interval
  and the range over seeds. These list the pairs as groups of rows, so that their width does
  not grow with the number of pairs.

Accuracies get 2 decimals, L_p 3 (4 where published so), times and memory 3 significant digits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from dfkd.reporting.analysis import Analysis
from dfkd.reporting.dialects import Dialect, finite
from dfkd.reporting.facts import (
    Provenance,
    note_mark,
    notes_line,
    pair_header,
    pair_name,
    published_marks,
    seeds_text,
    where,
)
from dfkd.reporting.layout import Column, Row, Table

GIB = 2.0**30
DAGGER = "†"


def label(analysis: Analysis, name: str) -> str:
    return f"tab:{analysis.dataset}-{name}"


def method_name(analysis: Analysis, method: str, dialect: Dialect) -> str:
    return dialect.escape(analysis.names[method])


def significant_decimals(value: float, digits: int = 3) -> int:
    """Decimals that show ``value`` with ``digits`` significant digits, never fewer than 0."""
    if not finite(value) or value == 0:
        return digits - 1
    return max(0, digits - 1 - math.floor(math.log10(abs(value))))


def _measure(
    row: Mapping[str, Any],
    column: str,
    dialect: Dialect,
    decimals: int | None = None,
    scale: float = 1.0,
    bold: bool = False,
    dagger: bool = False,
) -> str:
    mean, std = row[f"{column}_mean"] * scale, row[f"{column}_std"] * scale
    places = significant_decimals(mean) if decimals is None else decimals
    return dialect.measure(mean, std, places, bold, dagger)


def _source_letters(keys: list[str]) -> dict[str, str]:
    """A letter per source where a table quotes more than one; none for one source."""
    keys = list(dict.fromkeys(keys))
    return {key: chr(ord("a") + i) for i, key in enumerate(keys)} if len(keys) > 1 else {}


def _source_note(
    analysis: Analysis, letters: Mapping[str, str], keys: list[str], dialect: Dialect
) -> str:
    keys = list(dict.fromkeys(keys))
    shown = [
        (dialect.sup(letters[key]) + " " if key in letters else "")
        + dialect.escape(analysis.published.source(key).short)
        for key in keys
    ]
    return "Published: " + "; ".join(shown) + "."


# ---------------------------------------------------------------------------------------------
# Acc@1


def main_table(analysis: Analysis, dialect: Dialect, provenance: Provenance) -> Table:
    d = dialect
    columns = (Column(("", "Method"), "l"), *(Column(pair_header(p, d)) for p in analysis.pairs))
    teacher_row = [d.escape("Teacher")]
    for pair in analysis.pairs:
        values = analysis.teachers.acc1.get(analysis.pair_teacher(pair), [])
        mean = sum(values) / len(values) if values else math.nan
        std = _sample_std(values)
        teacher_row.append(d.measure(mean, std, 2))
    rows = [Row(tuple(teacher_row)), Row(("",), "rule")]
    best = {
        pair: max(
            (
                round(c["final_acc1_mean"], 2)
                for m in analysis.methods
                if (c := analysis.cell(pair, m)) and finite(c["final_acc1_mean"])
            ),
            default=None,
        )
        for pair in analysis.pairs
    }
    notes = []
    for method in analysis.methods:
        cells = [method_name(analysis, method, d)]
        for pair in analysis.pairs:
            cell = analysis.cell(pair, method)
            if cell is None:
                cells.append(d.missing)
                continue
            bold = (
                finite(cell["final_acc1_mean"]) and round(cell["final_acc1_mean"], 2) == best[pair]
            )
            text = _measure(cell, "final_acc1", d, 2, bold=bool(bold), dagger=cell["diverged"] > 0)
            if cell["diverged"]:
                notes.append(
                    f"{d.escape(DAGGER)} {method_name(analysis, method, d)}, "
                    f"{pair_name(pair, d)}: {cell['diverged']} of {cell['runs']} runs diverged; "
                    "the mean is over the others."
                )
            cells.append(text)
        rows.append(Row(tuple(cells)))
    published_rows, keys = _published_block(analysis, d)
    selection = ""
    if published_rows:
        rules = {analysis.published.source(key).rule for key in keys}
        selected = {"best_epoch": ", at their best epoch", "final_epoch": ", at the final epoch"}
        selection = selected[rules.pop()] if len(rules) == 1 else ""
        rows += [Row(("",), "rule"), Row((d.italic("Published"),), "group")]
        rows += published_rows
        notes.append(_source_note(analysis, _source_letters(keys), keys, d))
        notes += notes_line(analysis, d)
    caption = d.compose(
        "Final-epoch test Acc@1 (%) of the students on {where}, mean ± std over {seeds}; "
        "columns: teacher over student; bold: the best of each column."
        + (f" Below: the published numbers{selection}." if published_rows else ""),
        where=where(analysis, d),
        seeds=d.escape(seeds_text(analysis)),
    )
    return Table(
        name="table",
        title=d.compose("Acc@1 on {where}", where=where(analysis, d)),
        caption=caption,
        label=label(analysis, "acc1"),
        columns=columns,
        rows=tuple(rows),
        tabcolsep="4pt",
        notes=tuple(notes),
        provenance=provenance.sections,
    )


def _sample_std(values: list[float]) -> float:
    if len(values) < 2:
        return math.nan
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _published_block(analysis: Analysis, d: Dialect) -> tuple[list[Row], list[str]]:
    """The teacher's and each method's published Acc@1 per pair, with source letters and note
    numbers; where a method's paper distilled its own teachers (MAD), their accuracies too."""
    published = analysis.published
    own = [m for m in analysis.methods if m in published.method_teachers]
    keys = [
        cell["source"]
        for pair in analysis.pairs
        for cell in [published.teachers.get(analysis.pair_teacher(pair)) or {}]
        + [published.method_teachers[m].get(analysis.pair_teacher(pair)) or {} for m in own]
        + [published.result(pair, m) for m in analysis.methods]
        if cell.get("acc1") is not None
    ]
    if not any(
        published.result(p, m).get("acc1") is not None
        for p in analysis.pairs
        for m in analysis.methods
    ):
        return [], []
    letters = _source_letters(keys)

    def value(cell: Mapping[str, Any], note: str = "") -> str:
        if cell.get("acc1") is None:
            return d.missing
        letter = letters.get(cell["source"], "")
        return d.number(cell["acc1"], 2) + published_marks(d, letter, note)

    def teachers(label: str, cells: Mapping[str, Any]) -> Row:
        shown = (value(cells.get(analysis.pair_teacher(pair)) or {}) for pair in analysis.pairs)
        return Row((d.escape(label), *shown))

    rows = [teachers("Teacher", published.teachers)]
    rows += [
        teachers(f"{analysis.names[m]}'s teacher", published.method_teachers[m])
        for m in own
        if any(analysis.pair_teacher(p) in published.method_teachers[m] for p in analysis.pairs)
    ]
    for method in analysis.methods:
        cells = [
            value(published.result(pair, method), note_mark(analysis, pair, method))
            for pair in analysis.pairs
        ]
        if any(cell != d.missing for cell in cells):
            rows.append(Row((method_name(analysis, method, d), *cells)))
    return rows, keys


# ---------------------------------------------------------------------------------------------
# Long tables: one group of rows per pair


def _grouped(analysis: Analysis, d: Dialect, cells_of, extra_rows=None) -> tuple[Row, ...]:
    rows: list[Row] = []
    for pair in analysis.pairs:
        rows.append(Row((d.italic(pair_name(pair, d)),), "group"))
        for method in analysis.methods:
            cell = analysis.cell(pair, method)
            if cell is not None:
                rows.append(Row((method_name(analysis, method, d), *cells_of(cell))))
        if extra_rows is not None:
            rows += extra_rows(pair)
    return tuple(rows)


def fidelity_table(analysis: Analysis, dialect: Dialect, provenance: Provenance) -> Table:
    d = dialect
    published = analysis.published
    keys = [
        published.result(p, m).get("source")
        for p in analysis.pairs
        for m in analysis.methods
        if published.result(p, m).get("agree1") is not None
        or published.result(p, m).get("lp") is not None
    ]
    letters = _source_letters(keys)
    lp, code = d.subscript("L", "p"), d.subscript("L", "p") + " (code)"
    columns = [Column(("Method",), "l"), Column((d.escape("Agree@1 (%)"),))]
    columns += [Column(("Pub.",))] if keys else []
    columns += [Column((lp,)), Column((code,))] + ([Column(("Pub.",))] if keys else [])

    def cells(cell: Mapping[str, Any]) -> list[str]:
        paper = published.result(cell["pair"], cell["method"])
        note = note_mark(analysis, cell["pair"], cell["method"])
        mark = published_marks(d, letters.get(paper.get("source"), ""), note)

        def shown(key: str, decimals: int) -> str:
            value = paper.get(key)
            return d.number(value, decimals) + mark if value is not None else d.missing

        row = [_measure(cell, "final_agree1", d, 2)] + ([shown("agree1", 2)] if keys else [])
        row += [_measure(cell, "final_lp", d, 3), _measure(cell, "final_lp_reference_code", d, 3)]
        return row + ([shown("lp", 4)] if keys else [])

    caption = d.compose(
        "Final-epoch agreement with the teacher (Agree@1, %) and probability loyalty {lp} of the "
        "students on {where}, mean ± std over {seeds}. {lp} is CuDFKD's Eq. 14; {code} follows "
        "the authors' code (1 − JS{quarter}), as their published values do.",
        lp=lp,
        code=code,
        where=where(analysis, d),
        seeds=d.escape(seeds_text(analysis)),
        quarter=d.sup("1/4"),
    )
    return Table(
        name="fidelity",
        title=d.compose("Agree@1 and {lp} on {where}", lp=lp, where=where(analysis, d)),
        caption=caption,
        label=label(analysis, "fidelity"),
        columns=tuple(columns),
        rows=_grouped(analysis, d, cells),
        notes=(_source_note(analysis, letters, keys, d), *notes_line(analysis, d)) if keys else (),
        provenance=provenance.sections,
    )


def _published_rows(analysis: Analysis, d: Dialect, pair: str, fields) -> list[Row]:
    """Published stability or cost figures of one pair (params/published.yaml `stability`), in
    italics under a line naming their source, for the methods of the report."""
    by_source: dict[str, list[Row]] = {}
    for method, cell in (analysis.published.stability.get(pair) or {}).items():
        values = [cell.get(key) for key, _ in fields]
        if all(value is None for value in values) or method not in analysis.names:
            continue
        shown = [
            d.italic(d.number(v, decimals)) if v is not None else d.missing
            for v, (_, decimals) in zip(values, fields, strict=True)
        ]
        row = Row((d.italic(d.escape(analysis.names[method])), *shown))
        by_source.setdefault(cell["source"], []).append(row)
    rows = []
    for key, found in by_source.items():
        source = analysis.published.source(key).short
        rows += [Row((d.italic(d.escape(f"Published: {source}")),), "group"), *found]
    return rows


def stability_table(analysis: Analysis, dialect: Dialect, provenance: Provenance) -> Table:
    d = dialect
    start = int(analysis.runs["stability_start_epoch"].iloc[0])
    mu, sigma2 = d.symbol("mu"), d.symbol("sigma2")
    columns = (
        Column(("Method",), "l"),
        Column((d.compose("{mu} (%)", mu=mu),)),
        Column((sigma2,)),
        Column((d.escape("Best (%)"),)),
        Column(("Best of", "seeds")),
    )

    def cells(cell: Mapping[str, Any]) -> list[str]:
        return [
            _measure(cell, "mu", d, 2),
            _measure(cell, "sigma2", d, 2),
            _measure(cell, "best_acc1", d, 2),
            d.number(cell["best_acc1_max"], 2),
        ]

    fields = (("mu", 1), ("sigma2", 2), ("best", 1), (None, 0))
    caption = d.compose(
        "Stability of the students' test Acc@1 on {where}: {mu} and {sigma2}, the mean and "
        f"variance of the per-epoch accuracy from epoch {start} on (CuDFKD Table 4), and the "
        "best epoch, an oracle selected on the test set (its maximum over the seeds beside it); "
        "mean ± std over {seeds}.",
        where=where(analysis, d),
        mu=mu,
        sigma2=sigma2,
        seeds=d.escape(seeds_text(analysis)),
    )
    return Table(
        name="stability",
        title=d.compose("Stability on {where}", where=where(analysis, d)),
        caption=caption,
        label=label(analysis, "stability"),
        columns=columns,
        rows=_grouped(analysis, d, cells, lambda pair: _published_rows(analysis, d, pair, fields)),
        notes=_published_note(analysis, d, ("mu", "sigma2", "best")),
        provenance=provenance.sections,
    )


def _published_note(analysis: Analysis, d: Dialect, keys: tuple[str, ...]) -> tuple[str, ...]:
    used = [
        cell["source"]
        for methods in analysis.published.stability.values()
        for method, cell in methods.items()
        if method in analysis.names and any(cell.get(key) is not None for key in keys)
    ]
    return tuple(
        d.italic("Italic")
        + ": "
        + d.escape(f"as published by {s.short}, selected as {s.selection}.")
        for s in (analysis.published.source(key) for key in dict.fromkeys(used))
    )


def time_unit(analysis: Analysis, column: str) -> tuple[str, float]:
    """Minutes where every cell's mean is under an hour, else hours."""
    means = [v for v in analysis.cells[f"{column}_mean"] if finite(v)]
    return ("min", 60.0) if means and max(means) < 1.0 else ("h", 1.0)


def cost_table(analysis: Analysis, dialect: Dialect, provenance: Provenance) -> Table:
    d = dialect
    threshold = f"{float(analysis.runs['accuracy_threshold'].iloc[0]):g}"
    units = {c: time_unit(analysis, c) for c in ("t_threshold_hours", "train_hours", "total_hours")}
    columns = (
        Column(("Method",), "l"),
        Column((d.subscript("t", threshold), f"({units['t_threshold_hours'][0]})")),
        Column(("Epochs", d.escape(f"to {threshold}%"))),
        Column(("Memory", "(GiB)")),
        Column(("Train", f"({units['train_hours'][0]})")),
        Column(("Total", f"({units['total_hours'][0]})")),
    )
    host = False

    def cells(cell: Mapping[str, Any]) -> list[str]:
        nonlocal host
        if cell["completed"] == 0:
            hours = epochs = d.missing
        elif cell["reached"] == 0:
            hours = epochs = "n.r."
        else:
            hours = _measure(cell, "t_threshold_hours", d, scale=units["t_threshold_hours"][1])
            epochs = _measure(cell, "epochs_to_threshold", d, 1)
            if cell["reached"] < cell["completed"]:  # a mean over the fast seeds alone flatters
                share = f" ({cell['reached']}/{cell['completed']})"
                hours, epochs = hours + share, epochs + share
        memory = d.number(cell["peak_memory_bytes"] / GIB, 2)
        if cell["memory_is_host"] and finite(cell["peak_memory_bytes"]):
            memory += d.sup("*")
            host = True
        return [
            hours,
            epochs,
            memory,
            _measure(cell, "train_hours", d, scale=units["train_hours"][1]),
            _measure(cell, "total_hours", d, scale=units["total_hours"][1]),
        ]

    # Published hours sit in the Total column, in hours whatever our unit.
    total_scale = units["total_hours"][1]
    fields = ((None, 0), (None, 0), ("memory_gb", 2), (None, 0), ("hours", 2))

    def published(pair: str) -> list[Row]:
        rows = _published_rows(analysis, d, pair, fields)
        if total_scale != 1.0:
            rows = [
                Row((*r.cells[:-1], r.cells[-1] + " h")) if r.kind == "data" else r for r in rows
            ]
        return rows

    rows = _grouped(analysis, d, cells, published)
    notes = []
    if (analysis.cells["completed"].gt(0) & analysis.cells["reached"].eq(0)).any():
        notes.append(d.escape(f"n.r.: no seed reached {threshold}%."))
    if host:
        notes.append(d.sup("*") + " peak resident host memory: the runs had no accelerator.")
    published_notes = _published_note(analysis, d, ("memory_gb", "hours"))
    if published_notes:
        published_notes += (d.escape("Published memory in GB and time in hours, as printed."),)
    notes += published_notes
    caption = d.compose(
        "Cost of a student on {where}: training time and epochs until its test Acc@1 first "
        f"reaches {threshold}% ((k/n): k of n seeds did), peak device memory, and training and "
        "total time per run; mean ± std over {seeds}.",
        where=where(analysis, d),
        seeds=d.escape(seeds_text(analysis)),
    )
    return Table(
        name="cost",
        title=d.compose("Cost on {where}", where=where(analysis, d)),
        caption=caption,
        label=label(analysis, "cost"),
        columns=columns,
        rows=rows,
        notes=tuple(notes),
        provenance=provenance.sections,
    )


def spread_table(analysis: Analysis, dialect: Dialect, provenance: Provenance) -> Table:
    d = dialect
    columns = (
        Column(("Method",), "l"),
        Column(("n",)),
        Column((d.escape("Mean ± std"),)),
        Column((d.escape("95% interval"),)),
        Column(("Min–max",)),
    )

    def cells(cell: Mapping[str, Any]) -> list[str]:
        n = str(cell["completed"]) + (f" + {cell['diverged']} div." if cell["diverged"] else "")
        low, high = cell["final_acc1_min"], cell["final_acc1_max"]
        span = f"{d.number(low, 2)}–{d.number(high, 2)}" if finite(low) else d.missing
        return [
            n,
            _measure(cell, "final_acc1", d, 2),
            d.interval(cell["final_acc1_ci_low"], cell["final_acc1_ci_high"], 2),
            span,
        ]

    caption = d.compose(
        "Final-epoch test Acc@1 (%) over the seeds on {where}: completed runs n (diverged runs "
        "counted apart), mean ± std, the 95% Student-t interval of the mean (from 3 seeds), and "
        "the range.",
        where=where(analysis, d),
    )
    return Table(
        name="spread",
        title=d.compose("Spread over seeds on {where}", where=where(analysis, d)),
        caption=caption,
        label=label(analysis, "spread"),
        columns=columns,
        rows=_grouped(analysis, d, cells),
        provenance=provenance.sections,
    )
