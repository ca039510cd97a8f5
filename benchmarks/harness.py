"""Speed harness: every method's loop and teacher training, through the suite's own code.

    python benchmarks/harness.py                                  # digits pair, CI-sized
    python benchmarks/harness.py --dataset cifar10 --pairs resnet34-resnet18 wrn40_2-wrn16_2 \\
        --compute eager fast --name h200_cifar10                  # on a GPU

For every method (params/methods/*.yaml, with the dataset's and the pair's overrides), pair and
compute mode (dfkd/compute.py) it builds the teacher, the student and the method exactly as a run
does, warms up (which compiles, in `fast` on CUDA), then reports the median over `--windows`
windows of:

- generator steps/s and synthetic images/s; student steps/s and student images/s;
- FLOPs of one generator step and one student step (torch.utils.flop_counter: convolutions and
  matrix products, forward and backward), the achieved TFLOP/s and, on a device whose peak is
  known, the utilisation against it;
- rounds/s and seconds per round at the published interleaving (each of the round's syntheses:
  n_G generator steps and finish_synthesis; then n_S student steps) from the step times, and, as
  a check on them, the rounds the loop itself runs (dfkd.loop.distill) with at most
  `--loop-steps` steps of each phase;
- the peak device memory; the projected hours of the full published run, its warm-up epochs
  included (evaluation excluded), and of its synthesis alone (the warm-up's and every round's
  syntheses: what Fast-DFKD's README reports as "time"); a warm-up synthesis is timed as a later
  one, with the adversarial term's student pass, so it is slightly overestimated;
- teacher training: images/s and seconds per epoch at the recipe's batch;
- the seconds of the warm-up steps (compilation, in `fast` on CUDA or with `--cuda-recipe`).

Weights, images and label embeddings (the stand-in's) are random: a step's cost does not depend
on what the networks have learnt.
Writes `benchmarks/results/<name>.json` and `.md` with the device, driver, torch and CUDA.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from dfkd.compute import Compute
from dfkd.config import LoopConfig, load_suite, read_yaml
from dfkd.data import dataset_info
from dfkd.label_embeddings import random_orthogonal
from dfkd.loop import LoopState, distill
from dfkd.methods import METHODS
from dfkd.methods.base import method_context
from dfkd.models import build_model
from dfkd.optim import build_optimizer
from dfkd.progress import Progress
from dfkd.provenance import device_name
from dfkd.runtime import StopRequest, TrainingClock, choose_device, synchronize
from dfkd.schema import from_dict

REPOSITORY = Path(__file__).resolve().parents[1]
RESULTS = REPOSITORY / "benchmarks" / "results"
# Dense peaks in FLOP/s by device name and precision: NVIDIA H100/H200 SXM datasheets (tf32 is
# what float32 convolutions use by default in PyTorch).
PEAKS = {"H200": {"bfloat16": 989e12, "tf32": 494e12}, "H100": {"bfloat16": 989e12, "tf32": 494e12}}
# Training images per epoch where the data is not loaded here (the datasets' own sizes).
TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000, "tiny_imagenet": 100_000, "digits": 1_347}


def _median_seconds(
    step: Callable[[], Any], device: torch.device, steps: int, windows: int
) -> float:
    """Median over `windows` of the seconds per call of `step`, `steps` calls per window."""
    seconds = []
    for _ in range(windows):
        synchronize(device)
        began = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize(device)
        seconds.append((time.perf_counter() - began) / steps)
    return statistics.median(seconds)


def _flops(step: Callable[[], Any]) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return counter.get_total_flops()


def _peak(device: torch.device, compute: Compute) -> float | None:
    name = device_name(device) or ""
    precision = "bfloat16" if compute.mixed_precision else "tf32"
    return next((peaks[precision] for key, peaks in PEAKS.items() if key in name), None)


class SilentProgress(Progress):
    """The loop's progress reporting, kept quiet while a benchmark times it."""

    def advance(self, units: float = 1) -> None:
        pass

    def epoch(self, record: dict[str, Any]) -> None:
        pass


