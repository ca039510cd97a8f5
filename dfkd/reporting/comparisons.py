"""The comparison tables of a dataset report: how sure each statement is.

- ``reproduction``: ours minus each published Acc@1, ours selected by the published number's
  rule, with its 95% interval, the test set's binomial standard error and a verdict;
- ``reference``: the embedded default against its committed reference, seed by seed;
- ``improvement``: P(A > B) over seeds for every two methods, per pair and over all pairs;
- ``aggregate``: the IQM and mean of the normalised accuracy across pairs.

The statistics are computed in dfkd/reporting/analysis.py and statistics.py.
"""

from __future__ import annotations

from dfkd.reporting.analysis import RULE_COLUMNS, Analysis
from dfkd.reporting.dialects import Dialect, fixed
from dfkd.reporting.facts import (
    Provenance,
    note_mark,
    notes_line,
    pair_header,
    pair_name,
    published_marks,
    where,
)
from dfkd.reporting.layout import Column, Row, Table
from dfkd.reporting.reference import DIFFERS, EQUAL, OTHER_RECIPE
from dfkd.reporting.statistics import BOOTSTRAP_REPETITIONS, BOOTSTRAP_SEED
from dfkd.reporting.tables import label, method_name

BOOTSTRAP = (
    f"Stratified bootstrap: {BOOTSTRAP_REPETITIONS:,} resamples of the runs within each pair "
    f"(numpy's default_rng, seed {BOOTSTRAP_SEED}); 95% percentile intervals. A bootstrap "
    "knows only the seeds that ran: with 2 or 3 per cell its intervals are narrow (a method "
    "that wins every pairing of 3 seeds gets [1.00, 1.00]), so read them with n"
)


def reproduction_table(analysis: Analysis, dialect: Dialect, provenance: Provenance) -> Table:
    d = dialect
    delta = d.symbol("delta")
    margin = f"{analysis.published.margin:g}"
    columns = (
        Column(("Method",), "l"),
        Column(("Rule",), "l"),
        Column(("Ours",)),
        Column(("Published",)),
        Column((delta,)),
        Column((d.escape("95% CI"),)),
        Column(("SE",)),
        Column(("Verdict",), "l"),
    )
    rows: list[Row] = []
    for pair in analysis.pairs:
        found = [
            (m, analysis.reproductions[(pair, m)])
            for m in analysis.methods
            if (pair, m) in analysis.reproductions
        ]
        if not found:
            continue
        rows.append(Row((d.italic(pair_name(pair, d)),), "group"))
        for method, result in found:
            rule = analysis.published.source(analysis.published.result(pair, method)["source"])
            rows.append(
                Row(
                    (
                        method_name(analysis, method, d),
                        "best" if rule.rule == "best_epoch" else "final",
                        d.number(result.ours, 2),
                        d.number(result.published, 2)
                        + published_marks(d, "", note_mark(analysis, pair, method)),
                        d.number(result.delta, 2),
                        d.interval(result.delta_low, result.delta_high, 2),
                        d.number(result.floor, 2),
                        result.verdict or d.escape(f"n = {result.n}"),
                    )
                )
            )
    caption = d.compose(
        "Ours minus published test Acc@1 ({delta}, points) on {where}, ours selected as the "
        "published number was (best: the best-epoch oracle; final: the final epoch), with its 95% "
        "interval over seeds beside the test set's binomial standard error (SE). Consistent: the "
        f"interval lies within ±{margin} points; below or above: it excludes 0 and that margin; "
        "inconclusive: it holds 0 but reaches past the margin.",
        delta=delta,
        where=where(analysis, d),
    )
    lines = [
        f"Ours: the mean over the completed seeds of each run's {column} "
        f"({'best epoch, selected on the test set' if rule == 'best_epoch' else 'final epoch'}) "
        f"for a {rule.replace('_', '-')} source"
        for rule, column in RULE_COLUMNS.items()
    ]
    lines += [
        f"Interval: Student-t, 95%, from 3 seeds (below 3 none, and no verdict); the "
        f"equivalence margin is the published file's verdict_tolerance, {margin} points",
        f"SE: 100 x sqrt(p (1 - p) / N) at the published accuracy p, N = {analysis.test_size:,} "
        "test images",
    ]
    return Table(
        name="reproduction",
        title=d.compose("Reproduction on {where}", where=where(analysis, d)),
        caption=caption,
        label=label(analysis, "reproduction"),
        columns=columns,
        rows=tuple(rows),
        empty=d.escape(f"No published Acc@1 for {analysis.title} in the published file."),
        notes=notes_line(analysis, d) if rows else (),
        tabcolsep="4pt",
        size="small",
        provenance=provenance.plus("Statistics", lines),
    )


