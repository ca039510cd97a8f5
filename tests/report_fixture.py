"""The fixture runs of the `dfkd report` tests (tests/test_report*.py), with their expected
values recomputed here with numpy.

The fixture: two pairs x two methods x three seeds of the `tiny` protocol on digits (start epoch
5, threshold 90%), given in experiment order with `dfq` before `dafl_bn` so that the row order must
follow the arguments, not the alphabet. One `dafl_bn` run diverged in epoch 3; one `dfq` seed never
reaches 90%; no `dafl_bn` seed of the first pair does.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from dfkd.cli import main
from dfkd.stats import summarize_history

PAIRS = ("cnn_small-cnn_tiny", "wrn40_2-wrn16_2")
METHODS = ("dfq", "dafl_bn")
SEEDS = (0, 1, 2)
START_EPOCH, THRESHOLD = 5, 90.0
FINAL = {  # final-epoch Acc@1 per seed; None marks the diverged run
    ("cnn_small-cnn_tiny", "dfq"): (91.2, 89.0, 92.0),
    ("cnn_small-cnn_tiny", "dafl_bn"): (85.0, 86.5, 84.1),
    ("wrn40_2-wrn16_2", "dfq"): (70.0, 72.5, 71.0),
    ("wrn40_2-wrn16_2", "dafl_bn"): (93.0, 94.5, None),
}
# Distance below the final accuracy per epoch: epoch 6 peaks above the final value. From epoch 5
# on the distances grow with the seed, so that sigma^2 differs between seeds.
OFFSETS = (40.0, 20.0, 10.0, 5.0, 2.0, -0.4, 1.0, 0.0)


def _offsets(seed: int) -> list[float]:
    return [d * (1.0 + 0.5 * seed) if epoch >= 5 else d for epoch, d in enumerate(OFFSETS, 1)]


GIB = 2**30
COMMIT = "0123456789abcdef0123456789abcdef01234567"
DATE_EPOCH = "1704153600"  # 2024-01-02 UTC
PUBLISHED = {
    "verdict_tolerance": 1.0,
    "sources": {
        "cudfkd": {"citation": "CuDFKD Table 1", "selection": "best over trials"},
        "cmi": {"citation": "CMI Table_1 & 5% more", "selection": "best epoch"},
    },
    "teachers": {
        "digits": {"cnn_small": {"acc1": 91.0, "agree1": None, "lp": None, "source": "cudfkd"}}
    },
    "results": {
        "digits": {
            "cnn_small-cnn_tiny": {
                "dfq": {"acc1": 93.33, "agree1": 95.5, "lp": 0.8123, "source": "cudfkd"}
            },
            "wrn40_2-wrn16_2": {
                "dafl_bn": {"acc1": 95.01, "agree1": None, "lp": None, "source": "cmi"}
            },
        },
        "cifar10": {"cnn_small-cnn_tiny": {"dafl_bn": {"acc1": 1.0, "source": "cudfkd"}}},
    },
}


def _history(final: float, seed: int, epochs: int = 8) -> list[dict[str, Any]]:
    seconds_per_epoch = 20.0 + 4.0 * seed
    history = []
    for epoch, offset in enumerate(_offsets(seed)[:epochs], start=1):
        acc1 = final - offset
        history.append(
            {
                "epoch": epoch,
                "acc1": acc1,
                "agree1": acc1 + 2.0,
                "lp": 0.5 + acc1 / 1000.0,
                "lp_reference_code": 0.3 + acc1 / 1000.0,
                "train_seconds": seconds_per_epoch * epoch,
                "eval_seconds": 0.1,
            }
        )
    return history


def _provenance(pair: str) -> dict[str, Any]:
    on_gpu = pair == PAIRS[1]
    return {
        "suite_version": "0.1.0",
        "git_commit": None if on_gpu else COMMIT,
        "git_dirty": None if on_gpu else True,
        "config_hash": f"hash-{pair}",
        "lock_sha256": "ab" * 32,
        "lock_mismatches": ["torch 2.15.0 (locked 2.14.1)"] if on_gpu else [],
        "device": "cuda" if on_gpu else "cpu",
        "device_name": "NVIDIA H200" if on_gpu else "x86_64",
    }


def _run_metrics(pair: str, method: str, seed: int, protocol: str = "tiny") -> dict[str, Any]:
    teacher, student = pair.split("-")
    final = FINAL[(pair, method)][seed]
    diverged = final is None
    history = _history(15.0, seed, epochs=2) if diverged else _history(final, seed)
    summary = summarize_history(history, START_EPOCH, THRESHOLD)
    on_gpu = pair == PAIRS[1]
    return {
        "kind": "distillation",
        "status": "diverged" if diverged else "completed",
        "divergence": {"term": "generator/adversarial", "epoch": 3, "step": 17, "value": "nan"}
        if diverged
        else None,
        "run": {
            "protocol": protocol,
            "dataset": "digits",
            "teacher": teacher,
            "student": student,
            "method": method,
            "seed": seed,
        },
        "teacher": {"acc1": 90.5, "config_hash": "t"},
        "summary": summary,
        "epochs_planned": 8,
        "epochs_completed": len(history),
        "provenance": _provenance(pair),
        "config": {"statistics": {"start_epoch": START_EPOCH, "accuracy_threshold": THRESHOLD}},
        "total_hours": summary["train_hours"] + 0.001,
        "peak_device_memory_bytes": 2 * GIB + seed if on_gpu else None,
        "peak_host_memory_bytes": int(1.5 * GIB) + seed,
        "history": history,
    }


def _teacher_metrics(architecture: str, acc1: float) -> dict[str, Any]:
    return {
        "kind": "teacher",
        "status": "completed",
        "run": {"protocol": "tiny", "dataset": "digits", "architecture": architecture, "seed": 0},
        "summary": {"final_acc1": acc1, "train_hours": 0.01},
        "provenance": _provenance(PAIRS[0]),
        "history": [],
    }


def _write_inputs(root: Path) -> list[str]:
    """Writes the fixture inputs under ``root``; returns the `dfkd report` input arguments."""
    runs = []
    for pair in PAIRS:
        for method in METHODS:
            for seed in SEEDS:
                path = root / "results" / pair / method / f"seed{seed}" / "metrics.json"
                path.parent.mkdir(parents=True)
                path.write_text(json.dumps(_run_metrics(pair, method, seed)))
                runs.append(str(path))
    teachers = []
    for architecture, acc1 in (("cnn_small", 90.79), ("wrn40_2", 94.1)):
        path = root / "results" / "teachers" / architecture / "metrics.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(_teacher_metrics(architecture, acc1)))
        teachers.append(str(path))
    published = root / "published.yaml"
    published.write_text(yaml.safe_dump(PUBLISHED))
    templates = Path(__file__).resolve().parents[1] / "reports" / "templates"
    return [
        "report",
        "--dataset",
        "digits",
        "--runs",
        *runs,
        "--teachers",
        *teachers,
        "--published",
        str(published),
        "--templates",
        str(templates),
    ]


def _output_arguments(out: Path) -> list[str]:
    names = {
        "--markdown": "table.md",
        "--latex": "table.tex",
        "--runs-csv": "runs.csv",
        "--metrics": "metrics.json",
        "--curves": "curves.png",
    }
    return [
        part for option, name in names.items() for part in (option, str(out / f"digits_{name}"))
    ]


def report_outputs(root: Path) -> dict[str, Any]:
    """Runs `dfkd report` on the fixture inputs written under `root`; returns its outputs."""
    out = root / "reports"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOURCE_DATE_EPOCH", DATE_EPOCH)
        assert main(_write_inputs(root) + _output_arguments(out)) == 0
    markdown = (out / "digits_table.md").read_text()
    return {
        "out": out,
        "markdown": markdown,
        "tables": _markdown_tables(markdown),
        "latex": (out / "digits_table.tex").read_text(),
    }


def _markdown_tables(text: str) -> list[list[list[str]]]:
    tables: list[list[list[str]]] = []
    previous_was_row = False
    for line in text.splitlines():
        is_row = line.startswith("|")
        if is_row:
            if not previous_was_row:
                tables.append([])
            cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
            tables[-1].append([cell.strip() for cell in cells])
        previous_was_row = is_row
    return tables


def _comparison(report: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    """(row label, pair) -> the four cells of that pair: Acc@1, Agree@1, L_p, L_p (code)."""
    header, _, *rows = report["tables"][0]
    assert len(header) == 1 + 4 * len(PAIRS)
    return {
        (row[0], pair): row[1 + 4 * i : 5 + 4 * i] for row in rows for i, pair in enumerate(PAIRS)
    }


def _completed(pair: str, method: str) -> list[int]:
    return [seed for seed in SEEDS if FINAL[(pair, method)][seed] is not None]


def _expected(values: list[float], decimals: int) -> str:
    array = np.asarray(values, dtype=np.float64)
    return f"{array.mean():.{decimals}f} ± {array.std(ddof=1):.{decimals}f}"


def _numbers(cell: str) -> list[float]:
    return [float(number) for number in re.findall(r"-?\d+(?:\.\d+)?", cell)]
