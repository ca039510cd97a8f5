"""Typesets report tables with a real pdfLaTeX, as a paper would \\input them: a plain
single-column `article` (10 pt, US letter: a 345 pt line) with booktabs and nothing else.

Each outermost tabular records its natural width in the log, so a test can check that a table
fits the line at natural size, and pdftoppm renders the pages (reports/examples/).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import services

PREAMBLE = r"""\documentclass{article}
\usepackage{booktabs}
\pagestyle{empty}
\makeatletter
% Every outermost tabular is boxed once, its natural width written to the log, then placed.
\newcount\dfkd@depth
\let\dfkd@tabular\tabular
\let\dfkd@endtabular\endtabular
\renewenvironment{tabular}{\global\advance\dfkd@depth 1 \setbox0=\hbox\bgroup\dfkd@tabular}%
  {\dfkd@endtabular\egroup\ifnum\dfkd@depth=1 \typeout{DFKD-WIDTH \the\wd0}\fi
   \global\advance\dfkd@depth -1 \box0}
\makeatother
\begin{document}
\typeout{DFKD-LINEWIDTH \the\linewidth}
"""


@dataclass(frozen=True)
class Typeset:
    widths: dict[str, float]  # table file -> natural width of its tabular, in pt
    linewidth: float
    log: str
    pdf: Path


def require_latex() -> None:
    """pdfLaTeX and pdftoppm, installed from Debian's packages where missing (as .ci/run does);
    skips only where they cannot be installed."""
    if shutil.which("pdflatex") and shutil.which("pdftoppm"):
        return
    reason = services.why_not_installable(services.LATEX_PACKAGES)
    if reason:
        pytest.skip(f"the LaTeX test {reason}")
    services.install(services.LATEX_PACKAGES)


def typeset(tables: Sequence[Path], directory: Path, name: str = "tables") -> Typeset:
    """One document holding every table file, each on a page of its own."""
    directory.mkdir(parents=True, exist_ok=True)
    # Tables are named by their index: TeX wraps long log lines.
    body = "".join(
        f"\\typeout{{DFKD-TABLE {index}}}\n\\input{{{path}}}\n\\clearpage\n"
        for index, path in enumerate(tables)
    )
    (directory / f"{name}.tex").write_text(PREAMBLE + body + "\\end{document}\n")
    result = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", f"{name}.tex"],
        cwd=directory, capture_output=True, text=True,
    )  # fmt: skip
    log = (directory / f"{name}.log").read_text(errors="replace")
    assert result.returncode == 0, log[-3000:]
    widths: dict[str, float] = {}
    current = None
    for line in log.splitlines():
        if line.startswith("DFKD-TABLE "):
            current = str(tables[int(line.removeprefix("DFKD-TABLE "))])
        elif line.startswith("DFKD-WIDTH ") and current is not None:
            widths[current] = max(widths.get(current, 0.0), float(line[11:].removesuffix("pt")))
    linewidth = float(re.search(r"DFKD-LINEWIDTH ([\d.]+)pt", log).group(1))
    return Typeset(widths, linewidth, log, directory / f"{name}.pdf")


def render_pages(pdf: Path, prefix: Path, dpi: int = 110) -> list[Path]:
    """Each page of ``pdf`` as ``<prefix>-<n>.png``."""
    subprocess.run(["pdftoppm", "-r", str(dpi), "-png", str(pdf), str(prefix)], check=True)
    return sorted(prefix.parent.glob(f"{prefix.name}-*.png"))
