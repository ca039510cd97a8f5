"""The `metrics.json` of a finished job, read back strictly.

A finished teacher or distillation run is known by its `metrics.json` (written last, see
dfkd/outputs.py). The workflow's start checks and the reports read it; both use `read_record`,
so a record that is not what the suite writes (invalid JSON, NaN or infinity, a field of the
wrong type, a completed run whose history stops before its last epoch or before the statistics
window) is one problem line, never a traceback or a number averaged in silently.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

Kind = Literal["distillation", "teacher"]
STATUSES = ("completed", "diverged")
# Summary entries of a completed run that the tables print; each a finite number.
REQUIRED_NUMBERS = ("final_acc1", "final_agree1", "final_lp", "best_acc1", "mu", "sigma2")
OPTIONAL_NUMBERS = ("final_lp_reference_code", "t_threshold_hours", "train_hours")


class RecordError(ValueError):
    """A record that is not what the suite writes; the message says which field and why."""


def _reject_constant(name: str) -> float:
    raise RecordError(f"holds {name}, which the suite never writes")


def load_json(path: str | Path) -> Any:
    """JSON as the suite writes it: NaN and infinity (which Python's reader accepts) refused."""
    text = Path(path).read_text()
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise RecordError(f"is not valid JSON ({error.msg}, line {error.lineno})") from None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _get(record: Mapping[str, Any], dotted: str) -> Any:
    value: Any = record
    for key in dotted.split("."):
        if not isinstance(value, Mapping) or key not in value:
            raise RecordError(f"has no '{dotted}'")
        value = value[key]
    return value


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise RecordError(message)


def _check_history(record: Mapping[str, Any], numbered: bool) -> list[Mapping[str, Any]]:
    """The per-epoch history; `numbered`: epochs 1, 2, ... (a released teacher's one entry,
    measured before any epoch, is epoch 0)."""
    history = _get(record, "history")
    _require(isinstance(history, list), "has a 'history' that is not a list")
    for position, epoch in enumerate(history, start=1):
        _require(isinstance(epoch, Mapping), f"has history entry {position} not a mapping")
        _require(
            not numbered or epoch.get("epoch") == position,
            f"has history entry {position} without 'epoch: {position}'",
        )
        _require(_number(epoch.get("acc1")), f"has no finite 'acc1' in history entry {position}")
    return history


def check_run(record: Mapping[str, Any]) -> None:
    """Raises RecordError unless `record` is a distillation run's metrics as the suite writes."""
    _require(_get(record, "kind") == "distillation", "is not the metrics of a distillation run")
    status = _get(record, "status")
    _require(status in STATUSES, f"has status {status!r}; expected one of {', '.join(STATUSES)}")
    for key in ("protocol", "dataset", "teacher", "student", "method"):
        _require(isinstance(_get(record, f"run.{key}"), str), f"has a 'run.{key}' not a name")
    _require(_integer(_get(record, "run.seed")), "has a 'run.seed' that is not an integer")
    planned, completed = _get(record, "epochs_planned"), _get(record, "epochs_completed")
    _require(_integer(planned) and planned > 0, "has no positive 'epochs_planned'")
    _require(_integer(completed) and completed >= 0, "has no 'epochs_completed'")
    history = _check_history(record, numbered=True)
    _require(
        len(history) == completed,
        f"has {len(history)} history entries for {completed} completed epochs",
    )
    start = _get(record, "config.statistics.start_epoch")
    _require(_integer(start), "has no integer 'config.statistics.start_epoch'")
    summary = _get(record, "summary")
    _require(isinstance(summary, Mapping), "has a 'summary' that is not a mapping")
    if status != "completed":
        return
    _require(
        completed == planned, f"is completed after {completed} of its {planned} planned epochs"
    )
    _require(
        completed >= start,
        f"is completed after {completed} epochs, before its statistics window ({start})",
    )
    for key in REQUIRED_NUMBERS:
        _require(_number(summary.get(key)), f"has no finite 'summary.{key}'")
    for key in OPTIONAL_NUMBERS:
        value = summary.get(key)
        _require(value is None or _number(value), f"has a 'summary.{key}' that is not a number")


def check_teacher(record: Mapping[str, Any]) -> None:
    """Raises RecordError unless `record` is a teacher's metrics as the suite writes them."""
    _require(_get(record, "kind") == "teacher", "is not the metrics of a teacher")
    _require(_get(record, "status") == "completed", "is not a completed teacher")
    _require(_number(_get(record, "summary.final_acc1")), "has no finite 'summary.final_acc1'")
    _check_history(record, numbered=False)


def check_identity(record: Mapping[str, Any], kind: Kind) -> None:
    """What the workflow knows a finished job by: the digest of its settings and, for a
    teacher, the SHA-256 of the model file it wrote (dfkd/freshness.py)."""
    _require(isinstance(_get(record, "provenance.config_hash"), str), "has no config hash")
    if kind == "teacher":
        _require(isinstance(_get(record, "model_sha256"), str), "has no 'model_sha256'")


def read_record(path: str | Path, kind: Kind, identity: bool = False) -> dict[str, Any]:
    """The checked metrics of a finished job (with `identity`, also what the workflow knows it
    by); RecordError (one line) otherwise."""
    try:
        record = load_json(path)
    except UnicodeDecodeError:
        raise RecordError("is not text") from None
    except OSError as error:
        raise RecordError(f"cannot be read ({error.strerror or type(error).__name__})") from None
    _require(isinstance(record, dict), "is not a JSON object")
    (check_run if kind == "distillation" else check_teacher)(record)
    if identity:
        check_identity(record, kind)
    return record
