"""The CUDA `fast` recipe on the CPU against eager: every method of the embedded default, its
full schedule, N seeds, before the recipe meets a GPU.

    TORCHINDUCTOR_CACHE_DIR=.cache/inductor nice python benchmarks/fast_on_cpu.py
    python benchmarks/fast_on_cpu.py --seeds 2 --methods dfq --name trial

`fast` with DFKD_FAST_RECIPE=cuda (dfkd/compute.py) runs on the CPU what it runs on CUDA:
bfloat16 autocast, channels_last, teacher and student compiled by torch.compile, fused
optimizers. For each method of the digits experiment (params.yaml; methods added there are
picked up) it trains the experiment's teacher once, then:

1. parity: the first steps (2 rounds of at most 10 steps per phase) in eager and in fast from
   the same weights and seed (benchmarks/parity.py): the largest per-step loss difference, and
   what torch._dynamo reports for the fast run (graph breaks with their reasons, graphs,
   recompilations);
2. the full `tiny` schedule on seeds 0..N-1 in both modes through dfkd.distill (the code a
   Snakemake job runs): final Acc@1 per seed, min / median / max per mode, and whether each fast
   run lies inside the eager seed band [min - spread, max + spread] (spread = max - min), the
   band the per-run floors of benchmarks/seed_robustness.py use.

The compiled code of a method is kept over its seeds (the first compilation is in the first
seed's time); a persistent TORCHINDUCTOR_CACHE_DIR spares later invocations most of it. Writes
benchmarks/results/<name>.json and .md after every method, so an interrupted run keeps what it
finished.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from benchmarks.harness import environment
from benchmarks.parity import compare, compiler_report, reset_compiler
from dfkd.compute import RECIPE_VARIABLE
from dfkd.config import load_suite, read_yaml, save_config
from dfkd.distill import run_distillation
from dfkd.teacher import run_teacher_training

REPOSITORY = Path(__file__).resolve().parents[1]
RESULTS = REPOSITORY / "benchmarks" / "results"
EXPERIMENT = "digits"


def _teacher(suite, scratch: Path) -> tuple[Path, float]:
    """The experiment's teacher, trained as its Snakemake job trains it: (checkpoint, Acc@1)."""
    protocol = suite.protocol_of(EXPERIMENT)
    (architecture,) = suite.teachers_of(EXPERIMENT)
    config = suite.teacher_config(protocol, EXPERIMENT, architecture)
    run_dir = scratch / "teacher"
    run_dir.mkdir(parents=True)
    save_config(config, run_dir / "config.yaml")
    if run_teacher_training(run_dir / "config.yaml", run_dir) != 0:
        sys.exit("the teacher's training failed")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return run_dir / "teacher.pt", metrics["summary"]["final_acc1"]


def _run(suite, method: str, seed: int, mode: str, teacher: Path, scratch: Path) -> dict:
    """One run of the embedded default in `mode` ("eager", or "fast" in the CUDA recipe)."""
    (pair,) = suite.params.experiments[EXPERIMENT].pairs
    teacher_name, student_name = pair.split("-")
    config = suite.run_config(
        suite.protocol_of(EXPERIMENT), EXPERIMENT, teacher_name, student_name, method, seed,
        str(teacher),
    )  # fmt: skip
    config = replace(config, compute="fast" if mode == "fast" else "eager")
    run_dir = scratch / f"{method}-{mode}-seed{seed}"
    run_dir.mkdir(parents=True)
    save_config(config, run_dir / "config.yaml")
    if mode == "fast":
        os.environ[RECIPE_VARIABLE] = "cuda"
    try:
        began = time.perf_counter()
        status = run_distillation(run_dir / "config.yaml", run_dir)
        seconds = time.perf_counter() - began
    finally:
        os.environ.pop(RECIPE_VARIABLE, None)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        "status": metrics["status"] if status == 0 else f"exit {status}",
        "final_acc1": metrics["summary"].get("final_acc1"),
        "train_seconds": 3600 * metrics["summary"].get("train_hours", 0.0),
        "seconds": seconds,
        "compute": metrics["provenance"]["compute"],
    }


def band(finals: list[float]) -> tuple[float, float]:
    """[min - spread, max + spread] of a mode's finals over the seeds."""
    spread = max(finals) - min(finals)
    return min(finals) - spread, max(finals) + spread


