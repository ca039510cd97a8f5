"""Markup of the three output formats: every piece of a cell, a caption or a header is composed
from these methods, so the table builders never write Markdown, LaTeX or HTML themselves.

Numbers: a minus sign, not a hyphen; a spread as mean ± std (LaTeX: the std as a subscript,
``91.23_{±0.45}``, which keeps five pairs of a CIFAR table inside one column of text); a
missing value as an en dash. LaTeX escaping covers every special character of text taken from
the params files (``_ % & # $ { } ~ ^ \\``, straight and back quotes, Markdown code spans) and
the non-ASCII symbols the sources use, which pdfLaTeX's UTF-8 input does not set up.
"""

from __future__ import annotations

import html
import math
import re
from typing import Any


def finite(value: Any) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def fixed(value: float, decimals: int) -> str:
    """``value`` with ``decimals`` places and a true minus sign; never "-0.00"."""
    text = f"{float(value):.{decimals}f}"
    if text.startswith("-") and float(text) == 0:
        text = text[1:]
    return text.replace("-", "−")


class Dialect:
    """Markdown: GitHub-flavoured, with the little HTML GitHub renders (``<br>``, ``<sup>``)."""

    name = "markdown"
    extension = "md"
    missing = "–"
    pm = "±"
    arrow = "→"
    times = "×"

    def escape(self, text: str) -> str:
        # A pipe ends a table cell; asterisks and underscores around words start emphasis.
        return str(text).replace("|", r"\|").replace("*", r"\*")

    def number(self, value: Any, decimals: int) -> str:
        return self.literal(fixed(value, decimals)) if finite(value) else self.missing

    def literal(self, text: str) -> str:
        """Digits and signs of a formatted number."""
        return text

    def measure(
        self, mean: Any, std: Any, decimals: int, bold: bool = False, dagger: bool = False
    ) -> str:
        """mean ± std; the mean alone where the std is undefined (one seed); a dagger marks a
        mean over fewer runs than ran."""
        if not finite(mean):
            return self.missing
        text = fixed(mean, decimals)
        text = (self.bold(text) if bold else text) + (self.sup("†") if dagger else "")
        return text + (f" ± {fixed(std, decimals)}" if finite(std) else "")

    def interval(self, low: Any, high: Any, decimals: int) -> str:
        if not (finite(low) and finite(high)):
            return self.missing
        return self.literal(f"[{fixed(low, decimals)}, {fixed(high, decimals)}]")

    def bold(self, text: str) -> str:
        return f"**{text}**"

    def italic(self, text: str) -> str:
        return f"*{text}*"

    def sup(self, text: str) -> str:
        return f"<sup>{text}</sup>" if text else ""

    def stack(self, *parts: str, label: bool = False) -> str:
        """Lines of one cell; the second and later in a smaller size, except in a label."""
        return "<br>".join(part for part in parts if part)

    def code(self, text: str) -> str:
        return f"`{text}`"

    def subscript(self, base: str, sub: str) -> str:
        return f"{base}_{sub}"

    def symbol(self, name: str) -> str:
        return {"mu": "μ", "sigma2": "σ²", "delta": "Δ", "geq": "≥"}[name]

    def link(self, text: str, target: str) -> str:
        return f"[{text}]({target})"

    def compose(self, template: str, **parts: str) -> str:
        """``template``'s text escaped, with each ``{name}`` replaced by the marked-up part."""
        pieces = re.split(r"\{(\w+)\}", template)
        return "".join(
            parts[piece] if index % 2 else self.escape(piece) for index, piece in enumerate(pieces)
        )


class Html(Dialect):
    """A standalone page per table, for Snakemake's report viewer."""

    name = "html"
    extension = "html"

    def escape(self, text: str) -> str:
        return html.escape(str(text), quote=False)

    def bold(self, text: str) -> str:
        return f"<b>{text}</b>"

    def italic(self, text: str) -> str:
        return f"<i>{text}</i>"

    def code(self, text: str) -> str:
        return f"<code>{self.escape(text)}</code>"

    def measure(
        self, mean: Any, std: Any, decimals: int, bold: bool = False, dagger: bool = False
    ) -> str:
        if not finite(mean):
            return self.missing
        text = self.bold(fixed(mean, decimals)) if bold else fixed(mean, decimals)
        text += self.sup("†") if dagger else ""
        return text + (f"<small> ± {fixed(std, decimals)}</small>" if finite(std) else "")

    def subscript(self, base: str, sub: str) -> str:
        return f"{base}<sub>{sub}</sub>"

    def link(self, text: str, target: str) -> str:
        return f'<a href="{html.escape(target)}">{text}</a>'


