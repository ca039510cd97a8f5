"""Reading and checking a report's inputs: the runs' and teachers' `metrics.json` files, the
published numbers (params/published.yaml) and the methods' display names (params/methods/).

Every input is read and checked before anything is computed or written: a problem is one line
naming the file and what to do (exit 2).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from dfkd.config import read_yaml
from dfkd.errors import UserError
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
    "lock_sha256", "lock_mismatches", "config_hash", "metrics_path", "compute",
)  # fmt: skip
# Summary entries that describe a finished schedule; blank for a diverged run.
RESULT_COLUMNS = (
    "final_acc1", "final_agree1", "final_lp", "final_lp_reference_code", "best_acc1",
    "best_acc1_epoch", "mu", "sigma2", "t_threshold_hours", "epochs_to_threshold",
)  # fmt: skip
COUNT_COLUMNS = ("best_acc1_epoch", "epochs_to_threshold", "divergence_epoch")
NUMBER_COLUMNS = (*RESULT_COLUMNS, "train_hours", "total_hours", "peak_device_memory_bytes",
                  "peak_host_memory_bytes", "teacher_acc1")  # fmt: skip
STATUSES = ("completed", "diverged")


# ---------------------------------------------------------------------------------------------
# Reading and checking the inputs


def read_metrics(path: str, kind: str) -> dict[str, Any]:
    """A finished job's metrics, checked as the workflow checks them (dfkd/records.py): NaN, a
    missing or malformed field, a completed run that stops early are one line, exit 2."""
    from dfkd.records import RecordError, read_record

    if not Path(path).is_file():
        raise UserError(f"{path}: metrics file not found; run the job that writes it first")
    try:
        return read_record(path, kind)  # type: ignore[arg-type]
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
    row["compute"] = compute_text(provenance.get("compute"))
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
    elif decay == "cosine" and (
        optimizer.get("minimum_learning_rate") or optimizer.get("cosine_epochs")
    ):
        length = optimizer.get("cosine_epochs")
        decay += f" to {optimizer.get('minimum_learning_rate', 0):.3g}"
        decay += f" over {length} epochs" if length else ""
    syntheses = loop.get("syntheses_per_round", 1)
    synthesis = (
        f"{syntheses} x {loop['generator_steps_per_round']}"
        if syntheses > 1
        else str(loop["generator_steps_per_round"])
    )
    warmup = loop.get("warmup_epochs", 0)
    head = f"{loop['epochs']} epochs"
    if warmup:
        head += (
            f" ({warmup} of warm-up: {loop['warmup_syntheses_per_epoch']} x "
            f"{loop['generator_steps_per_round']} synthesis steps each)"
        )
    images = (loop["epochs"] - warmup) * loop["rounds_per_epoch"] * loop["student_steps_per_round"]
    return (
        f"{head} x {loop['rounds_per_epoch']} rounds of {synthesis} synthesis + "
        f"{loop['student_steps_per_round']} student steps, batch {loop['batch_size']} "
        f"({images * loop['batch_size'] / 1e6:.3g} M student images), student {algorithm} lr "
        f"{optimizer['learning_rate']:.3g} {decay}"
    )


def settings_by_method(runs: pd.DataFrame) -> list[tuple[str, list[tuple[str, str]], str]]:
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


@dataclass(frozen=True)
class Runs:
    """The tidy per-run table (in argument order) and, by row index, each run's per-epoch
    history and resolved config."""

    table: pd.DataFrame
    histories: Mapping[int, list[dict[str, Any]]]
    configs: Mapping[int, dict[str, Any]]


def load_runs(paths: Sequence[str], dataset: str) -> Runs:
    rows, histories, configs, seen = [], {}, {}, {}
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
        configs[index] = dict(record.get("config") or {})
    table = pd.DataFrame(rows, columns=list(RUN_COLUMNS))
    for column in COUNT_COLUMNS:
        table[column] = table[column].astype("Int64")  # integers that may be missing
    return Runs(table, histories, configs)


@dataclass(frozen=True)
class Teachers:
    """Final test Acc@1 per teacher architecture over its metrics files, where each came from
    (trained by the suite, or a released file and its hash), and each one's resolved config."""

    acc1: Mapping[str, list[float]]
    origins: Sequence[str]
    configs: Mapping[str, dict[str, Any]]

    def mean(self, architecture: str) -> float:
        values = self.acc1.get(architecture) or []
        return aggregate(values).mean if values else float("nan")


def load_teachers(paths: Sequence[str], dataset: str, protocol: str) -> Teachers:
    acc1: dict[str, list[float]] = {}
    origins: list[str] = []
    configs: dict[str, dict[str, Any]] = {}
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
        final = (record.get("summary") or {}).get("final_acc1")
        if final is not None:
            acc1.setdefault(architecture, []).append(float(final))
        configs[architecture] = dict(record.get("config") or {})
        released = (record.get("provenance") or {}).get("released")
        if released:
            origins.append(
                f"{architecture} released ({released['source']}; {Path(released['file']).name}, "
                f"SHA-256 {released['sha256'][:16]}...)"
            )
        else:
            origins.append(f"{architecture} trained by the suite")
    return Teachers(acc1, list(dict.fromkeys(origins)), configs)