def measure_method(
    suite, method: str, seeds: int, teacher: Path, scratch: Path, eager_from: dict | None
) -> dict:
    """Parity and the full runs of one method; eager finals of seeds > 0 from `eager_from`
    (benchmarks/results/seed_robustness.json's methods) where it has them."""
    (pair,) = suite.params.experiments[EXPERIMENT].pairs
    state = torch.load(teacher, map_location="cpu", weights_only=True)["state_dict"]
    cpu = torch.device("cpu")
    parity = compare(suite, method, EXPERIMENT, pair, cpu, seed=0, rounds=2, steps=10,
                     teacher_state=state, cuda_recipe=True)  # fmt: skip
    print(f"{method}: parity {json.dumps(parity['losses'])}", flush=True)
    runs: dict[str, dict[int, dict]] = {"eager": {}, "fast": {}}
    recorded = (eager_from or {}).get(f"{pair}/{method}", {}).get("final_acc1", {})
    reset_compiler()
    for seed in range(seeds):
        for mode in ("eager", "fast"):
            if mode == "eager" and seed > 0 and str(seed) in recorded:
                runs[mode][seed] = {"final_acc1": recorded[str(seed)], "from_file": True}
                continue
            runs[mode][seed] = _run(suite, method, seed, mode, teacher, scratch)
            print(f"{method} seed {seed} {mode}: {runs[mode][seed]['final_acc1']:.2f} "
                  f"({runs[mode][seed]['seconds']:.0f} s)", flush=True)  # fmt: skip
    row: dict[str, Any] = {"method": method, "pair": pair, "parity": parity,
                           "full_runs_compiler": compiler_report(), "runs": runs}  # fmt: skip
    if "0" in recorded:  # the run made here against the file's, as a check that they agree
        row["eager_seed0_equals_file"] = runs["eager"][0]["final_acc1"] == recorded["0"]
    for mode, by_seed in runs.items():
        finals = [run["final_acc1"] for run in by_seed.values()]
        row[mode] = {
            "min": min(finals), "median": statistics.median(finals), "max": max(finals),
            "seconds_per_run": statistics.mean(
                r["seconds"] for r in by_seed.values() if "seconds" in r
            ),
        }  # fmt: skip
    low, high = band([run["final_acc1"] for run in runs["eager"].values()])
    row["eager_band"] = [low, high]
    row["fast_outside_band"] = [
        seed for seed, run in runs["fast"].items() if not low <= run["final_acc1"] <= high
    ]
    return row


