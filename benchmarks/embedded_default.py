"""Wall-clock of the README's commands on this machine, on a fresh clone of the committed code.

    python benchmarks/embedded_default.py            # the main command (embedded default)
    python benchmarks/embedded_default.py --tests    # also the test suite

Uses the installed environment (the set-up commands' `pip install` is timed separately, it
depends on the network and the package cache). Prints the total and the per-job times that
Snakemake logged.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _timed(command: list[str], cwd: Path) -> tuple[float, str]:
    environment = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(cwd),  # the clone's code, not an editable install's
    }
    began = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True)
    elapsed = time.perf_counter() - began
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return elapsed, result.stdout + result.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tests", action="store_true", help="also time `pytest`")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        clone = Path(scratch) / "clone"
        subprocess.run(["git", "clone", "-q", str(REPOSITORY), str(clone)], check=True)
        seconds, _ = _timed(["snakemake", "--cores", "all", "reports/digits_table.md"], clone)
        command = "snakemake --cores all reports/digits_table.md"
        print(f"{command}: {seconds:.0f} s on {os.cpu_count()} cores")
        for path in sorted((clone / "results").rglob("*.log")):
            text = path.read_text()
            epochs = re.findall(r"train_seconds ([0-9.]+)", text)
            trained = f"{float(epochs[-1]):.0f} s of training" if epochs else "?"
            print(f"  {path.relative_to(clone / 'results')}: {trained}")
        if arguments.tests:
            seconds, log = _timed([str(BIN / "pytest"), "-q"], clone)
            print(f"pytest: {seconds:.0f} s ({log.strip().splitlines()[-1]})")


if __name__ == "__main__":
    main()
