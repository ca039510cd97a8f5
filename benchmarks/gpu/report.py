"""summary.md of a kit run: every stage's table from its JSON file (no torch import: the kit's
parent process stays light)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

# Expected minutes on one H200 (benchmarks/gpu/kit.py's docstring says how each was sized).
EXPECTED_MINUTES = {"setup": "0.3", "a": "2.0", "b": "1.5", "c": "0.7", "d": "0.7", "e": "4-5"}
TITLES = {
    "a": "a_parity: eager vs fast, first steps of every method",
    "b": "b_harness: speed, eager and fast, at the published batches",
    "c": "c_teacher: teacher training, seconds per CIFAR-10 epoch",
    "d": "d_reference: zju-vipa/CMI's DFQ round against ours",
    "e": "e_quick: the quick protocol on the CIFAR-10 JPEG copy",
}
FILES = {"a": "a_parity", "b": "b_harness", "c": "c_teacher", "d": "d_reference", "e": "e_quick"}


def _f(value: Any, spec: str = ".3g") -> str:
    return "–" if value is None else format(value, spec)


def _parity(rows: list[dict]) -> list[str]:
    lines = [
        "| Method | Batch | Eager s | Fast s | G max abs diff (rel.) | S max abs diff (rel.) "
        "| Graph breaks | Graphs | Frames compiled | Error |",
        "|:---|---:|---:|---:|---:|---:|---:|---:|---:|:---|",
    ]
    for r in rows:
        losses, compiler = r.get("losses", {}), r.get("compiler", {})
        cells = [
            f"{_f(losses[p]['max_abs'], '.2g')} ({_f(losses[p]['max_rel'], '.1e')})"
            + ("" if losses[p]["finite"] else ", non-finite")
            if p in losses else "–"
            for p in ("generator", "student")
        ]  # fmt: skip
        breaks = compiler.get("graph_breaks")
        lines.append(
            f"| {r['method']} | {r.get('batch', '–')} | {_f(r.get('eager_seconds'), '.1f')} "
            f"| {_f(r.get('fast_seconds'), '.1f')} | {cells[0]} | {cells[1]} "
            f"| {'–' if breaks is None else sum(breaks.values())} "
            f"| {compiler.get('unique_graphs', '–')} | {compiler.get('frames_compiled', '–')} "
            f"| {r.get('error', '')} |"
        )
    reasons = {k: v for r in rows for k, v in r.get("compiler", {}).get("graph_breaks", {}).items()}
    guards = {
        k: v
        for r in rows
        for k, v in r.get("compiler", {}).get("guard_failure_reasons", {}).items()
    }
    listed = lambda counts, empty: "; ".join(f"{k} ({v}x)" for k, v in counts.items()) or empty  # noqa: E731
    lines += ["", f"Graph breaks: {listed(reasons, 'none')}.", "",
              f"Compiled again after a guard failed on: {listed(guards, 'nothing')}."]  # fmt: skip
    return lines


def _harness(rows: list[dict]) -> list[str]:
    lines = ["| Method | Compute | Batch | G steps/s | Synth img/s | S img/s | Rounds/s | TFLOP/s "
             "| Util. | Peak GiB | Warm-up s (G+S) | Loop/composed | Full run (h) | Error |",
             "|:---|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---|"]  # fmt: skip
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['method']} | {r['compute']} |" + " – |" * 11 + f" {r['error']} |")
            continue
        warm = r.get("generator_warmup_seconds", 0) + r.get("student_warmup_seconds", 0)
        lines.append(
            f"| {r['method']} | {r['compute']} | {r['batch']} | {_f(r['generator_steps_per_s'])} "
            f"| {r['generator_images_per_s']:.0f} | {r['student_images_per_s']:.0f} "
            f"| {_f(r['rounds_per_s'])} | {_f(r['round_tflop_per_s'])} "
            f"| {_f(r['utilisation'], '.1%')} | {_f(r['peak_memory_gib'], '.2f')} | {warm:.1f} "
            f"| {_f(r['loop_over_composed'], '.2f')} | {_f(r['projected_hours'])} | |"
        )
    rounds = {(r["method"], r["compute"]): r["rounds_per_s"] for r in rows if "rounds_per_s" in r}
    ratios = [f"{m} {rounds[(m, 'fast')] / rounds[(m, 'eager')]:.2f}x"
              for m, c in rounds if c == "fast" and (m, "eager") in rounds]  # fmt: skip
    return [*lines, "", "fast / eager rounds per second: " + (", ".join(ratios) or "–") + "."]


def _teacher(rows: list[dict]) -> list[str]:
    lines = [
        "| Architecture | Compute | Batch | Images/s | Seconds/epoch | Floor at 790 TFLOP/s "
        "| TFLOP/s | Warm-up s | Error |",
        "|:---|:---|---:|---:|---:|---:|---:|---:|:---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['architecture']} | {r['compute']} | {r.get('batch', '–')} "
            f"| {_f(r.get('images_per_s'), '.0f')} | {_f(r.get('seconds_per_epoch'))} "
            f"| {_f(r.get('floor_seconds_per_epoch_at_790_tflops'))} | {_f(r.get('tflop_per_s'))} "
            f"| {_f(r.get('warmup_seconds'), '.1f')} | {r.get('error', '')} |"
        )
    return lines


def _reference(rows: list[dict]) -> list[str]:
    lines = []
    for r in rows:
        if "error" in r:
            lines.append(f"{r['pair']}: {r['error']}")
            continue
        medians, n = r["median_seconds"], len(r["seconds_per_round"]["ours"])
        lines.append(
            f"{r['pair']}, batch {r['batch']}, DFQ round of {r['round']['generator_steps']} + "
            f"{r['round']['student_steps']} steps, {n} timed rounds each: ours ({r['compute']}) "
            f"{medians['ours']:.4f} s, the reference {medians['reference']:.4f} s; ours is "
            f"{r['reference_over_ours']:.2f}x as fast (warm-up: ours "
            f"{r['warmup_seconds']['ours']:.1f} s, the reference "
            f"{r['warmup_seconds']['reference']:.1f} s)."
        )
    return lines


def _quick(rows: list[dict]) -> list[str]:
    lines = ["| Run | Compute | Epochs done / planned | Final Acc@1 | Train s/epoch | Seconds "
             "| Exit |", "|:---|:---|---:|---:|---:|---:|:---|"]  # fmt: skip
    for r in rows:
        history = r.get("history") or []
        seconds = [h["train_seconds"] for h in history if "train_seconds" in h]
        steps = [b - a for a, b in zip([0, *seconds[:-1]], seconds, strict=True)]
        per_epoch = statistics.median(steps) if steps else None
        if "error" in r:
            lines.append(f"| {r['run']} | – | – | – | – | – | {r['error']} |")
            continue
        name = r["run"] + (
            f" {r['method']} {r['pair']}" if "method" in r else f" {r['architecture']}"
        )
        lines.append(
            f"| {name} | {r.get('compute')} | {r.get('epochs_completed', 0)} / "
            f"{r.get('epochs_planned')} | {_f(history[-1].get('acc1') if history else None, '.2f')}"
            " "
            f"| {_f(per_epoch)} | {_f(r.get('seconds'), '.0f')} | {r.get('exit_status')} |"
        )
    return lines


RENDER = {"a": _parity, "b": _harness, "c": _teacher, "d": _reference, "e": _quick}


def summary(out: Path, versions: dict, statuses: dict, arguments, seconds: float) -> str:
    stages = {key: json.loads(path.read_text()) for key, name in FILES.items()
              if (path := out / f"{name}.json").exists()}  # fmt: skip
    environment = next((s["environment"] for s in stages.values()), {})
    size = "CPU-size rehearsal" if arguments.cpu_size else "device size"
    lines = [
        f"# Device kit ({size}): {environment.get('device', versions.get('device'))}", "",
        f"Driver {environment.get('driver')}, torch {versions['packages'].get('torch')}, CUDA "
        f"{versions.get('cuda')}, cuDNN {environment.get('cudnn')}, Python {versions['python']}; "
        f"{environment.get('nvidia_smi') or 'no nvidia-smi'}. Packages: "
        + ", ".join(f"{k} {v}" for k, v in versions["packages"].items() if v) + ".", "",
        f"Deadline {arguments.deadline:.0f} s; the kit ran {seconds:.0f} s.", "",
        "| Stage | Expected on an H200 (min) | Status | Took (s) |", "|:---|---:|:---|---:|",
    ]  # fmt: skip
    for key in ("setup", *FILES):
        took = stages[key].get("seconds") if key in stages else None
        status = statuses.get(key, "not run")
        if key in stages:
            status += f"; {stages[key]['status']}"
        lines.append(f"| {TITLES.get(key, key)} | {EXPECTED_MINUTES[key]} | {status} "
                     f"| {_f(took, '.0f')} |")  # fmt: skip
    for key, data in stages.items():
        lines += ["", f"## {TITLES[key]}", "", *RENDER[key](data["rows"])]
    return "\n".join(lines) + "\n"
