"""The fixture runs of the `dfkd report` tests (tests/test_report*.py), with their expected
values recomputed here with numpy.

The small fixture: two pairs x two methods x three seeds of the `tiny` protocol on digits (start
epoch 5, threshold 90%), given in experiment order with `dfq` before `dafl_bn` so that the row
order must follow the arguments, not the alphabet. One `dafl_bn` run diverged in epoch 3; one
`dfq` seed never reaches 90%; no `dafl_bn` seed of the first pair does. Its methods' display
names, sources and notes hold every character LaTeX must escape.

The CIFAR-sized fixture: the five CIFAR-10 pairs x the six methods x three seeds, with the
suite's own published numbers and display names, one diverged run: the size of a paper's table.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from dfkd.cli import main
from dfkd.stats import summarize_history
from tests.support import REPOSITORY

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
# Best-epoch Acc@1 of a run: epoch 6 peaks 0.4 x (1 + 0.5 seed) above the final value.
# Distance below the final accuracy per epoch. From epoch 5 on the distances grow with the seed,
# so that sigma^2 differs between seeds.
OFFSETS = (40.0, 20.0, 10.0, 5.0, 2.0, -0.4, 1.0, 0.0)
TEACHERS = {"cnn_small": 90.79, "wrn40_2": 94.1}
DISPLAY = {"dfq": "DFQ", "dafl_bn": 'DAFL_bn "BN" `x` & 5%'}


def _offsets(seed: int) -> list[float]:
    return [d * (1.0 + 0.5 * seed) if epoch >= 5 else d for epoch, d in enumerate(OFFSETS, 1)]


GIB = 2**30
COMMIT = "0123456789abcdef0123456789abcdef01234567"
DATE_EPOCH = "1704153600"  # 2024-01-02 UTC
PUBLISHED = {
    "verdict_tolerance": 1.0,
    "sources": {
        "cudfkd": {
            "citation": "CuDFKD Table 1",
            "selection": "best over trials",
            "rule": "best_epoch",
            "short": 'CuDFKD\'s "Table 1"',
        },
        "cmi": {
            "citation": "CMI Table_1 & 5% more",
            "selection": "the final epoch",
            "rule": "final_epoch",
            "short": "CMI_T1 ~ #1",
        },
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
                "dafl_bn": {
                    "acc1": 95.01,
                    "agree1": None,
                    "lp": None,
                    "source": "cmi",
                    "note": "equals the `README`'s value",
                }
            },
        },
        "cifar10": {"cnn_small-cnn_tiny": {"dafl_bn": {"acc1": 1.0, "source": "cudfkd"}}},
    },
    "stability": {
        "digits": {
            "cnn_small-cnn_tiny": {
                "dfq": {
                    "mu": 87.2,
                    "sigma2": 13.9,
                    "best": 93.3,
                    "memory_gb": 7.85,
                    "hours": 25.2,
                    "source": "cudfkd",
                },
            }
        }
    },
}

CIFAR_PAIRS = ("resnet34-resnet18", "vgg11-resnet18", "wrn40_2-wrn40_1", "wrn40_2-wrn16_2",
               "wrn40_2-wrn16_1")  # fmt: skip
CIFAR_METHODS = ("dafl", "adi", "dfq", "cmi", "cudfkd", "mad")
CIFAR_TEACHERS = {"resnet34": 95.12, "vgg11": 92.03, "wrn40_2": 94.61}


def cifar_finals() -> dict[tuple[str, str], tuple[float | None, ...]]:
    """Plausible final accuracies, two decimals; MAD's third seed on VGG-11 diverged."""
    rng = np.random.RandomState(0)
    level = {"dafl": 82.0, "adi": 86.0, "dfq": 90.0, "cmi": 91.0, "cudfkd": 92.0, "mad": 91.5}
    spread = {"dafl": 3.0, "adi": 1.5, "dfq": 0.6, "cmi": 0.8, "cudfkd": 0.4, "mad": 0.7}
    finals: dict[tuple[str, str], tuple[float | None, ...]] = {}
    for shift, pair in enumerate(CIFAR_PAIRS):
        for method in CIFAR_METHODS:
            values = level[method] - shift + spread[method] * rng.standard_normal(len(SEEDS))
            finals[(pair, method)] = tuple(round(float(v), 2) for v in values)
    finals[("vgg11-resnet18", "mad")] = (*finals[("vgg11-resnet18", "mad")][:2], None)
    return finals


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


def _provenance(on_gpu: bool) -> dict[str, Any]:
    return {
        "suite_version": "0.1.0",
        "git_commit": None if on_gpu else COMMIT,
        "git_dirty": None if on_gpu else True,
        "config_hash": "hash",
        "lock_sha256": "ab" * 32,
        "lock_mismatches": ["torch 2.15.0 (locked 2.14.1)"] if on_gpu else [],
        "device": "cuda" if on_gpu else "cpu",
        "device_name": "NVIDIA H200" if on_gpu else "x86_64",
    }


def _run_metrics(
    pair: str,
    method: str,
    seed: int,
    protocol: str = "tiny",
    final: float | None = None,
    dataset: str = "digits",
    on_gpu: bool | None = None,
) -> dict[str, Any]:
    teacher, student = pair.split("-")
    if final is None and dataset == "digits":
        final = FINAL[(pair, method)][seed]
    on_gpu = pair == PAIRS[1] if on_gpu is None else on_gpu
    diverged = final is None
    history = _history(55.0, seed, epochs=2) if diverged else _history(final, seed)
    summary = summarize_history(history, START_EPOCH, THRESHOLD)
    return {
        "kind": "distillation",
        "status": "diverged" if diverged else "completed",
        "divergence": {"term": "generator/adversarial", "epoch": 3, "step": 17, "value": "nan"}
        if diverged
        else None,
        "run": {
            "protocol": protocol,
            "dataset": dataset,
            "teacher": teacher,
            "student": student,
            "method": method,
            "seed": seed,
        },
        "teacher": {"acc1": 90.5, "config_hash": "t"},
        "summary": summary,
        "epochs_planned": 8,
        "epochs_completed": len(history),
        "provenance": _provenance(on_gpu),
        "config": {"statistics": {"start_epoch": START_EPOCH, "accuracy_threshold": THRESHOLD}},
        "total_hours": summary["train_hours"] + 0.001,
        "peak_device_memory_bytes": 2 * GIB + seed if on_gpu else None,
        "peak_host_memory_bytes": int(1.5 * GIB) + seed,
        "history": history,
    }