def reference_table(analysis: Analysis, dialect: Dialect, provenance: Provenance) -> Table:
    d = dialect
    reference = analysis.reference
    seeds = sorted({int(s) for s in analysis.runs["seed"]})
    columns = (
        Column(("Method",), "l"),
        *(Column((f"Seed {s}",)) for s in seeds),
        Column(("Verdict",), "l"),
    )
    images = analysis.test_size

    def shown(check) -> str:
        if check.status == EQUAL:
            return d.stack(d.number(check.ours, 2), d.escape("= ref."))
        if check.status == DIFFERS:
            count = round(abs(check.difference) * images / 100.0)
            sign = "+" if check.difference > 0 else ""
            return d.stack(
                d.number(check.ours, 2),
                d.escape(f"{sign}{fixed(check.difference, 2)} ({count} of {images})"),
            )
        return d.stack(d.number(check.ours, 2), d.escape(check.status))

    rows: list[Row] = []
    for check in (c for c in analysis.checks if c.seed is None):
        architecture = check.key.split("/", 1)[1]
        row = [d.escape(f"Teacher ({architecture})"), shown(check)]
        row += [""] * (len(seeds) - 1) + [d.escape(check.status)]
        rows.append(Row(tuple(row)))
    runs = [c for c in analysis.checks if c.seed is not None]
    for pair in analysis.pairs:
        if len(analysis.pairs) > 1:
            rows.append(Row((d.italic(pair_name(pair, d)),), "group"))
        for method in analysis.methods:
            mine = {c.seed: c for c in runs if c.key == f"{pair}/{method}"}
            if not mine:
                continue
            statuses = {c.status for c in mine.values()}
            verdict = statuses.pop() if len(statuses) == 1 else DIFFERS
            rows.append(
                Row(
                    (
                        method_name(analysis, method, d),
                        *(shown(mine[s]) if s in mine else d.missing for s in seeds),
                        d.escape(verdict),
                    )
                )
            )
    compared = [c for c in analysis.checks if c.status in (EQUAL, DIFFERS)]
    differ = [c for c in compared if c.status == DIFFERS]
    other = [c for c in analysis.checks if c.status == OTHER_RECIPE]
    if reference is None:
        summary, caption = "", ""
    else:
        teachers = sum(c.seed is None for c in compared)
        what = f"{len(compared) - teachers} runs" + (
            f" and {teachers} teacher{'s' if teachers > 1 else ''}" if teachers else ""
        )
        summary = (
            f"all {what} compared equal their reference exactly"
            if compared and not differ
            else f"{len(differ)} of the {what} compared differ from their reference"
        )
        if other:
            summary += f"; {len(other)} ran another recipe than the reference and are not compared"
        caption = d.compose(
            "Final-epoch test Acc@1 (%) on {where}, per seed, against the suite's committed "
            "reference runs (commit {commit}; {environment}): CPU runs are deterministic, and "
            "{summary}.",
            where=where(analysis, d),
            commit=d.escape(reference.commit),
            environment=d.escape(reference.environment),
            summary=d.escape(summary),
        )
    empty = d.escape(
        f"No committed reference for {analysis.title} (protocol {analysis.protocol}); the "
        "suite's reference, benchmarks/results/seed_robustness.json, holds the embedded "
        "default's runs."
    )
    return Table(
        name="reference",
        title=d.compose("Reference runs on {where}", where=where(analysis, d)),
        caption=caption,
        label=label(analysis, "reference"),
        columns=columns,
        rows=tuple(rows) if reference is not None else (),
        empty=empty,
        provenance=provenance.plus(
            "Reference",
            [
                f"{reference.path}: the embedded default over more seeds on a fresh clone "
                "(benchmarks/seed_robustness.py), each run's final Acc@1 and recipe"
            ]
            if reference is not None
            else [],
        ),
        spaced=True,
    )


