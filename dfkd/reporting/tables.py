"""`dfkd report`: one dataset's runs -> citable tables, a tidy CSV, headline metrics and curves.

Inputs are the `metrics.json` files of the distillation runs (in experiment order: pairs, then
methods, then seeds) and of the teachers, plus `params/published.yaml`. Outputs, each optional:

- `<dataset>_table.md` / `.tex`: a comparison table (methods x teacher->student pairs, final-epoch
  Acc@1, Agree@1 and L_p as mean ± std over seeds, published numbers beside them) and a
  stability table (CuDFKD Table 4: mu and sigma^2, the best-epoch oracle, time to threshold,
  memory, time), rendered by Jinja templates from one tidy per-run table;
- `<dataset>_runs.csv`: that tidy table, one row per run;
- `metrics/<dataset>.json`: headline numbers for `dvc metrics show` (mean final Acc@1 per cell);
- `<dataset>_curves.png`: test Acc@1 per epoch, mean over seeds with a ±std band.

The primary number is the final-epoch accuracy: without training data there is no validation
set, so a best epoch can only be picked on the test set; it appears only as a labelled oracle.
A diverged run stopped before the end of its schedule, so its numbers are not final-epoch
numbers: it is excluded from every mean and counted in the cell instead.

Every input is read and checked, and every output rendered in memory, before the first file is
written; each file is then replaced atomically, so bad input leaves the old reports untouched.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from dfkd.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from dfkd.config import read_yaml
from dfkd.data import dataset_info
from dfkd.errors import UserError
from dfkd.reporting.format import Latex, Markdown, ReportFacts, build_view, curves_png, render
from dfkd.reporting.verdicts import Verdict, cell_verdicts
from dfkd.stats import aggregate

# Columns of the tidy per-run table, in CSV order.
RUN_COLUMNS = (
    "protocol", "dataset", "teacher", "student", "pair", "method", "settings", "seed", "status",
    "epochs_planned", "epochs_completed", "divergence_epoch", "divergence_term",
    "final_acc1", "final_agree1", "final_lp", "final_lp_reference_code",
    "best_acc1", "best_acc1_epoch", "mu", "sigma2", "stability_start_epoch",
    "accuracy_threshold", "t_threshold_hours", "epochs_to_threshold",
    "train_hours", "total_hours", "peak_device_memory_bytes", "peak_host_memory_bytes",
    "teacher_acc1", "device", "device_name", "git_commit", "git_dirty", "suite_version",
    "lock_sha256", "lock_mismatches", "config_hash", "metrics_path",
    "published_acc1", "delta_acc1", "verdict", "compute",
)  # fmt: skip
# Summary entries that describe a finished schedule; blank for a diverged run.
RESULT_COLUMNS = (
    "final_acc1", "final_agree1", "final_lp", "final_lp_reference_code", "best_acc1",
    "best_acc1_epoch", "mu", "sigma2", "t_threshold_hours", "epochs_to_threshold",
)  # fmt: skip
COUNT_COLUMNS = ("best_acc1_epoch", "epochs_to_threshold", "divergence_epoch")
# Aggregated over the completed seeds of each (pair, method).
AGGREGATED = (*RESULT_COLUMNS[:5], *RESULT_COLUMNS[6:], "train_hours", "total_hours")
NUMBER_COLUMNS = (*RESULT_COLUMNS, "train_hours", "total_hours", "peak_device_memory_bytes",
                  "peak_host_memory_bytes", "teacher_acc1")  # fmt: skip
STATUSES = ("completed", "diverged")


def run_report(arguments: argparse.Namespace) -> int:
    """Reads and checks every input, renders every output in memory, then writes them."""
    title = dataset_info(arguments.dataset).title
    published = _published_for(read_yaml(Path(arguments.published)), arguments.dataset)
    runs, histories = load_runs(arguments.runs, arguments.dataset)
    protocol = runs["protocol"].iloc[0]
    teacher_acc1, origins = load_teachers(arguments.teachers, arguments.dataset, protocol)
    groups = group_table(runs)
    verdicts = cell_verdicts(groups, published["results"], published["verdict_tolerance"])
    runs = with_verdicts(runs, verdicts)
    facts = replace(
        report_facts(runs, published, arguments.dataset, title), teacher_origins=origins
    )

    outputs: dict[str, str | bytes] = {}
    templates = Path(arguments.templates)
    for out, template, dialect in (
        (arguments.markdown, "table.md.j2", Markdown()),
        (arguments.latex, "table.tex.j2", Latex()),
    ):
        if out:
            view = build_view(groups, teacher_acc1, published, facts, verdicts, dialect)
            outputs[out] = render(templates, template, view, dialect)
    if arguments.runs_csv:
        outputs[arguments.runs_csv] = runs.to_csv(index=False, lineterminator="\n")
    if arguments.curves:
        outputs[arguments.curves] = curves_png(runs, histories)
    headline = headline_metrics(groups, teacher_acc1) if arguments.metrics else None
    for path, content in outputs.items():
        if isinstance(content, bytes):
            atomic_write_bytes(path, content)
        else:
            atomic_write_text(path, content)
    if arguments.metrics:
        atomic_write_json(arguments.metrics, headline)
    return 0


# ---------------------------------------------------------------------------------------------
# Reading and checking the inputs


def read_metrics(path: str, kind: str) -> dict[str, Any]:
    """A finished job's metrics, checked as the workflow checks them (dfkd/records.py): NaN, a
    missing or malformed field, a completed run that stops early are one line, exit 2."""
    from dfkd.records import RecordError, read_record

    if not Path(path).is_file():
        raise UserError(f"{path}: metrics file not found; run the job that writes it first")
    try:
        return read_record(path, kind)
    except RecordError as error:
        raise UserError(f"{path} {error}; delete it and re-run its job") from None


def _require(record: Mapping[str, Any], path: str, *keys: str) -> Any:
    value: Any = record
    for depth, key in enumerate(keys):
        if not isinstance(value, Mapping) or key not in value:
            dotted = ".".join(keys[: depth + 1])
            raise UserError(f"{path}: missing '{dotted}'; the metrics file is incomplete")
        value = value[key]
    return value


def _check_same(path: str, what: str, value: Any, expected: Any, expected_from: str) -> None:
    if value != expected:
        raise UserError(
            f"{path}: {what} is {value!r} but {expected_from} has {expected!r}; "
            "one report covers the runs of one dataset and one protocol"
        )


def run_row(path: str, record: Mapping[str, Any]) -> dict[str, Any]:
    run = {
        key: _require(record, path, "run", key)
        for key in ("protocol", "dataset", "teacher", "student", "method", "seed")
    }
    status = _require(record, path, "status")
    if status not in STATUSES:
        raise UserError(f"{path}: unknown status {status!r}; expected one of {STATUSES}")
    summary = record.get("summary") or {}
    provenance = _require(record, path, "provenance")
    divergence = record.get("divergence") or {}
    row = {
        **run,
        "pair": f"{run['teacher']}-{run['student']}",
        "settings": _reported_settings(record.get("config") or {}),
        "status": status,
        "epochs_planned": record.get("epochs_planned"),
        "epochs_completed": record.get("epochs_completed"),
        "divergence_epoch": divergence.get("epoch"),
        "divergence_term": divergence.get("term"),
        **{
            column: summary.get(column) if status == "completed" else None
            for column in RESULT_COLUMNS
        },
        "stability_start_epoch": _require(record, path, "config", "statistics", "start_epoch"),
        "accuracy_threshold": _require(record, path, "config", "statistics", "accuracy_threshold"),
        "train_hours": summary.get("train_hours"),
        "total_hours": record.get("total_hours"),
        "peak_device_memory_bytes": record.get("peak_device_memory_bytes"),
        "peak_host_memory_bytes": record.get("peak_host_memory_bytes"),
        "teacher_acc1": (record.get("teacher") or {}).get("acc1"),
        "metrics_path": path,
    }
    for key in ("device", "device_name", "git_commit", "git_dirty", "suite_version", "config_hash"):
        row[key] = provenance.get(key)
    row["lock_sha256"] = provenance.get("lock_sha256")
    row["compute"] = _compute_text(provenance.get("compute"))
    mismatches = provenance.get("lock_mismatches")
    row["lock_mismatches"] = "; ".join(mismatches) if mismatches is not None else None
    for column in NUMBER_COLUMNS:
        value = row[column]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise UserError(f"{path}: {column} is {value!r}; expected a number or null")
    return row


def _reported_settings(config: Mapping[str, Any]) -> str:
    """The loop as it ran, then "name value; ..." of the named options its method reports
    (MethodConfig): a protocol shrinks schedules, and a reader must see what ran."""
    from dfkd.methods import METHODS

    parts = [_loop_summary(config["loop"])] if config.get("loop") else []
    implementation = config.get("implementation")
    if implementation in METHODS:
        hyperparameters = config.get("hyperparameters") or {}
        names = METHODS.get(implementation).config_class.reported_settings
        parts += [f"{name} {hyperparameters.get(name)}" for name in names]
    return "; ".join(parts)


def _loop_summary(loop: Mapping[str, Any]) -> str:
    """ "10 epochs x 20 rounds of 3 synthesis + 10 student steps, batch 32, student SGD lr
    0.0354 cosine" (LoopConfig, as recorded in a run's config)."""
    optimizer = loop["student_optimizer"]
    algorithm = {"sgd": "SGD", "adam": "Adam"}[optimizer["algorithm"]]
    decay = optimizer["schedule"]
    if decay == "multistep":
        epochs = ", ".join(str(epoch) for epoch in optimizer["milestones"])
        decay = f"x{optimizer['gamma']:g} at epochs {epochs}"
    return (
        f"{loop['epochs']} epochs x {loop['rounds_per_epoch']} rounds of "
        f"{loop['generator_steps_per_round']} synthesis + {loop['student_steps_per_round']} "
        f"student steps, batch {loop['batch_size']}, student {algorithm} lr "
        f"{optimizer['learning_rate']:.3g} {decay}"
    )


