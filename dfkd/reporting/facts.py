"""What every table of a report states about its runs outside the caption: names, seeds, and
the provenance block (sources and selection rules, notes, settings, commit, lock, compute).

The provenance is plain text: the Markdown and HTML files escape it, the LaTeX file carries it
as a comment.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from dfkd.reporting.analysis import Analysis
from dfkd.reporting.dialects import Dialect
from dfkd.reporting.inputs import settings_by_method

Section = tuple[str, tuple[str, ...]]

_FAMILIES = (
    (r"resnet(\d+)", "ResNet-{}"),
    (r"wrn(\d+)_(\d+)", "WRN-{}-{}"),
    (r"vgg(\d+)", "VGG-{}"),
    (r"alexnet", "AlexNet"),
)


def model_name(name: str) -> str:
    """How papers print an architecture ("wrn40_2" -> "WRN-40-2"); other names as they are."""
    for pattern, shown in _FAMILIES:
        match = re.fullmatch(pattern, name)
        if match:
            return shown.format(*match.groups())
    return name


def pair_name(pair: str, dialect: Dialect) -> str:
    teacher, student = pair.split("-", 1)
    return (
        f"{dialect.escape(model_name(teacher))} {dialect.arrow} "
        f"{dialect.escape(model_name(student))}"
    )


def pair_header(pair: str, dialect: Dialect) -> tuple[str, str]:
    """Two header lines, the teacher over the student, as CuDFKD's Tables 1-2 print them."""
    teacher, student = pair.split("-", 1)
    return dialect.escape(model_name(teacher)), dialect.escape(model_name(student))


def seeds_text(analysis: Analysis) -> str:
    seeds = sorted({int(seed) for seed in analysis.runs["seed"]})
    listed = ", ".join(map(str, seeds))
    return f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''} ({listed})"


def where(analysis: Analysis, dialect: Dialect) -> str:
    """ "CIFAR-10 (protocol paper)"."""
    return f"{dialect.escape(analysis.title)} (protocol {dialect.code(analysis.protocol)})"


@dataclass(frozen=True)
class Provenance:
    sections: tuple[Section, ...]

    def plus(self, heading: str, lines: Sequence[str]) -> tuple[Section, ...]:
        return (*self.sections, (heading, tuple(lines))) if lines else self.sections


def run_sections(runs: pd.DataFrame, title: str, date: str) -> list[Section]:
    """What ran, where and from which code: the first sections of every provenance block."""
    hardware = [
        f"{name or 'unknown'} (CPU)" if device == "cpu" else str(name or "unknown")
        for name, device in dict.fromkeys(zip(runs["device_name"], runs["device"], strict=True))
    ]
    commits = [
        "unknown" if not isinstance(commit, str) else commit[:7] + ("+dirty" if dirty else "")
        for commit, dirty in dict.fromkeys(zip(runs["git_commit"], runs["git_dirty"], strict=True))
    ]
    environments = [
        "no lock file (installed as a library)"
        if not isinstance(digest, str)
        else f"uv.lock {digest[:12]}, " + (f"except {differs}" if differs else "as locked")
        for digest, differs in dict.fromkeys(
            zip(runs["lock_sha256"], runs["lock_mismatches"], strict=True)
        )
    ]
    versions = ", ".join(str(v or "unknown") for v in dict.fromkeys(runs["suite_version"]))
    diverged = int((runs["status"] == "diverged").sum())
    seeds = sorted({int(seed) for seed in runs["seed"]})
    return [
        (
            "Runs",
            (
                f"{title}, protocol {runs['protocol'].iloc[0]}, seeds "
                f"{', '.join(map(str, seeds))}: {len(runs)} runs"
                + (f", {diverged} diverged" if diverged else ""),
                "Primary number: the final-epoch test Acc@1; a best epoch can only be picked "
                "on the test set (there is no validation data), so it is reported as an oracle",
                f"Stability from epoch {int(runs['stability_start_epoch'].iloc[0])}; threshold "
                f"{float(runs['accuracy_threshold'].iloc[0]):g}% for the time to accuracy",
            ),
        ),
        ("Hardware and compute", (*hardware, *dict.fromkeys(runs["compute"]))),
        (
            "Code and environment",
            (
                f"suite version {versions}",
                "commit " + ", ".join(commits),
                *environments,
                f"rendered {date}",
            ),
        ),
    ]


