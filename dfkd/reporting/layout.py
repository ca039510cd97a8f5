"""The shape every report table shares, filled with text already marked up for one dialect, and
the Jinja templates (package data, dfkd/reporting/templates) that lay it out.

A table has a short caption (what is shown, the primary number, the seeds), column headers of
one or more lines, rows (a method's cells; a group title spanning the table, such as a
teacher -> student pair; a rule), notes under the table (the marks it uses), and a provenance
block: sources and selection rules, settings, commit, lock, compute. The LaTeX file carries the
provenance as a comment, the Markdown and HTML files as a collapsible section after the table.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jinja2

from dfkd.errors import UserError
from dfkd.reporting.dialects import Dialect, Latex

TEMPLATES = "dfkd.reporting"  # the package holding templates/


@dataclass(frozen=True)
class Column:
    header: tuple[str, ...]  # one entry per header line, marked up
    align: Literal["l", "r", "c"] = "r"


@dataclass(frozen=True)
class Row:
    cells: tuple[str, ...]  # marked up; a group row has one cell, its title
    kind: Literal["data", "group", "rule"] = "data"


@dataclass(frozen=True)
class Table:
    name: str  # file stem: "table", "fidelity", ...
    title: str  # a heading, marked up
    caption: str  # one or two sentences, marked up
    label: str  # LaTeX label
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    notes: tuple[str, ...] = ()  # marked up lines under the table
    # (heading, lines) of plain, unescaped text: LaTeX carries it as a comment
    provenance: tuple[tuple[str, tuple[str, ...]], ...] = ()
    links: tuple[str, ...] = ()  # marked-up links to the other tables of the report
    empty: str = ""  # shown instead of the table where it has no rows
    tabcolsep: str = ""  # LaTeX column separation, where the default is too wide
    size: str = ""  # a LaTeX size command for the table body ("small"), where it is wide
    spaced: bool = False  # a little space after each row, where cells hold two lines

    @property
    def header_lines(self) -> int:
        return max((len(column.header) for column in self.columns), default=0)

    def header_row(self, line: int) -> list[str]:
        """The header cells of one line; columns with fewer lines are blank on the upper ones."""
        depth = self.header_lines
        return [
            column.header[line - (depth - len(column.header))]
            if line >= depth - len(column.header)
            else ""
            for column in self.columns
        ]


def comment_lines(provenance: Sequence[tuple[str, Sequence[str]]], width: int = 96) -> list[str]:
    """The provenance block as LaTeX comment lines, each under ``width`` characters."""
    lines = []
    for heading, entries in provenance:
        lines.append(f"% {heading}:")
        for entry in entries:
            wrapped = textwrap.wrap(entry, width - 6, break_on_hyphens=False) or [""]
            lines += [f"%   {wrapped[0]}"] + [f"%     {more}" for more in wrapped[1:]]
    return lines


def _environment(dialect: Dialect, templates: Path | None) -> jinja2.Environment:
    # LaTeX is full of braces and percent signs, so its template uses ((( ))) and ((* *)).
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
    loader: jinja2.BaseLoader = (
        jinja2.FileSystemLoader(templates)
        if templates is not None
        else jinja2.PackageLoader(TEMPLATES, "templates")
    )
    environment = jinja2.Environment(
        loader=loader,
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        **delimiters,
    )
    environment.filters["escape"] = dialect.escape
    environment.globals["comment_lines"] = comment_lines
    return environment


def render(table: Table, dialect: Dialect, templates: Path | None = None, **view: Any) -> str:
    """``table`` laid out by the dialect's template (the package's, or one in ``templates``)."""
    name = f"table.{dialect.extension}.j2"
    if templates is not None and not (templates / name).is_file():
        raise UserError(f"{templates / name}: template not found; pass a folder holding {name}")
    return _environment(dialect, templates).get_template(name).render(table=table, **view)
