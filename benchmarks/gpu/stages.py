"""The device kit's stages (benchmarks/gpu/kit.py runs them), each writing its JSON file to the
output folder after every row, so that what finished survives a deadline or a crash.

    a_parity     eager vs fast on the first steps of every method at CIFAR-10 shapes
    b_harness    the speed harness, ResNet-34 -> ResNet-18 at the published batches
    c_teacher    ResNet-34 teacher training: seconds per CIFAR-10 epoch
    d_reference  zju-vipa/CMI's own DFQ round against ours
    e_quick      the `quick` protocol on the CIFAR-10 JPEG copy: a teacher, then one method

`--cpu-size` shrinks every stage to what a CPU runs in minutes (small networks, batch 16, the
CUDA `fast` recipe on the CPU: DFKD_FAST_RECIPE=cuda), for the rehearsal.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from benchmarks import harness, parity
from dfkd.config import config_hash, load_suite, read_yaml, save_config
from dfkd.provenance import device_name

REPOSITORY = Path(__file__).resolve().parents[2]
SCRATCH = Path(os.environ.get("KIT_SCRATCH", "/tmp/kit"))


@dataclass(frozen=True)
class Sizes:
    """What each stage runs; `GPU` is the kit's purpose, `CPU` its rehearsal."""

    pair: str
    batch: int | None  # None: each method's published batch
    parity_rounds: int
    parity_steps: int
    harness: dict[str, int]
    teacher: str
    reference_pair: str
    reference_batch: int
    reference_rounds: int
    quick_pair: str
    quick_epochs: int | None  # None: the protocol's
    quick_rounds: int | None  # rounds per distillation epoch; None: the method's


GPU = Sizes(
    pair="resnet34-resnet18", batch=None, parity_rounds=2, parity_steps=5,
    harness={"warmup": 3, "steps": 5, "windows": 3, "loop_steps": 5, "loop_rounds": 1},
    teacher="resnet34", reference_pair="resnet34-resnet18", reference_batch=256,
    reference_rounds=20, quick_pair="resnet34-resnet18", quick_epochs=None, quick_rounds=None,
)  # fmt: skip
CPU = Sizes(
    pair="cnn_small-cnn_tiny", batch=16, parity_rounds=1, parity_steps=3,
    harness={"warmup": 1, "steps": 1, "windows": 1, "loop_steps": 2, "loop_rounds": 1},
    teacher="cnn_small", reference_pair="wrn16_1-wrn16_1", reference_batch=16,
    reference_rounds=2, quick_pair="cnn_small-cnn_tiny", quick_epochs=1, quick_rounds=2,
)  # fmt: skip


