"""Everything a dataset report states, computed once from its inputs, before any formatting.

Between-method statistics (P(A > B), the aggregate, the performance profile) score every run,
so that a method that diverges pays for it: a diverged run counts at chance accuracy
(normalised score 0), where the per-cell means leave it out and count it instead.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dfkd.data import dataset_info
from dfkd.reporting.cells import cell_values, group_table, numbers
from dfkd.reporting.inputs import Published, Runs, Teachers
from dfkd.reporting.reference import Reference, SeedCheck, applies, check_runs, check_teachers
from dfkd.reporting.statistics import (
    Estimate,
    Reproduction,
    improvement,
    interquartile_mean,
    normalised_score,
    reproduction,
    stratified_bootstrap,
)

# Which of our per-run numbers a published number's selection rule compares with.
RULE_COLUMNS = {"best_epoch": "best_acc1", "final_epoch": "final_acc1"}


@dataclass(frozen=True)
class Aggregate:
    """One method across the pairs: IQM and mean of the normalised score, over all its runs."""

    runs: int
    iqm: Estimate
    mean: Estimate


@dataclass(frozen=True)
class Analysis:
    dataset: str
    title: str
    protocol: str
    runs: pd.DataFrame  # per run, with its normalised score and reference comparison
    cells: pd.DataFrame  # per (pair, method)
    pairs: list[str]  # experiment order
    methods: list[str]
    names: Mapping[str, str]  # method -> display name
    teachers: Teachers
    published: Published
    chance: float
    test_size: int
    reproductions: Mapping[tuple[str, str], Reproduction]
    aggregates: Mapping[str, Aggregate]  # best IQM first; empty without teacher accuracies
    # (A, B) -> pair (or "" for the mean over pairs) -> P(A > B); A ranks above B
    improvements: Mapping[tuple[str, str], Mapping[str, Estimate]]
    reference: Reference | None  # where it applies to these runs
    checks: Sequence[SeedCheck]  # the teachers, then every run, against the reference

    def pair_teacher(self, pair: str) -> str:
        return str(self.cells.loc[self.cells["pair"] == pair, "teacher"].iloc[0])

    def cell(self, pair: str, method: str) -> Mapping | None:
        found = self.cells[(self.cells["pair"] == pair) & (self.cells["method"] == method)]
        return None if found.empty else found.iloc[0].to_dict()

    def scores(self, method: str) -> list[list[float]]:
        """Per pair where the method ran, its runs' normalised scores (diverged: 0)."""
        by_pair = []
        for pair in self.pairs:
            selected = (self.runs["pair"] == pair) & (self.runs["method"] == method)
            if selected.any():
                by_pair.append(numbers(self.runs.loc[selected, "score"]))
        return by_pair


def analyse(
    runs: Runs,
    teachers: Teachers,
    published: Published,
    names: Mapping[str, str],
    reference: Reference | None,
) -> Analysis:
    table = runs.table
    dataset, protocol = str(table["dataset"].iloc[0]), str(table["protocol"].iloc[0])
    info = dataset_info(dataset)
    chance = 100.0 / info.num_classes
    teacher_acc1 = {name: teachers.mean(name) for name in teachers.acc1}
    table = _with_scores(table, teacher_acc1, chance)
    if not applies(reference, dataset, protocol):
        reference = None
    checks: list[SeedCheck] = []
    if reference is not None:
        checks = check_teachers(reference, teachers.acc1, teachers.configs)
        run_checks = check_runs(reference, table, runs.configs)
        checks += run_checks
        table = table.assign(
            reference_final_acc1=[check.reference for check in run_checks],
            reference_status=[check.status for check in run_checks],
        )
    pairs = list(dict.fromkeys(table["pair"]))
    methods = list(dict.fromkeys(table["method"]))
    analysis = Analysis(
        dataset=dataset,
        title=info.title,
        protocol=protocol,
        runs=table,
        cells=group_table(table),
        pairs=pairs,
        methods=methods,
        names=names,
        teachers=teachers,
        published=published,
        chance=chance,
        test_size=info.test_size,
        reproductions=_reproductions(table, published, info.test_size),
        aggregates={},
        improvements={},
        reference=reference,
        checks=checks,
    )
    aggregates = _aggregates(analysis) if table["score"].notna().any() else {}
    ranked = list(aggregates) + [m for m in methods if m not in aggregates]
    improvements = _improvements(analysis, ranked)
    return Analysis(**{**analysis.__dict__, "aggregates": aggregates, "improvements": improvements})


def _with_scores(table: pd.DataFrame, teacher_acc1: Mapping[str, float], chance: float):
    """Each run's normalised score; a diverged run scores 0 (chance), a run without its
    teacher's accuracy nothing."""
    scores = []
    for row in table.itertuples(index=False):
        teacher = teacher_acc1.get(row.teacher, math.nan)
        accuracy = row.final_acc1 if row.status == "completed" else chance
        score = normalised_score(float(accuracy), teacher, chance)
        scores.append(score if math.isfinite(score) else math.nan)
    return table.assign(score=scores)


def _reproductions(
    table: pd.DataFrame, published: Published, test_size: int
) -> dict[tuple[str, str], Reproduction]:
    found = {}
    for pair, method in dict.fromkeys(zip(table["pair"], table["method"], strict=True)):
        cell = published.result(pair, method)
        if cell.get("acc1") is None:
            continue
        column = RULE_COLUMNS[published.source(cell["source"]).rule]
        values = cell_values(table, pair, method, column)
        result = reproduction(values, float(cell["acc1"]), published.margin, test_size)
        if result is not None:
            found[(pair, method)] = result
    return found


def _aggregates(analysis: Analysis) -> dict[str, Aggregate]:
    aggregates = {}
    for method in analysis.methods:
        scores = [[s for s in pair if math.isfinite(s)] for pair in analysis.scores(method)]
        scores = [pair for pair in scores if pair]
        if not scores:
            continue
        aggregates[method] = Aggregate(
            runs=sum(len(pair) for pair in scores),
            iqm=stratified_bootstrap(scores, interquartile_mean),
            mean=stratified_bootstrap(scores, lambda values: np.mean(values, axis=-1)),
        )
    return dict(sorted(aggregates.items(), key=lambda item: -item[1].iqm.value))


def _improvements(
    analysis: Analysis, ranked: Sequence[str]
) -> dict[tuple[str, str], dict[str, Estimate]]:
    """P(A > B) on final-epoch Acc@1 (a diverged run at chance) for every two methods."""
    table = analysis.runs
    accuracy = np.where(
        table["status"] == "completed", numbers(table["final_acc1"]), analysis.chance
    )
    by_cell: dict[tuple[str, str], list[float]] = {}
    for key, value in zip(zip(table["pair"], table["method"], strict=True), accuracy, strict=True):
        by_cell.setdefault(key, []).append(float(value))
    found: dict[tuple[str, str], dict[str, Estimate]] = {}
    for a, b in itertools.combinations(ranked, 2):
        shared = [p for p in analysis.pairs if (p, a) in by_cell and (p, b) in by_cell]
        if not shared:
            continue
        per_pair = {p: improvement([by_cell[(p, a)]], [by_cell[(p, b)]]) for p in shared}
        if len(shared) > 1:
            per_pair[""] = improvement(
                [by_cell[(p, a)] for p in shared], [by_cell[(p, b)] for p in shared]
            )
        found[(a, b)] = per_pair
    return found