def improvement_table(analysis: Analysis, dialect: Dialect, provenance: Provenance) -> Table:
    d = dialect
    several = len(analysis.pairs) > 1
    columns = [Column(("", "B"), "l"), *(Column(pair_header(p, d)) for p in analysis.pairs)]
    columns += [Column(("All", "pairs"))] if several else []
    rows, previous = [], None
    for (a, b), estimates in analysis.improvements.items():
        if a != previous:
            title = d.compose("P({a} > B)", a=method_name(analysis, a, d))
            rows.append(Row((d.italic(title),), "group"))
        previous = a
        cells = [method_name(analysis, b, d)]
        for pair in [*analysis.pairs, *([""] if several else [])]:
            found = estimates.get(pair)
            cells.append(
                d.missing
                if found is None
                else d.stack(d.number(found.value, 2), d.interval(found.low, found.high, 2))
            )
        rows.append(Row(tuple(cells)))
    diverged = bool((analysis.runs["status"] == "diverged").any())
    caption = d.compose(
        "Probability of improvement P(A > B) on {where}: the share of seed pairs in which A's "
        "final-epoch test Acc@1 beats B's (ties count ½), per teacher → student pair"
        + (" and averaged over the pairs" if several else "")
        + ", with 95% bootstrap intervals; A ranks above B in the aggregate.",
        where=where(analysis, d),
    )
    return Table(
        name="improvement",
        title=d.compose("P(A > B) on {where}", where=where(analysis, d)),
        caption=caption,
        label=label(analysis, "improvement"),
        columns=tuple(columns),
        rows=tuple(rows),
        notes=(d.escape("A diverged run counts at chance accuracy."),) if diverged else (),
        empty=d.escape("Fewer than two methods: nothing to compare."),
        tabcolsep="4pt",
        size="small",
        spaced=True,
        provenance=provenance.plus(
            "Statistics",
            [
                "P(A > B) = U / (n_A n_B), the Mann-Whitney U statistic of A's over B's seeds "
                "(rliable's probability_of_improvement); over pairs, its mean",
                BOOTSTRAP.replace("the runs", "A's and B's seeds"),
            ],
        ),
    )


def aggregate_table(analysis: Analysis, dialect: Dialect, provenance: Provenance) -> Table:
    d = dialect
    columns = (
        Column(("Method",), "l"),
        Column(("Runs",)),
        Column(("IQM",)),
        Column((d.escape("95% CI"),)),
        Column(("Mean",)),
        Column((d.escape("95% CI"),)),
    )
    rows = tuple(
        Row(
            (
                method_name(analysis, method, d),
                str(found.runs),
                d.number(found.iqm.value, 3),
                d.interval(found.iqm.low, found.iqm.high, 3),
                d.number(found.mean.value, 3),
                d.interval(found.mean.low, found.mean.high, 3),
            )
        )
        for method, found in analysis.aggregates.items()
    )
    pairs = len(analysis.pairs)
    caption = d.compose(
        "Normalised final-epoch test Acc@1, (acc − chance) / (teacher − chance), over every run "
        f"of the {pairs} teacher → student pair{'s' if pairs > 1 else ''} of "
        "{where}: interquartile mean (IQM) and mean, with 95% stratified-bootstrap intervals; "
        "best IQM first.",
        where=where(analysis, d),
    )
    chance = f"{analysis.chance:g}"
    return Table(
        name="aggregate",
        title=d.compose("Aggregate on {where}", where=where(analysis, d)),
        caption=caption,
        label=label(analysis, "aggregate"),
        columns=columns,
        rows=rows,
        notes=(
            d.escape(f"0: chance ({chance}%); 1: the teacher's accuracy. A diverged run scores 0."),
        ),
        empty=d.escape("No teacher accuracy to normalise by: pass the teachers' metrics."),
        provenance=provenance.plus(
            "Statistics",
            [
                "IQM: the mean of the middle 50% of the pooled runs (scipy.stats.trim_mean, 0.25)",
                BOOTSTRAP,
                "Teacher: our teacher's final-epoch Acc@1 (the mean over its seeds)",
            ],
        ),
    )