def _settings_by_method(runs: pd.DataFrame) -> list[tuple[str, list[tuple[str, str]], str]]:
    """(method, pairs, settings): pairs is empty where every pair of the method ran alike, and
    lists the (teacher, student) pairs of each variant otherwise."""
    variants: dict[str, dict[str, list[tuple[str, str]]]] = {}
    for method, teacher, student, text in zip(
        runs["method"], runs["teacher"], runs["student"], runs["settings"], strict=True
    ):
        pairs = variants.setdefault(str(method), {}).setdefault(str(text), [])
        if (teacher, student) not in pairs:
            pairs.append((str(teacher), str(student)))
    return [
        (method, [] if len(texts) == 1 else pairs, text)
        for method, texts in variants.items()
        for text, pairs in texts.items()
        if text
    ]


def load_runs(
    paths: Sequence[str], dataset: str
) -> tuple[pd.DataFrame, dict[int, list[dict[str, Any]]]]:
    """The tidy per-run table (in argument order) and each row's per-epoch history."""
    rows, histories, seen = [], {}, {}
    for index, path in enumerate(paths):
        record = read_metrics(path, "distillation")
        row = run_row(path, record)
        _check_same(path, "the dataset", row["dataset"], dataset, "--dataset")
        if rows:
            first = rows[0]
            for key in ("protocol", "stability_start_epoch", "accuracy_threshold"):
                _check_same(path, key, row[key], first[key], first["metrics_path"])
        key = (row["pair"], row["method"], row["seed"])
        if key in seen:
            raise UserError(f"{path}: the same run as {seen[key]} ({' '.join(map(str, key))})")
        seen[key] = path
        rows.append(row)
        histories[index] = list(record.get("history") or [])
    runs = pd.DataFrame(rows, columns=list(RUN_COLUMNS))
    for column in COUNT_COLUMNS:
        runs[column] = runs[column].astype("Int64")  # integers that may be missing
    return runs, histories