def environment(device: torch.device) -> dict[str, Any]:
    """The harness's environment (device, driver, torch, CUDA) and what else a result needs."""
    from importlib.metadata import PackageNotFoundError, version

    result = harness.environment(device)
    for package in ("torchvision", "kornia", "numpy", "triton"):
        try:
            result[package] = version(package)
        except PackageNotFoundError:
            result[package] = None
    result["cudnn"] = (
        torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    )
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        result["multiprocessors"] = properties.multi_processor_count
        result["memory_gib"] = properties.total_memory / 2**30
        query = "name,clocks.sm,clocks.max.sm,clocks.mem,power.limit,temperature.gpu"
        smi = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
                             capture_output=True, text=True, check=False)  # fmt: skip
        result["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    return result


class Stage:
    """One stage's JSON file: environment, rows, status; rewritten after every row."""

    def __init__(self, name: str, out: Path, device: torch.device, sizes: Sizes) -> None:
        self.path = out / f"{name}.json"
        self.began = time.perf_counter()
        self.data: dict[str, Any] = {
            "stage": name, "status": "running", "rows": [], "sizes": vars(sizes),
            "environment": environment(device),
        }  # fmt: skip

    def add(self, row: dict[str, Any]) -> None:
        self.data["rows"].append(row)
        self.save()

    def save(self, status: str | None = None) -> None:
        if status:
            self.data["status"] = status
        self.data["seconds"] = time.perf_counter() - self.began
        temporary = self.path.with_name(self.path.name + ".part")
        temporary.write_text(json.dumps(self.data, indent=1, default=str) + "\n")
        os.replace(temporary, self.path)


# The most of the time left that a stage may take when it starts (a stage stops starting new
# rows past it), so that one slow stage cannot starve those after it; e takes what is left.
FRACTION = {"a": 0.4, "b": 0.45, "c": 0.35, "d": 0.5, "e": 1.0}


@dataclass
class Context:
    out: Path
    until: float  # time.time() by which the stage in progress must have stopped
    sizes: Sizes
    cpu_size: bool
    device: torch.device

    def left(self) -> float:
        return self.until - time.time()

    def suite(self, params: dict | None = None):
        return load_suite(params or read_yaml(REPOSITORY / "params.yaml"), REPOSITORY / "params")


def methods_in_order(suite) -> list[str]:
    """The CIFAR-10 experiment's methods first, then every other params/methods file (variants,
    and methods added later), so that all registered methods are covered."""
    first = list(suite.params.experiments["cifar10"].methods)
    return first + [name for name in sorted(suite.methods) if name not in first]


def _guarded(stage: Stage, label: dict[str, Any], work) -> None:
    """Runs `work()` and adds its row; an exception becomes a row with the error."""
    try:
        stage.add({**label, **work()})
    except Exception as error:  # one method's failure must not cost the others their rows
        traceback.print_exc()
        stage.add({**label, "error": f"{type(error).__name__}: {error}"[:2000]})
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def parity_stage(ctx: Context) -> None:
    stage, suite = Stage("a_parity", ctx.out, ctx.device, ctx.sizes), ctx.suite()
    for index, name in enumerate(methods_in_order(suite)):
        if ctx.left() < 30:
            stage.add({"method": name, "error": "not run: deadline"})
            continue
        _guarded(stage, {"method": name}, lambda name=name, index=index: parity.compare(
            suite, name, "cifar10", ctx.sizes.pair, ctx.device, seed=0,
            rounds=ctx.sizes.parity_rounds, steps=ctx.sizes.parity_steps, batch=ctx.sizes.batch,
            cuda_recipe=ctx.cpu_size, forget_compiled=index == 0,
        ))  # fmt: skip
        print(f"a_parity {name}: {json.dumps(stage.data['rows'][-1].get('losses'))}", flush=True)
    stage.save("complete")


def _harness_arguments(ctx: Context) -> argparse.Namespace:
    return argparse.Namespace(batch_size=ctx.sizes.batch, after_epochs=0,
                              cuda_recipe=ctx.cpu_size, **ctx.sizes.harness)  # fmt: skip


def harness_stage(ctx: Context) -> None:
    stage, suite = Stage("b_harness", ctx.out, ctx.device, ctx.sizes), ctx.suite()
    arguments = _harness_arguments(ctx)
    for name in methods_in_order(suite):
        for mode in ("eager", "fast"):
            label = {"method": name, "compute": mode, "pair": ctx.sizes.pair}
            if ctx.left() < 20:
                stage.add({**label, "error": "not run: deadline"})
                continue
            _guarded(stage, label, lambda name=name, mode=mode: harness.measure_method(
                suite, name, "cifar10", ctx.sizes.pair, mode, arguments, ctx.device
            ))  # fmt: skip
            row = stage.data["rows"][-1]
            print(f"b_harness {name} {mode}: {row.get('rounds_per_s', row.get('error'))} "
                  "rounds/s", flush=True)  # fmt: skip
    stage.save("complete")


def teacher_stage(ctx: Context) -> None:
    stage, suite = Stage("c_teacher", ctx.out, ctx.device, ctx.sizes), ctx.suite()
    arguments = _harness_arguments(ctx)
    for mode in ("eager", "fast"):
        label = {"architecture": ctx.sizes.teacher, "compute": mode}
        _guarded(stage, label, lambda mode=mode: harness.measure_teacher(
            suite, "cifar10", ctx.sizes.teacher, mode, arguments, ctx.device
        ))  # fmt: skip
        row = stage.data["rows"][-1]
        if "seconds_per_epoch" in row:  # the FLOP floor at the planning rate of 790 TFLOP/s
            epoch_flop = row["tflop_per_s"] * 1e12 * row["seconds_per_epoch"]
            row["floor_seconds_per_epoch_at_790_tflops"] = epoch_flop / 790e12
            stage.save()
        print(f"c_teacher {mode}: {row.get('seconds_per_epoch', row.get('error'))} s/epoch",
              flush=True)  # fmt: skip
    stage.save("complete")


def reference_stage(ctx: Context) -> None:
    from benchmarks import reference_round

    stage = Stage("d_reference", ctx.out, ctx.device, ctx.sizes)
    archive = REPOSITORY / ".kit" / "reference" / "CMI.tar"
    checkout = SCRATCH / "reference" / "CMI"
    if not checkout.exists():
        checkout.mkdir(parents=True)
        with tarfile.open(archive) as tar:
            tar.extractall(checkout, filter="data")
    sizes = ctx.sizes
    _guarded(stage, {"pair": sizes.reference_pair}, lambda: reference_round.measure(
        checkout, sizes.reference_pair, sizes.reference_batch, "fast", os.cpu_count() or 1,
        warmup=2 if not ctx.cpu_size else 1, rounds=sizes.reference_rounds,
        cuda_recipe=ctx.cpu_size, until=ctx.until - 10,
    ))  # fmt: skip
    stage.save("complete")


def _quick_suite(ctx: Context):
    """The suite with the JPEG experiment of benchmarks/gpu/quick_cifar10_jpeg.yaml, its data
    under the scratch folder, never downloaded."""
    params = read_yaml(REPOSITORY / "params.yaml")
    overlay = read_yaml(REPOSITORY / "benchmarks" / "gpu" / "quick_cifar10_jpeg.yaml")
    experiment = overlay["experiments"]["cifar10_jpeg"]
    experiment["pairs"] = [ctx.sizes.quick_pair]
    params["experiments"] = {**params["experiments"], "cifar10_jpeg": experiment}
    params["data"] = {"root": str(SCRATCH / "data"), "download": False}
    return ctx.suite(params)


def _run_cli(ctx: Context, command: str, config, run_dir: Path, stop_at: float) -> dict:
    """`dfkd <command>` on a resolved config; SIGTERM at `stop_at` (the suite checkpoints and
    exits 143); the history it reached, from its metrics or its checkpoint."""
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml")
    began = time.perf_counter()
    config_file = str(run_dir / "config.yaml")
    process = subprocess.Popen(
        [sys.executable, "-m", "dfkd.cli", command, "--config", config_file, "--out-dir", run_dir]
    )
    try:
        status = process.wait(timeout=max(stop_at - time.time(), 1))
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        try:
            status = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            status = process.wait()
    result: dict[str, Any] = {"exit_status": status, "seconds": time.perf_counter() - began}
    metrics = run_dir / "metrics.json"
    if metrics.exists():
        data = json.loads(metrics.read_text())
        history = data.get("history", [])
        result["summary"] = data.get("summary")
    else:
        from dfkd.checkpoint import load_run_state
        from dfkd.distill import checkpoint_key

        key = checkpoint_key(config) if command == "distill" else config_hash(config)
        state = load_run_state(run_dir, key)
        history = state["loop"]["history"] if state else []
    if not history and (run_dir / "history.csv").exists():
        import pandas as pd

        history = pd.read_csv(run_dir / "history.csv").to_dict("records")
    result["history"] = history
    result["epochs_completed"] = len(history)
    return result


def quick_stage(ctx: Context, method: str) -> None:
    stage = Stage("e_quick", ctx.out, ctx.device, ctx.sizes)
    try:
        _quick(ctx, method, stage)
    except Exception as error:
        traceback.print_exc()
        stage.add({"run": "setup", "error": f"{type(error).__name__}: {error}"[:2000]})
        stage.save("failed")


def _quick(ctx: Context, method: str, stage: Stage) -> None:
    data = SCRATCH / "data"
    if not (data / "cifar10-jpeg").exists():
        data.mkdir(parents=True, exist_ok=True)
        began = time.perf_counter()
        with tarfile.open(REPOSITORY / ".kit" / "data" / "cifar10-jpeg.tar.gz") as tar:
            tar.extractall(data, filter="data")
        stage.data["extract_seconds"] = time.perf_counter() - began
    suite = _quick_suite(ctx)
    protocol = suite.protocol_of("cifar10_jpeg")
    teacher_name, student_name = ctx.sizes.quick_pair.split("-")
    teacher = suite.teacher_config(protocol, "cifar10_jpeg", teacher_name)
    if ctx.sizes.quick_epochs:
        optimizer = replace(teacher.recipe.optimizer, milestones=())
        recipe = replace(teacher.recipe, epochs=ctx.sizes.quick_epochs, optimizer=optimizer)
        teacher = replace(teacher, recipe=recipe)
    # The distillation needs a minute at least: the teacher stops in time to leave it one.
    row = _run_cli(ctx, "train-teacher", teacher, SCRATCH / "quick" / "teacher", ctx.until - 60)
    stage.add({"run": "teacher", "architecture": teacher_name, "compute": teacher.compute,
               "epochs_planned": teacher.recipe.epochs, **row})  # fmt: skip
    checkpoint = SCRATCH / "quick" / "teacher" / "teacher.pt"
    if not checkpoint.exists():
        stage.save("partial: the teacher did not finish; no distillation")
        return
    config = suite.run_config(protocol, "cifar10_jpeg", teacher_name, student_name, method, 0,
                              str(checkpoint))  # fmt: skip
    loop = config.loop
    if ctx.sizes.quick_epochs:
        loop = replace(
            loop, epochs=ctx.sizes.quick_epochs, rounds_per_epoch=ctx.sizes.quick_rounds,
            batch_size=ctx.sizes.batch or loop.batch_size,
            student_optimizer=replace(loop.student_optimizer, milestones=()),
        )  # fmt: skip
        config = replace(config, loop=loop)
    row = _run_cli(ctx, "distill", config, SCRATCH / "quick" / method, ctx.until - 5)
    stage.add({"run": "distillation", "method": method, "pair": ctx.sizes.quick_pair,
               "compute": config.compute, "epochs_planned": loop.epochs, **row})  # fmt: skip
    done = row["epochs_completed"] == loop.epochs
    stage.save("complete" if done else "partial: stopped at the deadline")


STAGES = {"a": parity_stage, "b": harness_stage, "c": teacher_stage, "d": reference_stage}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="runs kit stages in this process")
    parser.add_argument("stages", nargs="+", choices=[*STAGES, "e"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--until", type=float, required=True, help="time.time() to stop by")
    parser.add_argument("--cpu-size", action="store_true")
    parser.add_argument("--quick-method", default="dfq")
    arguments = parser.parse_args(argv)
    from dfkd.runtime import choose_device

    device = choose_device()
    torch.backends.cudnn.benchmark = device.type == "cuda"
    # Every method compiles its own variants of the same two networks in one process; the
    # default limit of 8 per function would send the later ones back to eager, unseen.
    torch._dynamo.config.cache_size_limit = 64
    ctx = Context(arguments.out, arguments.until, CPU if arguments.cpu_size else GPU,
                  arguments.cpu_size, device)  # fmt: skip
    print(f"stages {' '.join(arguments.stages)} on {device_name(device)}", flush=True)
    for name in arguments.stages:
        now = time.time()
        ctx.until = now + FRACTION[name] * (arguments.until - now)
        if name == "e":
            quick_stage(ctx, arguments.quick_method)
        else:
            STAGES[name](ctx)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
