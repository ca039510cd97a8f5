"""The final files of a finished run (teacher training or distillation), written atomically.

Order matters for crash safety: the model file and history first, `metrics.json` last, so a
`metrics.json` on disk always describes files that are complete.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from dfkd.atomic import atomic_write_json, atomic_write_text
from dfkd.runtime import peak_memory
from dfkd.workflow import sha256_of


def finite_or_none(value: Any) -> Any:
    """JSON has no NaN or infinity; missing or undefined numbers are written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def history_csv(history: Sequence[dict[str, Any]]) -> str:
    columns: list[str] = []
    for record in history:
        columns.extend(k for k in record if k not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return buffer.getvalue()


def write_run_outputs(
    out_dir: Path,
    model_file: str,
    save_model_file: Callable[[Path], None],
    metrics: dict[str, Any],
    history: Sequence[dict[str, Any]],
    device: torch.device,
) -> None:
    save_model_file(out_dir / model_file)
    atomic_write_text(out_dir / "history.csv", history_csv(history))
    record = {
        **metrics,
        # What the workflow checks before it lets jobs read the model (dfkd.workflow).
        "model_sha256": sha256_of(out_dir / model_file),
        **peak_memory(device),
        "history": list(history),
    }
    atomic_write_json(out_dir / "metrics.json", finite_or_none(record))