def _teacher_metrics(architecture: str, acc1: float, dataset: str = "digits") -> dict[str, Any]:
    return {
        "kind": "teacher",
        "status": "completed",
        "run": {"protocol": "tiny", "dataset": dataset, "architecture": architecture, "seed": 0},
        "summary": {"final_acc1": acc1, "train_hours": 0.01},
        "provenance": _provenance(False),
        "config": {},
        "history": [],
    }


def _write_json(path: Path, record: Mapping[str, Any]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return str(path)


def _arguments(
    dataset: str, runs: Sequence[str], teachers: Sequence[str], published: Path, methods: Path
) -> list[str]:
    return ["report", "--dataset", dataset, "--runs", *runs, "--teachers", *teachers,
            "--published", str(published), "--methods-dir", str(methods)]  # fmt: skip


def _write_inputs(root: Path) -> list[str]:
    """Writes the small fixture's inputs under ``root``; returns the `dfkd report` arguments
    but the output."""
    runs = [
        _write_json(root / "results" / pair / method / f"seed{seed}" / "metrics.json",
                    _run_metrics(pair, method, seed))
        for pair in PAIRS for method in METHODS for seed in SEEDS
    ]  # fmt: skip
    teachers = [
        _write_json(root / "results" / "teachers" / name / "metrics.json",
                    _teacher_metrics(name, acc1))
        for name, acc1 in TEACHERS.items()
    ]  # fmt: skip
    published = root / "published.yaml"
    published.write_text(yaml.safe_dump(PUBLISHED))
    methods = root / "methods"
    methods.mkdir()
    for method, name in DISPLAY.items():
        (methods / f"{method}.yaml").write_text(yaml.safe_dump({"display_name": name}))
    return _arguments("digits", runs, teachers, published, methods)


def write_cifar_inputs(root: Path) -> list[str]:
    """The CIFAR-sized fixture's inputs, with the suite's published file and display names."""
    finals = cifar_finals()
    runs = [
        _write_json(
            root / "results" / pair / method / f"seed{seed}" / "metrics.json",
            _run_metrics(pair, method, seed, "paper", finals[(pair, method)][seed], "cifar10",
                         on_gpu=True),
        )
        for pair in CIFAR_PAIRS for method in CIFAR_METHODS for seed in SEEDS
    ]  # fmt: skip
    teachers = []
    for name, acc1 in CIFAR_TEACHERS.items():
        record = _teacher_metrics(name, acc1, "cifar10")
        record["run"]["protocol"] = "paper"
        teachers.append(_write_json(root / "teachers" / name / "metrics.json", record))
    return _arguments("cifar10", runs, teachers, REPOSITORY / "params" / "published.yaml",
                      REPOSITORY / "params" / "methods")  # fmt: skip


def _output_arguments(out: Path, prefix: str = "digits") -> list[str]:
    return ["--out", str(out / prefix)]


def run_report(arguments: list[str], out: Path, prefix: str) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOURCE_DATE_EPOCH", DATE_EPOCH)
        assert main(arguments + _output_arguments(out, prefix)) == 0


def report_outputs(root: Path) -> dict[str, Any]:
    """Runs `dfkd report` on the small fixture's inputs under `root`; returns its outputs."""
    out = root / "reports"
    run_report(_write_inputs(root), out, "digits")
    return read_outputs(out, "digits")


def read_outputs(out: Path, prefix: str) -> dict[str, Any]:
    """Every table as text, Markdown tables parsed, by name ("table", "fidelity", ...)."""
    folder = out / prefix
    markdown = {"table": (out / f"{prefix}_table.md").read_text()}
    latex = {"table": (out / f"{prefix}_table.tex").read_text()}
    for path in folder.glob("*.md"):
        markdown[path.stem] = path.read_text()
    for path in folder.glob("*.tex"):
        latex[path.stem] = path.read_text()
    html = {path.stem: path.read_text() for path in folder.glob("*.html")}
    return {
        "out": out,
        "prefix": prefix,
        "markdown": markdown,
        "latex": latex,
        "html": html,
        "tables": {name: _markdown_table(text) for name, text in markdown.items()},
    }


def _markdown_table(text: str) -> list[list[str]]:
    """The rows of the one table in a Markdown file, cells stripped, separator row dropped."""
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not re.fullmatch(r"\|(:?-+:?\|)+", line):
            cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
            rows.append([cell.strip() for cell in cells])
    return rows


def _completed(pair: str, method: str) -> list[int]:
    return [seed for seed in SEEDS if FINAL[(pair, method)][seed] is not None]


def _expected(values: list[float], decimals: int) -> str:
    array = np.asarray(values, dtype=np.float64)
    mean = f"{array.mean():.{decimals}f}"
    return mean if array.size < 2 else f"{mean} ± {array.std(ddof=1):.{decimals}f}"


def _numbers(cell: str) -> list[float]:
    return [float(n.replace("−", "-")) for n in re.findall(r"[−-]?\d+(?:\.\d+)?", cell)]
