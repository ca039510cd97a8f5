"""The figures of a dataset report, each as PNG (for pages) and PDF (vector, for papers).

- Curves: test Acc@1 per epoch, a panel per teacher -> student pair in a grid; per method one
  thin line per seed and its mean in bold, the teacher's accuracy as a dashed line; the dataset
  and protocol in the title and one legend for the figure.
- Performance profile (Agarwal et al., NeurIPS 2021): the share of runs whose normalised score
  exceeds tau, per method, with a stratified-bootstrap 95% band.

Files are byte-stable: no creation date in the PDF, no software tag in the PNG.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dfkd.reporting.analysis import Analysis
from dfkd.reporting.facts import model_name
from dfkd.reporting.statistics import performance_profile

COLUMNS = 3  # panels per row of the curves' grid
METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None, "Producer": None}}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


def _save(figure: Any) -> dict[str, bytes]:
    files = {}
    for kind in ("png", "pdf"):
        buffer = io.BytesIO()
        figure.savefig(buffer, format=kind, dpi=150, metadata=METADATA[kind])
        files[kind] = buffer.getvalue()
    return files


def _colours(methods: Sequence[str]) -> dict[str, Any]:
    palette = _pyplot().get_cmap("tab10")
    return {method: palette(i % 10) for i, method in enumerate(methods)}


def curves(
    analysis: Analysis, histories: Mapping[int, Sequence[Mapping[str, Any]]]
) -> dict[str, bytes]:
    """{"png": ..., "pdf": ...} of the per-epoch test Acc@1 of every run."""
    return _saved(curves_figure(analysis, histories))


def profile(analysis: Analysis) -> dict[str, bytes]:
    """{"png": ..., "pdf": ...} of the performance profiles of the normalised scores."""
    return _saved(profile_figure(analysis))


def _saved(figure: Any) -> dict[str, bytes]:
    files = _save(figure)
    _pyplot().close(figure)
    return files


def curves_figure(analysis: Analysis, histories: Mapping[int, Sequence[Mapping[str, Any]]]):
    """The curves' figure (matplotlib), a panel per pair; the caller closes it."""
    pyplot = _pyplot()
    runs = analysis.runs
    pairs = analysis.pairs
    columns = min(COLUMNS, len(pairs))
    rows = math.ceil(len(pairs) / columns)
    height = 3.1 * rows + 0.9  # inches: the panels, the title and the legend
    figure, axes = pyplot.subplots(
        rows, columns, figsize=(4.0 * columns, height), squeeze=False, sharey=True
    )
    colours = _colours(analysis.methods)
    for axis, pair in zip(axes.flat, pairs, strict=False):
        for method in analysis.methods:
            selected = runs.index[(runs["pair"] == pair) & (runs["method"] == method)]
            completed = []
            for index in selected:
                curve = [float(record["acc1"]) for record in histories[index]]
                axis.plot(
                    range(1, len(curve) + 1), curve, color=colours[method], lw=0.7, alpha=0.35
                )
                if curve and runs.at[index, "status"] == "completed":
                    completed.append(curve)
            if completed:
                length = min(len(curve) for curve in completed)
                mean = np.mean([curve[:length] for curve in completed], axis=0)
                axis.plot(range(1, length + 1), mean, color=colours[method], lw=2.0)
        teacher = analysis.teachers.mean(analysis.pair_teacher(pair))
        if math.isfinite(teacher):
            axis.axhline(teacher, color="0.25", ls="--", lw=1.0)
        teacher_name, student_name = pair.split("-", 1)
        axis.set_title(f"{model_name(teacher_name)} → {model_name(student_name)}", fontsize=10)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
    for axis in axes.flat[len(pairs) :]:
        axis.set_visible(False)
    for axis in axes[:, 0]:
        axis.set_ylabel("test Acc@1 (%)")
    handles = [pyplot.Line2D([], [], color=colours[m], lw=2.0) for m in analysis.methods]
    labels = [analysis.names[m] for m in analysis.methods]
    handles += [
        pyplot.Line2D([], [], color="0.4", lw=0.7),
        pyplot.Line2D([], [], color="0.25", ls="--", lw=1.0),
    ]
    labels += ["one seed", "teacher"]
    figure.suptitle(
        f"{analysis.title}, protocol {analysis.protocol}: test Acc@1 per epoch "
        "(thin: each seed; bold: mean of the completed seeds)",
        fontsize=10,
    )
    figure.legend(
        handles, labels, loc="lower center", ncol=min(len(labels), 8), fontsize=8, frameon=False
    )
    figure.tight_layout(rect=(0, 0.45 / height, 1, 1))
    return figure


def profile_figure(analysis: Analysis):
    """The performance profiles' figure (matplotlib); the caller closes it."""
    pyplot = _pyplot()
    figure, axis = pyplot.subplots(figsize=(5.2, 3.6))
    colours = _colours(analysis.methods)
    scores = {
        m: [[s for s in pair if math.isfinite(s)] for pair in analysis.scores(m)]
        for m in analysis.aggregates
    }
    finite = [s for pairs in scores.values() for pair in pairs for s in pair]
    top = max(1.05, max(finite, default=1.0) + 0.05)
    # From just below the lowest score above chance: a diverged run (score 0) shows as the
    # share it takes off a curve at its left end.
    lowest = min((s for s in finite if s > 0), default=0.0)
    bottom = max(0.0, np.floor((lowest - 0.05) * 20) / 20)
    thresholds = np.linspace(bottom, top, 211)
    for method, by_pair in scores.items():
        share, low, high = performance_profile([p for p in by_pair if p], thresholds)
        axis.plot(thresholds, share, color=colours[method], lw=1.6, label=analysis.names[method])
        axis.fill_between(thresholds, low, high, color=colours[method], alpha=0.15, lw=0)
    axis.set_xlabel("normalised Acc@1 τ: (acc − chance) / (teacher − chance)")
    axis.set_ylabel("share of runs with score > τ")
    axis.set_xlim(bottom, top)
    axis.set_ylim(-0.02, 1.02)
    axis.grid(alpha=0.3)
    axis.set_title(
        f"{analysis.title}, protocol {analysis.protocol}: performance profiles over "
        f"{len(analysis.pairs)} pair{'s' if len(analysis.pairs) > 1 else ''}",
        fontsize=9,
    )
    if scores:
        axis.legend(fontsize=8, frameon=False, loc="lower left")
    figure.tight_layout()
    return figure