# Characters with a meaning in LaTeX, and the non-ASCII symbols of the params files that
# pdfLaTeX's UTF-8 input leaves undefined (or defines only in math mode).
_LATEX = {
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
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
    "→": r"$\to$",
    "←": r"$\leftarrow$",
    "×": r"$\times$",
    "±": r"$\pm$",
    "≈": r"$\approx$",
    "≤": r"$\leq$",
    "≥": r"$\geq$",
    "−": r"$-$",
    "·": r"$\cdot$",
    "∞": r"$\infty$",
    "μ": r"$\mu$",
    "σ": r"$\sigma$",
    "α": r"$\alpha$",
    "β": r"$\beta$",
    "λ": r"$\lambda$",
    "τ": r"$\tau$",
    "Δ": r"$\Delta$",
    "²": r"\textsuperscript{2}",
    "¼": r"$\frac{1}{4}$",
    "½": r"$\frac{1}{2}$",
    "…": r"\dots{}",
    "†": r"$^\dagger$",
    "\u00a0": "~",
}


class Latex(Dialect):
    """A booktabs table for pdfLaTeX; needs only \\usepackage{booktabs}."""

    name = "latex"
    extension = "tex"
    missing = "--"
    pm = r"$\pm$"
    arrow = r"$\to$"
    times = r"$\times$"

    def escape(self, text: str) -> str:
        text = str(text)
        # Markdown code spans become typewriter text; quotes become LaTeX's curly quotes.
        parts = re.split(r"`([^`]*)`", text)
        return "".join(
            rf"\texttt{{{self._plain(part)}}}" if index % 2 else self._quotes(self._plain(part))
            for index, part in enumerate(parts)
        )

    def _plain(self, text: str) -> str:
        return "".join(_LATEX.get(character, character) for character in text).replace("`", "'")

    @staticmethod
    def _quotes(text: str) -> str:
        # "x" -> ``x''; an opening quote follows a space, a bracket or the start of the text.
        text = re.sub(r'(^|[\s(\[{])"', r"\1``", text)
        text = re.sub(r"(^|[\s(\[{])'", r"\1`", text)
        return text.replace('"', "''")

    def literal(self, text: str) -> str:
        return f"${text.replace('−', '-')}$"

    def measure(
        self, mean: Any, std: Any, decimals: int, bold: bool = False, dagger: bool = False
    ) -> str:
        if not finite(mean):
            return self.missing
        text = fixed(mean, decimals).replace("−", "-")
        text = rf"\mathbf{{{text}}}" if bold else text
        text += r"^{\dagger}" if dagger else ""
        if finite(std):
            text += rf"_{{\pm {fixed(std, decimals).replace('−', '-')}}}"
        return f"${text}$"

    def bold(self, text: str) -> str:
        return rf"\textbf{{{text}}}"

    def italic(self, text: str) -> str:
        return rf"\textit{{{text}}}"

    def sup(self, text: str) -> str:
        return rf"\textsuperscript{{{text}}}" if text else ""

    def stack(self, *parts: str, label: bool = False) -> str:
        shown = [part for part in parts if part]
        if len(shown) == 1:
            return shown[0]
        first, *rest = shown
        align, size = ("l", "") if label else ("r", r"\scriptsize ")
        return rf"\begin{{tabular}}[t]{{@{{}}{align}@{{}}}}{first}\\ {size}" + (
            rf"\\ {size}".join(rest) + r"\end{tabular}"
        )

    def code(self, text: str) -> str:
        return rf"\texttt{{{self._plain(text)}}}"

    def subscript(self, base: str, sub: str) -> str:
        return f"${base}_{{{sub}}}$"

    def symbol(self, name: str) -> str:
        return {"mu": r"$\mu$", "sigma2": r"$\sigma^2$", "delta": r"$\Delta$", "geq": r"$\geq$"}[
            name
        ]

    def link(self, text: str, target: str) -> str:
        return text


DIALECTS: tuple[Dialect, ...] = (Dialect(), Latex(), Html())