def measure_method(
    suite, method_name: str, dataset: str, pair: str, mode: str,
    arguments: argparse.Namespace, device: torch.device,
) -> dict[str, Any]:  # fmt: skip
    schedule, hyperparameters = suite.method_settings(method_name, dataset, pair)
    batch = arguments.batch_size or schedule.batch_size
    compute = Compute(mode, device, cuda_recipe=arguments.cuda_recipe)
    info = dataset_info(dataset)
    teacher_name, student_name = pair.split("-")
    layout = compute.memory_format
    teacher = build_model(teacher_name, info.num_classes).to(device, memory_format=layout)
    teacher = compute.prepare(teacher.eval().requires_grad_(False))
    student = compute.prepare(
        build_model(student_name, info.num_classes).to(device, memory_format=layout)
    )
    implementation = METHODS.get(suite.methods[method_name].implementation)
    config = from_dict(implementation.config_class, hyperparameters, method_name)
    context = method_context(
        info, teacher, student, batch, schedule.epochs, device, layout, compute.optimizer_options,
        label_embeddings=lambda name: random_orthogonal(info.num_classes),
    )  # fmt: skip
    method = implementation(config, context)
    for epoch in range(1, arguments.after_epochs + 1):  # a curriculum's position (CuDFKD)
        method.on_epoch_end(epoch)
    optimizer, scheduler = build_optimizer(
        student.parameters(), schedule.student_optimizer, schedule.training_epochs,
        compute.optimizer_options,
    )  # fmt: skip

    def generator_step() -> None:
        student.eval().requires_grad_(False)
        with compute.autocast():
            method.generator_step()

    def student_step() -> None:
        student.train().requires_grad_(True)
        with compute.autocast():
            loss = torch.stack(list(method.student_loss().values())).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    row: dict[str, Any] = {"method": method_name, "pair": pair, "compute": mode, "batch": batch}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synthesis_batch = getattr(method, "synthesis_batch_size", batch)
    for name, step, images in (
        ("generator", generator_step, synthesis_batch),
        ("student", student_step, batch),
    ):
        if name == "student":
            method.finish_synthesis()  # as the loop does: a pool method commits its batch
        # The allocator, cuDNN's autotuning and, in `fast`, compilation.
        warmup = arguments.warmup * _median_seconds(step, device, arguments.warmup, 1)
        seconds = _median_seconds(step, device, arguments.steps, arguments.windows)
        row[f"{name}_warmup_seconds"] = warmup
        flops = _flops(step)
        row[f"{name}_steps_per_s"] = 1 / seconds
        row[f"{name}_images_per_s"] = images / seconds
        row[f"{name}_gflop_per_step"] = flops / 1e9
        row[f"{name}_tflop_per_s"] = flops / seconds / 1e12
    finish = _median_seconds(method.finish_synthesis, device, 1, arguments.windows)
    n_g, n_s = schedule.generator_steps_per_round, schedule.student_steps_per_round
    synthesis = n_g / row["generator_steps_per_s"] + finish  # seconds of one synthesis
    round_synthesis = schedule.syntheses_per_round * synthesis
    round_seconds = round_synthesis + n_s / row["student_steps_per_s"]
    work = (
        schedule.syntheses_per_round * n_g * row["generator_gflop_per_step"]
        + n_s * row["student_gflop_per_step"]
    )
    row["rounds_per_s"] = 1 / round_seconds
    row["round_seconds"] = round_seconds
    row["round_synthesis_seconds"] = round_synthesis
    row["round_tflop_per_s"] = work / round_seconds / 1e3
    peak = _peak(device, compute)
    row["utilisation"] = row["round_tflop_per_s"] * 1e12 / peak if peak else None
    warmup = schedule.warmup_epochs * schedule.warmup_syntheses_per_epoch * synthesis
    rounds = schedule.training_epochs * schedule.rounds_per_epoch
    row["projected_hours"] = (warmup + rounds * round_seconds) / 3600
    row["projected_synthesis_hours"] = (warmup + rounds * round_synthesis) / 3600
    row["student_images"] = schedule.student_images
    row.update(_loop_check(method, student, optimizer, scheduler, schedule, row, compute,
                           arguments, finish))  # fmt: skip
    row["peak_memory_gib"] = (
        torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    )
    return row


