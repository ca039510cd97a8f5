"""Renders the LaTeX tables of two reports as a paper would show them, one PNG per table:

- `digits-*.png`: the embedded default's report (run the main command first:
  `snakemake --cores all reports/digits_table.md`);
- `cifar10-*.png`: the CIFAR-sized fixture of the tests (5 pairs x 6 methods x 3 seeds,
  tests/report_fixture.py; invented accuracies, the suite's published numbers and names).

    python reports/examples/render.py

Each table is typeset by pdfLaTeX at natural size in a plain single-column article (a 345 pt
line, tests/latex.py), rendered by pdftoppm and cropped to what is printed; the figures and the
Markdown files of both reports are copied beside them. Prints every table's natural width.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPOSITORY))

from PIL import Image, ImageChops  # noqa: E402

from dfkd.reporting.report import TABLES  # noqa: E402
from tests.latex import render_pages, typeset  # noqa: E402
from tests.report_fixture import run_report, write_cifar_inputs  # noqa: E402

HERE = Path(__file__).resolve().parent


def _crop(path: Path) -> None:
    """Keeps what is printed on the page, with a small margin."""
    page = Image.open(path).convert("RGB")
    box = ImageChops.difference(page, Image.new("RGB", page.size, "white")).getbbox()
    left, top, right, bottom = box
    margin = 12
    kept = (max(0, left - margin), max(0, top - margin), right + margin, bottom + margin)
    page.crop(kept).save(path)


def render(out: Path, prefix: str, scratch: Path) -> None:
    files = [out / f"{prefix}_table.tex"] + [
        out / prefix / f"{name}.tex" for name in TABLES if name != "table"
    ]
    shown = [path for path in files if "\\begin{tabular}" in path.read_text()]
    result = typeset(shown, scratch / prefix)
    for old in HERE.glob(f"{prefix}-*.png"):
        old.unlink()
    pages = render_pages(result.pdf, scratch / prefix / "page")
    for path, page in zip(shown, pages, strict=True):
        name = "table" if path.name == f"{prefix}_table.tex" else path.stem
        target = HERE / f"{prefix}-{name}.png"
        shutil.copy(page, target)
        _crop(target)
        width = result.widths[str(path)]
        print(f"{target.relative_to(REPOSITORY)}: {width:.1f} pt of {result.linewidth:g} pt")
    shutil.copy(out / f"{prefix}_curves.png", HERE / f"{prefix}-curves.png")
    shutil.copy(out / prefix / "profile.png", HERE / f"{prefix}-profile.png")
    # The Markdown as GitHub shows it: the main table, linking to the others in the folder.
    shutil.copy(out / f"{prefix}_table.md", HERE / f"{prefix}_table.md")
    shutil.rmtree(HERE / prefix, ignore_errors=True)
    (HERE / prefix).mkdir()
    for path in (out / prefix).glob("*.md"):
        shutil.copy(path, HERE / prefix / path.name)


def main() -> None:
    digits = REPOSITORY / "reports"
    if not (digits / "digits_table.tex").is_file():
        sys.exit("run the main command first: snakemake --cores all reports/digits_table.md")
    with tempfile.TemporaryDirectory() as directory:
        scratch = Path(directory)
        render(digits, "digits", scratch)
        run_report(write_cifar_inputs(scratch / "fixture"), scratch / "reports", "cifar10")
        render(scratch / "reports", "cifar10", scratch)


if __name__ == "__main__":
    main()
