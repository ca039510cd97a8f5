"""Progress of long runs: a tqdm bar on a terminal, one plain line per epoch in batch jobs."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from tqdm import tqdm


class Progress:
    """Reports units of work (rounds, batches) and one summary per epoch.

    Interactive runs (stderr is a terminal) get a bar; Snakemake/SLURM logs get plain lines, so
    log files stay readable and greppable.
    """

    def __init__(self, label: str, total_epochs: int, units_per_epoch: int, unit: str) -> None:
        self.label = label
        self.total_epochs = total_epochs
        self.units_per_epoch = units_per_epoch
        self.unit = unit
        self.bar: tqdm | None = None

    def start(self, epochs_done: int, units_done: int, resumed: bool) -> None:
        """Opens the bar (or writes the first line) at a run's starting or resuming position."""
        if sys.stderr.isatty():
            self.bar = tqdm(
                total=self.total_epochs * self.units_per_epoch,
                initial=epochs_done * self.units_per_epoch + units_done,
                desc=self.label,
                unit=self.unit,
                dynamic_ncols=True,
            )
        position = f"epoch {epochs_done + 1} of {self.total_epochs}"
        if not resumed:
            self.line(f"starting at {position}")
        elif epochs_done >= self.total_epochs:
            self.line(
                f"resuming from the checkpoint after the last epoch ({self.total_epochs}): "
                "writing the final outputs"
            )
        else:
            units = self.unit + ("es" if self.unit.endswith(("s", "sh", "ch", "x")) else "s")
            done = f"{units_done} of {self.units_per_epoch} {units} done"
            self.line(f"resuming from the checkpoint at {position} ({done})")

    def advance(self, units: float = 1) -> None:
        """`units` of work done (a fraction where an epoch has more rounds than the bar counts,
        as a loop's warm-up epochs do)."""
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