def _loop_check(
    method, student, optimizer, scheduler, schedule: LoopConfig, row: dict, compute: Compute,
    arguments: argparse.Namespace, finish: float,
) -> dict:  # fmt: skip
    """Rounds of at most `--loop-steps` steps per phase through dfkd.loop.distill, one window
    per epoch; the ratio to the same round composed from the step times."""
    n_g = min(schedule.generator_steps_per_round, arguments.loop_steps)
    n_s = min(schedule.student_steps_per_round, arguments.loop_steps)
    optimizer_config = replace(schedule.student_optimizer, milestones=())  # a few epochs only
    loop = replace(schedule, epochs=arguments.windows, rounds_per_epoch=arguments.loop_rounds,
                   generator_steps_per_round=n_g, student_steps_per_round=n_s,
                   student_optimizer=optimizer_config, warmup_epochs=0,
                   warmup_syntheses_per_epoch=0)  # fmt: skip
    device = compute.device
    ends: list[float] = []

    def window_end() -> dict[str, float]:
        synchronize(device)
        ends.append(time.perf_counter())
        return {}

    synchronize(device)
    began = time.perf_counter()
    distill(
        method, student, optimizer, scheduler, loop, LoopState(), TrainingClock(device),
        window_end, lambda state: None, SilentProgress("harness", loop.epochs, 1, "round"),
        StopRequest(), compute.autocast,
    )  # fmt: skip
    windows = [b - a for a, b in zip([began, *ends[:-1]], ends, strict=True)]
    loop_round = statistics.median(windows) / loop.rounds_per_epoch
    synthesis = n_g / row["generator_steps_per_s"] + finish
    composed = loop.syntheses_per_round * synthesis + n_s / row["student_steps_per_s"]
    return {"loop_round_steps": [n_g, n_s], "loop_over_composed": loop_round / composed}


def measure_teacher(
    suite, dataset: str, architecture: str, mode: str, arguments: argparse.Namespace,
    device: torch.device,
) -> dict[str, Any]:  # fmt: skip
    info = dataset_info(dataset)
    recipe = suite.teachers[dataset]
    compute = Compute(mode, device, cuda_recipe=arguments.cuda_recipe)
    model = compute.prepare(
        build_model(architecture, info.num_classes).to(device, memory_format=compute.memory_format)
    ).train()
    optimizer, _ = build_optimizer(
        model.parameters(), recipe.optimizer, recipe.epochs, compute.optimizer_options
    )
    size = info.image_size
    images = torch.randn(recipe.batch_size, 3, size, size, device=device)
    images = images.contiguous(memory_format=compute.memory_format)
    labels = torch.randint(info.num_classes, (recipe.batch_size,), device=device)

    def step() -> None:
        with compute.autocast():
            loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    warmup = arguments.warmup * _median_seconds(step, device, arguments.warmup, 1)
    seconds = _median_seconds(step, device, arguments.steps, arguments.windows)
    per_second = recipe.batch_size / seconds
    return {"architecture": architecture, "compute": mode, "batch": recipe.batch_size,
            "warmup_seconds": warmup,
            "images_per_s": per_second, "seconds_per_epoch": TRAIN_IMAGES[dataset] / per_second,
            "tflop_per_s": _flops(step) / seconds / 1e12}  # fmt: skip


def environment(device: torch.device) -> dict[str, Any]:
    driver = None
    if device.type == "cuda":
        try:
            query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
            driver = subprocess.run(query, capture_output=True, text=True).stdout.split()[0]
        except (OSError, IndexError):
            driver = None
    return {"device": device_name(device), "device_type": device.type, "driver": driver,
            "torch": torch.__version__, "cuda": torch.version.cuda,
            "python": platform.python_version(), "threads": torch.get_num_threads()}  # fmt: skip