def markdown(result: dict[str, Any]) -> str:
    env = result["environment"]
    lines = [
        f"# The CUDA `fast` recipe on the CPU against eager: the embedded default, "
        f"{result['seeds']} seeds",
        "",
        (
            f"`{result['earlier_command']}`, then for {', '.join(result['updated_methods'])}: "
            if "earlier_command" in result
            else ""
        )
        + f"`{result['command']}`: {result['wall_seconds'] / 60:.0f} min on {env['device']} "
        f"({env['threads']} threads), torch {env['torch']}, Python {env['python']}. "
        f"Teacher {result['teacher_acc1']:.2f}%. `fast` here is DFKD_FAST_RECIPE=cuda: bfloat16 "
        "CPU autocast, channels_last, teacher and student compiled, fused optimizers.",
        "",
        "| Method | eager min / median / max | fast min / median / max | eager band "
        "| fast outside | max loss diff, G (rel.) | max loss diff, S (rel.) | graph breaks "
        "| graphs | s/run eager | s/run fast |",
        "|:---|:---|:---|:---|:---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["methods"]:
        eager, fast, losses = row["eager"], row["fast"], row["parity"]["losses"]
        cell = {
            phase: f"{losses[phase]['max_abs']:.2g} ({losses[phase]['max_rel']:.1e})"
            if phase in losses
            else "–"
            for phase in ("generator", "student")
        }
        breaks = sum(row["parity"]["compiler"]["graph_breaks"].values()) + sum(
            row["full_runs_compiler"]["graph_breaks"].values()
        )
        lines.append(
            f"| {row['method']} | {eager['min']:.2f} / {eager['median']:.2f} / {eager['max']:.2f} "
            f"| {fast['min']:.2f} / {fast['median']:.2f} / {fast['max']:.2f} "
            f"| {row['eager_band'][0]:.2f}-{row['eager_band'][1]:.2f} "
            f"| {', '.join(map(str, row['fast_outside_band'])) or 'none'} "
            f"| {cell['generator']} | {cell['student']} | {breaks} "
            f"| {row['parity']['compiler']['unique_graphs']}"
            f"+{row['full_runs_compiler']['unique_graphs']} "
            f"| {eager['seconds_per_run']:.0f} | {fast['seconds_per_run']:.0f} |"
        )
    reasons = {
        reason: count
        for row in result["methods"]
        for report in (row["parity"]["compiler"], row["full_runs_compiler"])
        for reason, count in report["graph_breaks"].items()
    }
    lines += [
        "",
        "Final-epoch test Acc@1 (%) per seed; eager band: [min - spread, max + spread] of the "
        "eager finals; fast outside: the seeds whose fast final lies outside it. Max loss diff: "
        "the largest |fast - eager| of a step's summed loss over the first 2 rounds (at most 10 "
        "steps per phase), from the same weights and seed, and relative to |eager|. Graph "
        "breaks: as torch._dynamo counted them, parity and full runs; graphs: distinct graphs "
        "compiled in the parity run + over the full runs (evaluation batches included). s/run: "
        "wall-clock of a whole run (fast: the first seed's compilation included)."
        + (
            " Eager finals of seeds 1 and up from benchmarks/results/seed_robustness.json (the "
            "Snakemake runs, one thread), seed 0 run here: equal to the file's for "
            + ", ".join(r["method"] for r in result["methods"] if r.get("eager_seed0_equals_file"))
            + "."
            if any("eager_seed0_equals_file" in r for r in result["methods"])
            else ""
        ),
        "",
        "Graph breaks: " + ("; ".join(f"{r} ({n}x)" for r, n in reasons.items()) or "none") + ".",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default: 5)")
    parser.add_argument("--methods", nargs="*", help="default: the digits experiment's methods")
    parser.add_argument("--name", default="fast_on_cpu", help="file name under results/")
    parser.add_argument("--eager-from", type=Path, metavar="JSON",
                        help="eager finals of seeds > 0 from a seed_robustness.json (seed 0 "
                        "is run and compared with it)")  # fmt: skip
    parser.add_argument(
        "--update", action="store_true", help="replace only these methods' rows in the results"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads (default 1, as Snakemake's jobs)"
    )
    arguments = parser.parse_args(argv)
    torch.set_num_threads(arguments.threads)
    if arguments.seeds < 2:
        sys.exit("--seeds: need at least 2 seeds for a band")
    began = time.perf_counter()
    params = read_yaml(REPOSITORY / "params.yaml")
    params["experiments"][EXPERIMENT]["seeds"] = list(range(arguments.seeds))
    suite = load_suite(params, REPOSITORY / "params")
    methods = arguments.methods or list(suite.params.experiments[EXPERIMENT].methods)
    eager_from = None
    if arguments.eager_from:
        eager_from = json.loads(arguments.eager_from.read_text())["methods"]
    result: dict[str, Any] = {
        "command": " ".join(["python benchmarks/fast_on_cpu.py", *(argv or sys.argv[1:])]),
        "seeds": arguments.seeds, "environment": environment(torch.device("cpu")),
        "methods": [],
    }  # fmt: skip
    path = RESULTS / f"{arguments.name}.json"
    earlier = json.loads(path.read_text()) if arguments.update and path.exists() else None
    with tempfile.TemporaryDirectory() as scratch:
        teacher, result["teacher_acc1"] = _teacher(suite, Path(scratch))
        for method in methods:
            row = measure_method(suite, method, arguments.seeds, teacher, Path(scratch), eager_from)
            if earlier is None:
                result["methods"].append(row)
            else:  # the other methods' rows as the earlier command measured them
                rows = earlier["methods"]
                result["methods"] = [row if old["method"] == method else old for old in rows]
                earlier["methods"] = result["methods"]
                result["earlier_command"] = earlier.get("earlier_command", earlier["command"])
                result["updated_methods"] = methods
            result["wall_seconds"] = time.perf_counter() - began
            (RESULTS / f"{arguments.name}.json").write_text(json.dumps(result, indent=2) + "\n")
            (RESULTS / f"{arguments.name}.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