def provenance(analysis: Analysis, date: str) -> Provenance:
    sections = run_sections(analysis.runs, analysis.title, date)
    if analysis.teachers.origins:
        sections.append(("Teachers", tuple(analysis.teachers.origins)))
    sources = _sources(analysis)
    if sources:
        sections.append(("Published sources", sources))
    notes = _notes(analysis)
    if notes:
        sections.append(("Notes on the published numbers", notes))
    settings = []
    for method, pairs, text in settings_by_method(analysis.runs):
        where_ran = " (" + ", ".join(f"{t} → {s}" for t, s in pairs) + ")" if pairs else ""
        settings.append(f"{analysis.names[method]} [{method}]{where_ran}: {text}")
    if settings:
        sections.append(("Settings", tuple(settings)))
    return Provenance(tuple(sections))


def _sources(analysis: Analysis) -> tuple[str, ...]:
    rules = {"best_epoch": "our best-epoch oracle", "final_epoch": "our final epoch"}
    # Only students' numbers are compared under a rule; teachers' are printed beside ours.
    compared = {
        cell.get("source") for row in analysis.published.results.values() for cell in row.values()
    }
    return tuple(
        f"{source.short} [{source.key}]: {source.citation}; selected as {source.selection}"
        + (f" (compared with {rules[source.rule]})" if source.key in compared else "")
        for source in analysis.published.sources.values()
    )


def cell_notes(analysis: Analysis) -> dict[str, list[tuple[str, str]]]:
    """Each distinct note of the published cells of the report's pairs and methods, in table
    order, with the (pair, method) cells it concerns; its position + 1 is its mark."""
    found: dict[str, list[tuple[str, str]]] = {}
    for pair in analysis.pairs:
        for method in analysis.methods:
            note = analysis.published.result(pair, method).get("note")
            if note:
                found.setdefault(str(note), []).append((pair, method))
    return found


def note_mark(analysis: Analysis, pair: str, method: str) -> str:
    """The number that marks a published cell's note ("" where it has none)."""
    note = analysis.published.result(pair, method).get("note")
    return str(list(cell_notes(analysis)).index(note) + 1) if note else ""


def published_marks(dialect: Dialect, letter: str, note: str) -> str:
    """A published number's superscript: its source letter, then its note's number."""
    return dialect.sup(",".join(mark for mark in (letter, note) if mark))


def notes_line(analysis: Analysis, dialect: Dialect) -> tuple[str, ...]:
    """The table note that says where the numbered marks are explained."""
    count = len(cell_notes(analysis))
    if not count:
        return ()
    numbers = "1" if count == 1 else f"1–{count}"
    return (
        dialect.escape(f"{numbers}: notes on the marked published numbers, in the provenance."),
    )


def _notes(analysis: Analysis) -> tuple[str, ...]:
    """The published file's notes per method, then per cell, numbered as the tables mark them,
    each with the cells it concerns."""
    published = analysis.published
    lines = [
        f"{analysis.names[method]}: {published.notes[method]}"
        for method in analysis.methods
        if method in published.notes
    ]
    for number, (note, cells) in enumerate(cell_notes(analysis).items(), start=1):
        by_pair: dict[str, list[str]] = {}
        for pair, method in cells:
            by_pair.setdefault(pair, []).append(analysis.names[method])
        where_ = "; ".join(
            f"{', '.join(names)} on {' → '.join(map(model_name, pair.split('-', 1)))}"
            for pair, names in by_pair.items()
        )
        lines.append(f"Note {number}: {note} ({where_})")
    return tuple(lines)
