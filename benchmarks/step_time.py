"""Time one generator step and one student step of each method, through the real method objects.

    python benchmarks/step_time.py                                    # digits pair, CPU default
    python benchmarks/step_time.py --dataset cifar10 --pair resnet34-resnet18 --device cuda

For every method variant in params/methods/ (with its overrides for the dataset and pair) this
builds the teacher, student and method exactly as a run does, performs warm-up steps (not timed),
then times `--windows` windows of `--steps` steps each, synchronising the device around every
window, and prints the median per-step time, images per second and the peak device memory.
Weights are random: the cost of a step does not depend on what the networks have learnt.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from dfkd.config import load_suite, read_yaml
from dfkd.data import dataset_info
from dfkd.methods import METHODS
from dfkd.methods.base import method_context
from dfkd.models import build_model
from dfkd.provenance import device_name
from dfkd.runtime import choose_device, configure_determinism, memory_format, synchronize
from dfkd.schema import from_dict

REPOSITORY = Path(__file__).resolve().parents[1]


def _windows(step, device: torch.device, steps: int, windows: int) -> list[float]:
    """Seconds per step in each window."""
    seconds = []
    for _ in range(windows):
        synchronize(device)
        began = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize(device)
        seconds.append((time.perf_counter() - began) / steps)
    return seconds


def measure(method_name: str, dataset: str, pair: str, batch_size: int | None, steps: int,
            windows: int, device: torch.device, after_epochs: int = 0) -> dict:  # fmt: skip
    suite = load_suite(read_yaml(REPOSITORY / "params.yaml"), REPOSITORY / "params")
    schedule, hyperparameters = suite.method_settings(method_name, dataset, pair)
    batch = batch_size or schedule.batch_size
    info = dataset_info(dataset)
    teacher_name, student_name = pair.split("-")
    layout = memory_format(device)
    teacher = build_model(teacher_name, info.num_classes).to(device, memory_format=layout)
    teacher.eval().requires_grad_(False)
    student = build_model(student_name, info.num_classes).to(device, memory_format=layout)
    implementation = METHODS.get(suite.methods[method_name].implementation)
    config = from_dict(implementation.config_class, hyperparameters, method_name)
    context = method_context(info, teacher, student, batch, schedule.epochs, device, layout)
    method = implementation(config, context)
    for epoch in range(1, after_epochs + 1):  # a curriculum's position (CuDFKD's alpha_adv)
        method.on_epoch_end(epoch)
    optimizer = torch.optim.SGD(student.parameters(), lr=1e-3, momentum=0.9)

    def generator_step() -> None:
        student.eval().requires_grad_(False)
        method.generator_step()

    def student_step() -> None:
        student.train().requires_grad_(True)
        loss = torch.stack(list(method.student_loss().values())).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    results = {"method": method_name, "dataset": dataset, "pair": pair, "batch_size": batch,
               "after_epochs": after_epochs}  # fmt: skip
    for name, step in (("generator_step", generator_step), ("student_step", student_step)):
        if name == "student_step":
            method.finish_synthesis()  # as the loop does: a pool method commits its batch
        _windows(step, device, steps=2, windows=1)  # warm-up: allocator, cuDNN autotuning
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        per_step = statistics.median(_windows(step, device, steps, windows))
        results[f"{name}_ms"] = 1000 * per_step
        images = (
            getattr(method, "synthesis_batch_size", batch) if name == "generator_step" else batch
        )
        results[f"{name}_images_per_second"] = images / per_step
        if device.type == "cuda":
            results[f"{name}_peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    rounds = schedule.generator_steps_per_round, schedule.student_steps_per_round
    epoch_seconds = (
        schedule.rounds_per_epoch
        * (rounds[0] * results["generator_step_ms"] + rounds[1] * results["student_step_ms"])
        / 1000
    )
    results["published_epoch_seconds"] = epoch_seconds  # at this batch size, evaluation excluded
    results["published_run_hours"] = epoch_seconds * schedule.epochs / 3600
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--pair", default="cnn_small-cnn_tiny")
    parser.add_argument("--methods", nargs="*", help="default: every params/methods/*.yaml")
    parser.add_argument("--batch-size", type=int, help="default: the method's published batch")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--threads", type=int, help="CPU threads (default: torch's choice)")
    parser.add_argument(
        "--after-epochs", type=int, default=0,
        help="time the steps of a method whose run has finished this many epochs (default: 0)",
    )  # fmt: skip
    parser.add_argument("--output", help="also write the results as JSON here")
    arguments = parser.parse_args()
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    device = choose_device()
    configure_determinism(False, device)
    names = arguments.methods or sorted(
        p.stem for p in (REPOSITORY / "params/methods").glob("*.yaml")
    )
    print(f"device: {device_name(device)} ({device.type}), torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}")  # fmt: skip
    rows = []
    for name in names:
        row = measure(
            name, arguments.dataset, arguments.pair, arguments.batch_size, arguments.steps,
            arguments.windows, device, arguments.after_epochs,
        )  # fmt: skip
        rows.append(row)
        print(
            f"{name:>14}  batch {row['batch_size']:>4}  "
            f"generator step {row['generator_step_ms']:8.2f} ms "
            f"({row['generator_step_images_per_second']:9.0f} img/s)  "
            f"student step {row['student_step_ms']:8.2f} ms "
            f"({row['student_step_images_per_second']:9.0f} img/s)  "
            f"full schedule: {row['published_run_hours']:.2f} h"
        )
    if arguments.output:
        Path(arguments.output).write_text(json.dumps(
            {"device": device_name(device), "torch": torch.__version__, "results": rows}, indent=2
        ) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