def load_teachers(
    paths: Sequence[str], dataset: str, protocol: str
) -> tuple[dict[str, tuple[float, float, int]], list[str]]:
    """Final test Acc@1 per teacher architecture, (mean, std, n) over its metrics files, and
    where each teacher came from: trained by the suite, or a released file and its hash."""
    acc1: dict[str, list[float | None]] = {}
    origins: list[str] = []
    for path in paths:
        record = read_metrics(path, "teacher")
        _check_same(
            path, "the dataset", _require(record, path, "run", "dataset"), dataset, "--dataset"
        )
        _check_same(
            path,
            "the protocol",
            _require(record, path, "run", "protocol"),
            protocol,
            "the distillation runs",
        )
        architecture = _require(record, path, "run", "architecture")
        acc1.setdefault(architecture, []).append((record.get("summary") or {}).get("final_acc1"))
        released = (record.get("provenance") or {}).get("released")
        if released:
            origins.append(
                f"{architecture} released ({released['source']}; {Path(released['file']).name}, "
                f"SHA-256 {released['sha256'][:16]}...)"
            )
        else:
            origins.append(f"{architecture} trained by the suite")
    summaries = {name: aggregate(values) for name, values in acc1.items()}
    means = {name: (s.mean, s.std, s.n) for name, s in summaries.items()}
    return means, list(dict.fromkeys(origins))


