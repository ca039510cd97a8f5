"""Progress of long runs: a tqdm bar on a terminal, one plain line per epoch in batch jobs."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from tqdm import tqdm


class Progress:
    """Reports `units` of work (e.g. rounds) and one summary per epoch.

    Interactive runs (stderr is a terminal) get a bar; Snakemake/SLURM logs get plain lines, so
    log files stay readable and greppable.
    """

    def __init__(
        self, label: str, total_epochs: int, units_per_epoch: int, start_epoch: int
    ) -> None:
        self.label = label
        self.total_epochs = total_epochs
        self.bar: tqdm | None = None
        if sys.stderr.isatty():
            self.bar = tqdm(
                total=total_epochs * units_per_epoch,
                initial=start_epoch * units_per_epoch,
                desc=label,
                unit="round",
                dynamic_ncols=True,
            )
        else:
            self.line(f"starting at epoch {start_epoch + 1} of {total_epochs}")

    def advance(self, units: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(units)

    def epoch(self, record: Mapping[str, Any]) -> None:
        shown = {k: v for k, v in record.items() if isinstance(v, float) and k != "epoch"}
        summary = " ".join(f"{k} {v:.4g}" for k, v in shown.items())
        if self.bar is not None:
            self.bar.set_postfix_str(summary[:80])
        else:
            self.line(f"epoch {record['epoch']}/{self.total_epochs} {summary}")

    def line(self, text: str) -> None:
        message = f"[{self.label}] {text}"
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
