"""Eager against `fast` on the first steps of a method: each step's loss, and what torch.compile
reports (graph breaks with their reasons, distinct graphs, recompilations).

Both runs start from the same weights and seed and go through the suite's own loop
(dfkd.loop.distill) for `rounds` rounds of at most `steps` steps of each phase; the method's
`generator_step` and `student_loss` are wrapped to record the sum of their terms at every step.
Used by benchmarks/fast_on_cpu.py (the embedded default, the CUDA recipe on the CPU) and by the
device kit (benchmarks/gpu/kit.py, CIFAR-10 shapes on a GPU).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from benchmarks.harness import SilentProgress
from dfkd.checkpoint import seed_everything
from dfkd.compute import Compute
from dfkd.config import LoopConfig
from dfkd.data import dataset_info
from dfkd.loop import LoopState, distill
from dfkd.methods import METHODS
from dfkd.methods.base import DFKDMethod, LossTerms, method_context
from dfkd.models import build_model
from dfkd.optim import build_optimizer
from dfkd.runtime import StopRequest, TrainingClock
from dfkd.schema import from_dict


@dataclass
class Built:
    """A method, its student and optimizer, built as dfkd.distill builds a run."""

    method: DFKDMethod
    student: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loop: LoopConfig
    compute: Compute


def build(
    suite, method_name: str, dataset: str, pair: str, compute: Compute, seed: int,
    teacher_state: dict[str, torch.Tensor] | None = None, batch: int | None = None,
) -> Built:  # fmt: skip
    """The method's run on `dataset`/`pair` at its published schedule (`batch` overrides the
    batch); the teacher from `teacher_state`, or random weights drawn from `seed`."""
    schedule, hyperparameters = suite.method_settings(method_name, dataset, pair)
    if batch is not None:
        schedule = replace(schedule, batch_size=batch)
    info = dataset_info(dataset)
    device, layout = compute.device, compute.memory_format
    teacher_name, student_name = pair.split("-")
    seed_everything(seed)
    teacher = build_model(teacher_name, info.num_classes)
    if teacher_state is not None:
        teacher.load_state_dict(teacher_state)
    teacher = teacher.to(device, memory_format=layout).eval().requires_grad_(False)
    teacher = compute.prepare(teacher)
    seed_everything(seed)
    student = compute.prepare(
        build_model(student_name, info.num_classes).to(device, memory_format=layout)
    )
    implementation = METHODS.get(suite.methods[method_name].implementation)
    config = from_dict(implementation.config_class, hyperparameters, method_name)
    context = method_context(
        info, teacher, student, schedule.batch_size, schedule.epochs, device, layout,
        compute.optimizer_options,
    )  # fmt: skip
    method = implementation(config, context)
    optimizer, scheduler = build_optimizer(
        student.parameters(), schedule.student_optimizer, schedule.epochs,
        compute.optimizer_options,
    )  # fmt: skip
    return Built(method, student, optimizer, scheduler, schedule, compute)


def _recorded(step: Callable[[], LossTerms], phase: str, log: list[tuple[str, float]]):
    def wrapped() -> LossTerms:
        terms = step()
        log.append((phase, float(torch.stack([t.detach().float() for t in terms.values()]).sum())))
        return terms

    return wrapped


def first_steps(built: Built, rounds: int, steps: int) -> list[tuple[str, float]]:
    """(phase, summed loss) of every step of `rounds` rounds of at most `steps` steps per phase,
    in the loop's order."""
    loop = replace(
        built.loop, epochs=1, rounds_per_epoch=rounds,
        generator_steps_per_round=min(built.loop.generator_steps_per_round, steps),
        student_steps_per_round=min(built.loop.student_steps_per_round, steps),
        student_optimizer=replace(built.loop.student_optimizer, milestones=()),
    )  # fmt: skip
    log: list[tuple[str, float]] = []
    method = built.method
    method.generator_step = _recorded(method.generator_step, "generator", log)
    method.student_loss = _recorded(method.student_loss, "student", log)
    device = built.compute.device
    distill(
        method, built.student, built.optimizer, built.scheduler, loop, LoopState(),
        TrainingClock(device), dict, lambda state: None,
        SilentProgress("parity", 1, rounds, "round"), StopRequest(), built.compute.autocast,
    )  # fmt: skip
    return log