def with_verdicts(runs: pd.DataFrame, verdicts: Mapping[tuple[str, str], Verdict]) -> pd.DataFrame:
    """The runs with their cell's published Acc@1, delta (ours minus published) and verdict."""
    found = [verdicts.get(key) for key in zip(runs["pair"], runs["method"], strict=True)]
    return runs.assign(
        published_acc1=[v.published if v else None for v in found],
        delta_acc1=[v.delta if v else None for v in found],
        verdict=[_verdict_word(v) for v in found],
    )


def _compute_text(compute: Mapping[str, Any] | None) -> str:
    """ "eager: float32, not compiled, default optimizers" (dfkd/compute.py's describe())."""
    if not compute:
        return "eager (not recorded)"
    precision = f"{compute['autocast']} autocast" if compute["autocast"] else "float32"
    compiled = "compiled" if compute["compiled"] else "not compiled"
    return f"{compute['mode']}: {precision}, {compiled}, {compute['optimizers']} optimizers"


def _verdict_word(found: Verdict | None) -> str | None:
    if found is None:
        return None
    return "reproduced" if found.reproduced else "not reproduced"


def _published_for(published: Any, dataset: str) -> dict[str, Any]:
    needed = {"verdict_tolerance", "sources", "teachers", "results"}
    if not isinstance(published, Mapping) or not needed <= set(published):
        raise UserError(f"the published file needs the keys {', '.join(sorted(needed))}")
    return {
        "sources": published["sources"] or {},
        "teachers": (published["teachers"] or {}).get(dataset) or {},
        "results": (published["results"] or {}).get(dataset) or {},
        "notes": published.get("notes") or {},
        "verdict_tolerance": float(published["verdict_tolerance"]),
    }


# ---------------------------------------------------------------------------------------------
# Aggregation


def group_table(runs: pd.DataFrame, by: Sequence[str] = ("pair", "method")) -> pd.DataFrame:
    """One row per distinct value of the `by` columns, in experiment order (first column first,
    each in order of appearance): seed counts and aggregates."""
    orders = [{value: i for i, value in enumerate(dict.fromkeys(runs[c]))} for c in by]
    keys = sorted(
        dict.fromkeys(zip(*(runs[c] for c in by), strict=True)),
        key=lambda key: tuple(order[value] for order, value in zip(orders, key, strict=True)),
    )
    rows = []
    for key in keys:
        selected = pd.Series(True, index=runs.index)
        for column, value in zip(by, key, strict=True):
            selected &= runs[column] == value
        group = runs[selected]
        completed = group[group["status"] == "completed"]
        row: dict[str, Any] = {
            **dict(zip(by, key, strict=True)),
            "pair": group["pair"].iloc[0],
            "teacher": group["teacher"].iloc[0],
            "student": group["student"].iloc[0],
            "method": group["method"].iloc[0],
            "completed": len(completed),
            "diverged": int((group["status"] == "diverged").sum()),
            "reached": int(completed["t_threshold_hours"].notna().sum()),
        }
        for column in AGGREGATED:
            summary = aggregate(pd.to_numeric(completed[column]).astype(float).tolist())
            row[f"{column}_mean"], row[f"{column}_std"] = summary.mean, summary.std
            row[f"{column}_ci_low"], row[f"{column}_ci_high"] = summary.ci_low, summary.ci_high
        # The analogue of "the highest over all trials" (CuDFKD Table 1): an oracle, not a result.
        row["best_acc1_max"] = pd.to_numeric(completed["best_acc1"]).astype(float).max()
        # A CPU run has no device memory; its host peak (RSS) stands in, and is labelled so.
        device = pd.to_numeric(group["peak_device_memory_bytes"]).astype(float)
        host = pd.to_numeric(group["peak_host_memory_bytes"]).astype(float)
        row["peak_memory_bytes"] = device.fillna(host).max()
        row["memory_is_host"] = bool(device.isna().any())
        rows.append(row)
    return pd.DataFrame(rows)