def _markdown(result: dict[str, Any]) -> str:
    env = result["environment"]
    lines = [
        f"# Speed harness: {result['dataset']} ({result['command']})",
        "",
        f"{env['device']} ({env['device_type']}), driver {env['driver']}, torch {env['torch']}, "
        f"CUDA {env['cuda']}, Python {env['python']}, {env['threads']} CPU threads.",
        "",
        "| Pair | Method | Compute | Batch | G steps/s | Synth img/s | S img/s | s/round "
        "| TFLOP/s | Util. | Peak GiB | Loop/composed | Synthesis (h) | Full run (h) |",
        "|:---|:---|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    fmt = lambda v, spec: "–" if v is None else format(v, spec)  # noqa: E731
    for r in result["methods"]:
        lines.append(
            f"| {r['pair']} | {r['method']} | {r['compute']} | {r['batch']} "
            f"| {r['generator_steps_per_s']:.3g} | {r['generator_images_per_s']:.0f} "
            f"| {r['student_images_per_s']:.0f} | {r['round_seconds']:.3g} "
            f"| {r['round_tflop_per_s']:.3g} | {fmt(r['utilisation'], '.1%')} "
            f"| {fmt(r['peak_memory_gib'], '.2f')} | {r['loop_over_composed']:.2f} "
            f"| {r['projected_synthesis_hours']:.3g} | {r['projected_hours']:.3g} |"
        )
    lines += ["", "| Teacher | Compute | Batch | Images/s | Seconds/epoch | TFLOP/s |",
              "|:---|:---|---:|---:|---:|---:|"]  # fmt: skip
    for t in result["teachers"]:
        lines.append(
            f"| {t['architecture']} | {t['compute']} | {t['batch']} | {t['images_per_s']:.0f} "
            f"| {t['seconds_per_epoch']:.3g} | {t['tflop_per_s']:.3g} |"
        )
    ratios = result.get("fast_over_eager") or {}
    if ratios:
        lines += ["", "fast / eager rounds per second: " + ", ".join(
            f"{key} {value:.2f}x" for key, value in ratios.items()
        ) + "."]  # fmt: skip
    lines += [
        "",
        "Medians over the windows after warm-up; FLOPs count convolutions and matrix products "
        "(forward and backward). Seconds per round and the hours compose the published round "
        "(each synthesis: n_G generator steps and finish_synthesis; then n_S student steps) and "
        "the warm-up's syntheses from the step times; Synthesis (h) counts the syntheses alone "
        '(Fast-DFKD\'s "time"), Full run (h) the student steps too; Loop/composed is the '
        "loop's own round time over that composition (shortened rounds).",
    ]
    return "\n".join(lines) + "\n"


def run(argv: list[str]) -> dict[str, Any]:
    """Every measurement of the command line `argv`, as written to the JSON file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--pairs", nargs="+", default=["cnn_small-cnn_tiny"])
    parser.add_argument("--methods", nargs="*", help="default: every params/methods/*.yaml")
    parser.add_argument("--compute", nargs="+", default=["eager", "fast"])
    parser.add_argument("--batch-size", type=int, help="default: each method's published batch")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=10, help="steps per window")
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--loop-steps", type=int, default=20, help="steps per phase, loop check")
    parser.add_argument("--loop-rounds", type=int, default=2, help="rounds per loop window")
    parser.add_argument("--after-epochs", type=int, default=0,
                        help="time a method whose run has finished this many epochs")  # fmt: skip
    parser.add_argument("--threads", type=int, help="CPU threads (default: torch's choice)")
    parser.add_argument("--cuda-recipe", action="store_true",
                        help="`fast` as on CUDA on any device (dfkd/compute.py)")  # fmt: skip
    parser.add_argument("--name", default=None, help="results file name (default: no file)")
    arguments = parser.parse_args(argv)
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    device = choose_device()
    torch.backends.cudnn.benchmark = device.type == "cuda"
    suite = load_suite(read_yaml(REPOSITORY / "params.yaml"), REPOSITORY / "params")
    names = arguments.methods or sorted(suite.methods)
    rows, teachers = [], []
    for pair in arguments.pairs:
        for mode in arguments.compute:
            for name in names:
                row = measure_method(suite, name, arguments.dataset, pair, mode, arguments, device)
                rows.append(row)
                print(f"{pair} {name:>16} {mode:>5}: {row['round_seconds']:.3g} s/round, "
                      f"{row['student_images_per_s']:.0f} student img/s, "
                      f"{row['round_tflop_per_s']:.3g} TFLOP/s, synthesis "
                      f"{row['projected_synthesis_hours']:.3g} h, "
                      f"full run {row['projected_hours']:.3g} h", flush=True)  # fmt: skip
    for architecture in sorted({pair.split("-")[0] for pair in arguments.pairs}):
        for mode in arguments.compute:
            teachers.append(measure_teacher(
                suite, arguments.dataset, architecture, mode, arguments, device
            ))  # fmt: skip
    rounds = {(r["pair"], r["method"], r["compute"]): r["rounds_per_s"] for r in rows}
    ratios = {
        f"{pair}/{method}": rounds[(pair, method, "fast")] / rounds[(pair, method, "eager")]
        for pair, method, mode in rounds
        if mode == "fast" and (pair, method, "eager") in rounds
    }
    return {"command": " ".join(["python benchmarks/harness.py", *argv]),
            "name": arguments.name, "dataset": arguments.dataset,
            "environment": environment(device), "methods": rows, "teachers": teachers,
            "fast_over_eager": ratios}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    result = run(sys.argv[1:] if argv is None else argv)
    text = _markdown(result)
    print(text)
    if result["name"]:
        (RESULTS / f"{result['name']}.json").write_text(json.dumps(result, indent=2) + "\n")
        (RESULTS / f"{result['name']}.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
