"""Each run's per-epoch history as a small CSV where DVC's plots read it.

`dvc plots show` draws every file under `reports/plots/` (dvc.yaml, top-level `plots`): one per
run, `<experiment>/<teacher>-<student>/<method>/seed<k>.csv`, with the test Acc@1, Agree@1 and
L_p of each epoch. Only experiments that ran have files, so DVC warns about none.
"""

from __future__ import annotations

import csv
import io
import shutil
from collections.abc import Sequence
from pathlib import Path

from dfkd.atomic import atomic_write_text
from dfkd.errors import UserError
from dfkd.records import RecordError, read_record

COLUMNS = ("epoch", "acc1", "agree1", "lp")


def write_history_plots(runs: Sequence[str], out_dir: str | Path) -> int:
    """One CSV per run under `out_dir`, which holds nothing else afterwards."""
    tables = {}
    for path in runs:
        try:
            record = read_record(path, "distillation")
        except RecordError as error:
            raise UserError(f"{path} {error}; run its job again") from None
        run = record["run"]
        name = Path(f"{run['teacher']}-{run['student']}", run["method"], f"seed{run['seed']}.csv")
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows([epoch.get(key) for key in COLUMNS] for epoch in record["history"])
        tables[name] = buffer.getvalue()
    out_dir = Path(out_dir)
    shutil.rmtree(out_dir, ignore_errors=True)
    for name, text in tables.items():
        atomic_write_text(out_dir / name, text)
    return 0