def _json_number(value: Any) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def headline_metrics(
    groups: pd.DataFrame, teacher_acc1: Mapping[str, tuple[float, float, int]]
) -> dict[str, Any]:
    """What `dvc metrics show` lists: the mean final Acc@1 of each cell and each teacher's
    Acc@1, {pair: {method: acc1}, teacher: {architecture: acc1}}; undefined numbers are null.
    The spread, n and the other metrics are in the tables and the runs CSV."""
    metrics: dict[str, Any] = {}
    for row in groups.itertuples(index=False):
        metrics.setdefault(row.pair, {})[row.method] = _json_number(row.final_acc1_mean)
    metrics["teacher"] = {
        teacher: _json_number(teacher_acc1.get(teacher, (math.nan,))[0])
        for teacher in dict.fromkeys(groups["teacher"])
    }
    return metrics


def _source_text(sources: Mapping[str, Any], key: str) -> str:
    """ "<citation>; selected as <selection>" (params/published.yaml `sources`)."""
    source = sources.get(key)
    if not isinstance(source, Mapping) or not {"citation", "selection"} <= set(source):
        raise UserError(
            f"the published file's source '{key}' needs a 'citation' and a 'selection' (how its "
            "numbers were selected)"
        )
    return f"{source['citation']}; selected as {source['selection']}"


def report_facts(
    runs: pd.DataFrame, published: Mapping[str, Any], dataset: str, title: str
) -> ReportFacts:
    hardware = [
        f"{name or 'unknown'} (CPU)" if device == "cpu" else str(name or "unknown")
        for name, device in dict.fromkeys(zip(runs["device_name"], runs["device"], strict=True))
    ]
    commits = [
        "unknown" if not isinstance(commit, str) else commit[:7] + ("+dirty" if dirty else "")
        for commit, dirty in dict.fromkeys(zip(runs["git_commit"], runs["git_dirty"], strict=True))
    ]
    computes = list(dict.fromkeys(runs["compute"]))
    environments = [
        "no lock file (installed as a library)"
        if not isinstance(digest, str)
        else f"uv.lock {digest[:12]}, " + (f"except {differs}" if differs else "as locked")
        for digest, differs in dict.fromkeys(
            zip(runs["lock_sha256"], runs["lock_mismatches"], strict=True)
        )
    ]
    used = [published["teachers"].get(teacher, {}).get("source") for teacher in runs["teacher"]]
    used += [
        published["results"].get(pair, {}).get(method, {}).get("source")
        for pair, method in zip(runs["pair"], runs["method"], strict=True)
    ]
    sources = [(key, _source_text(published["sources"], key)) for key in dict.fromkeys(used) if key]
    settings = _settings_by_method(runs)
    notes = [
        (str(method), str(published.get("notes", {})[method]))
        for method in dict.fromkeys(runs["method"])
        if method in published.get("notes", {})
    ]
    # SOURCE_DATE_EPOCH (reproducible-builds.org) pins the date, so a re-render can be byte-equal.
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
    if epoch and not epoch.isdigit():
        raise UserError(f"SOURCE_DATE_EPOCH is {epoch!r}; expected seconds since 1970 or unset")
    utc = datetime.UTC
    now = datetime.datetime.fromtimestamp(int(epoch), utc) if epoch else datetime.datetime.now(utc)
    return ReportFacts(
        dataset=dataset,
        dataset_title=title,
        protocol=str(runs["protocol"].iloc[0]),
        hardware=hardware,
        suite_versions=[str(v or "unknown") for v in dict.fromkeys(runs["suite_version"])],
        commits=commits,
        environments=environments,
        seeds=sorted({int(seed) for seed in runs["seed"]}),
        accuracy_threshold=float(runs["accuracy_threshold"].iloc[0]),
        stability_start_epoch=int(runs["stability_start_epoch"].iloc[0]),
        sources=sources,
        settings=settings,
        notes=notes,
        computes=computes,
        date=now.date().isoformat(),
    )