def compute_text(compute: Mapping[str, Any] | None) -> str:
    """ "eager: float32, not compiled, default optimizers" (dfkd/compute.py's describe())."""
    if not compute:
        return "eager (not recorded)"
    precision = f"{compute['autocast']} autocast" if compute["autocast"] else "float32"
    compiled = "compiled" if compute["compiled"] else "not compiled"
    return f"{compute['mode']}: {precision}, {compiled}, {compute['optimizers']} optimizers"


@dataclass(frozen=True)
class Source:
    """A published source (params/published.yaml `sources`)."""

    key: str
    citation: str  # where the numbers are printed, under what budget
    selection: str  # how they were selected, in words
    rule: str  # "best_epoch" or "final_epoch": which of our numbers compares with them
    short: str  # a few words for a table note


SELECTION_RULES = ("best_epoch", "final_epoch")


@dataclass(frozen=True)
class Published:
    """The published numbers of one dataset. Cells are the file's mappings: acc1, agree1, lp,
    source and an optional note; stability cells hold mu, sigma2, best, memory_gb, hours."""

    margin: float  # equivalence margin of the reproduction verdict, in points
    sources: Mapping[str, Source]
    teachers: Mapping[str, Mapping[str, Any]]  # architecture -> cell
    results: Mapping[str, Mapping[str, Mapping[str, Any]]]  # pair -> method -> cell
    notes: Mapping[str, str]  # method -> what a reader must know about its published numbers
    stability: Mapping[str, Mapping[str, Mapping[str, Any]]]  # pair -> method -> cell
    # method -> architecture -> cell: the teachers a method's own paper trained (MAD's)
    method_teachers: Mapping[str, Mapping[str, Mapping[str, Any]]]

    def result(self, pair: str, method: str) -> Mapping[str, Any]:
        return (self.results.get(pair) or {}).get(method) or {}

    def source(self, key: str) -> Source:
        return self.sources[key]


def load_published(path: str, dataset: str) -> Published:
    """The published file's numbers for ``dataset``, with every source they cite checked."""
    data = read_yaml(Path(path))
    needed = {"verdict_tolerance", "sources", "teachers", "results"}
    if not isinstance(data, Mapping) or not needed <= set(data):
        raise UserError(f"{path}: the published file needs the keys {', '.join(sorted(needed))}")
    teachers = (data["teachers"] or {}).get(dataset) or {}
    results = (data["results"] or {}).get(dataset) or {}
    stability = (data.get("stability") or {}).get(dataset) or {}
    method_teachers = {
        method: (datasets or {}).get(dataset) or {}
        for method, datasets in (data.get("method_teachers") or {}).items()
    }
    cells = [*teachers.values()]
    cells += [
        cell
        for table in (results, stability, method_teachers)
        for row in table.values()
        for cell in row.values()
    ]
    sources = {}
    for key in dict.fromkeys(cell.get("source") for cell in cells if isinstance(cell, Mapping)):
        sources[key] = _source(path, data["sources"] or {}, key)
    return Published(
        margin=float(data["verdict_tolerance"]),
        sources=sources,
        teachers=teachers,
        results=results,
        notes=data.get("notes") or {},
        stability=stability,
        method_teachers={method: found for method, found in method_teachers.items() if found},
    )


def _source(path: str, sources: Mapping[str, Any], key: Any) -> Source:
    source = sources.get(key)
    fields = ("citation", "selection", "rule", "short")
    if not isinstance(source, Mapping) or not set(fields) <= set(source):
        raise UserError(
            f"{path}: source '{key}' needs {', '.join(fields)} (where its numbers come from, how "
            "they were selected in words and as best_epoch or final_epoch, and a short name)"
        )
    if source["rule"] not in SELECTION_RULES:
        raise UserError(
            f"{path}: source '{key}': rule is {source['rule']!r}; expected one of "
            f"{', '.join(SELECTION_RULES)}"
        )
    return Source(str(key), *(str(source[name]) for name in fields))


def load_display_names(methods_dir: str, methods: Sequence[str]) -> dict[str, str]:
    """Each method's `display_name` from its params file, params/methods/<method>.yaml."""
    names = {}
    for method in methods:
        path = Path(methods_dir) / f"{method}.yaml"
        if not path.is_file():
            raise UserError(f"{path}: no params file for method '{method}'; pass --methods-dir")
        data = read_yaml(path)
        name = data.get("display_name") if isinstance(data, Mapping) else None
        if not isinstance(name, str) or not name:
            raise UserError(f"{path}: display_name: missing; the name reports print, e.g. CMI")
        names[method] = name
    return names


def report_date() -> str:
    """Today (UTC), or SOURCE_DATE_EPOCH's day (reproducible-builds.org), so that a re-render
    can be byte-equal."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
    if epoch and not epoch.isdigit():
        raise UserError(f"SOURCE_DATE_EPOCH is {epoch!r}; expected seconds since 1970 or unset")
    utc = datetime.UTC
    now = datetime.datetime.fromtimestamp(int(epoch), utc) if epoch else datetime.datetime.now(utc)
    return now.date().isoformat()