def compiler_report() -> dict[str, Any]:
    """What torch._dynamo counted since the last reset: graph breaks by reason, distinct graphs,
    frames compiled, and the guard failures that made it compile a function again (by reason)."""
    from torch._dynamo.utils import counters, guard_failures

    recompiled: dict[str, int] = {}
    for reasons in guard_failures.values():
        for reason in reasons:
            text = str(reason).splitlines()[0][:200]
            recompiled[text] = recompiled.get(text, 0) + 1
    return {
        "graph_breaks": dict(counters["graph_break"]),
        "unique_graphs": counters["stats"].get("unique_graphs", 0),
        "frames_compiled": counters["frames"].get("ok", 0),
        "guard_failures": sum(recompiled.values()),
        "guard_failure_reasons": recompiled,
    }


def reset_compiler(forget_compiled: bool = True) -> None:
    """Clears torch._dynamo's counters and, with `forget_compiled`, its compiled code, so that
    everything compiled next is counted (the on-disk inductor cache, TORCHINDUCTOR_CACHE_DIR,
    is kept either way). Without it, code compiled earlier is reused and not counted again."""
    from torch._dynamo.utils import counters, guard_failures

    if forget_compiled:
        torch._dynamo.reset()
    counters.clear()
    guard_failures.clear()


def largest_difference(
    eager: list[tuple[str, float]], fast: list[tuple[str, float]]
) -> dict[str, dict[str, Any]]:
    """Per phase: the largest |fast - eager| of a step's loss, relative to max(|eager|, 1e-3)
    too, and the step (1-based, within the phase) where each is reached."""
    if [phase for phase, _ in eager] != [phase for phase, _ in fast]:
        raise ValueError("the two runs took different steps")
    result: dict[str, dict[str, Any]] = {}
    counts: dict[str, int] = {}
    for (phase, ours), (_, theirs) in zip(eager, fast, strict=True):
        counts[phase] = counts.get(phase, 0) + 1
        entry = result.setdefault(
            phase,
            {
                "steps": 0,
                "max_abs": 0.0,
                "max_abs_step": None,
                "max_rel": 0.0,
                "max_rel_step": None,
                "first_abs": None,
                "finite": True,
            },
        )
        entry["steps"] = counts[phase]
        if not (math.isfinite(ours) and math.isfinite(theirs)):
            entry["finite"] = False
            continue
        difference = abs(theirs - ours)
        relative = difference / max(abs(ours), 1e-3)
        if entry["first_abs"] is None:
            entry["first_abs"] = difference
        if difference >= entry["max_abs"]:
            entry["max_abs"], entry["max_abs_step"] = difference, counts[phase]
        if relative >= entry["max_rel"]:
            entry["max_rel"], entry["max_rel_step"] = relative, counts[phase]
    return result


def compare(
    suite, method_name: str, dataset: str, pair: str, device: torch.device, seed: int,
    rounds: int, steps: int, teacher_state: dict[str, torch.Tensor] | None = None,
    batch: int | None = None, cuda_recipe: bool = False, forget_compiled: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Eager and fast on the same first steps of one method: the loss differences, the
    compiler's report of the fast run (of all it compiled, or with `forget_compiled` False, of
    what it compiled beyond the code earlier calls left), and each run's seconds (the fast
    one's compilation in)."""
    row: dict[str, Any] = {"method": method_name, "dataset": dataset, "pair": pair}
    logs = {}
    for mode in ("eager", "fast"):
        compute = Compute(mode, device, cuda_recipe=cuda_recipe)
        if mode == "fast":
            reset_compiler(forget_compiled)
        began = time.perf_counter()
        built = build(suite, method_name, dataset, pair, compute, seed, teacher_state, batch)
        logs[mode] = first_steps(built, rounds, steps)
        row[f"{mode}_seconds"] = time.perf_counter() - began
        row["batch"] = built.loop.batch_size
    row["compiler"] = compiler_report()
    row["losses"] = largest_difference(logs["eager"], logs["fast"])
    row["first_losses"] = {mode: log[:4] for mode, log in logs.items()}
    return row
