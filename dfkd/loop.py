"""The one distillation loop, shared by every method.

    method.pretrain()   (once, on a fresh run; student frozen, eval mode)
    for each epoch:
        for each of `rounds_per_epoch` rounds:
            `generator_steps_per_round` x method.generator_step()   (student frozen, eval mode)
            `student_steps_per_round`   x method.student_loss() -> backward -> SGD step
        student lr schedule step; method.on_epoch_end(epoch)
    (generator steps and student losses inside the compute mode's autocast; backward outside it
    for the student, inside a generator step's own optimisation)
        evaluate on the full test set; append to the history; checkpoint

Loss terms are accumulated on the device and read once per epoch, so no step synchronises with
the host. A non-finite term stops the run after that epoch with the term, epoch and step named;
the last checkpoint (end of the previous epoch) stays the latest good state.

A stop request (SIGTERM/SIGINT) is honoured at the next round boundary: the loop writes a
checkpoint that includes the position inside the epoch and raises `Interrupted`; starting the
run again continues from there, with the same result as an uninterrupted run in deterministic
mode on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from dfkd.config import LoopConfig
from dfkd.methods.base import DFKDMethod, LossTerms
from dfkd.models.base import Classifier
from dfkd.progress import Progress
from dfkd.runtime import Interrupted, StopRequest, TrainingClock


class Diverged(Exception):
    """A loss term became NaN or infinite."""

    def __init__(self, term: str, epoch: int, step: int, steps: int, value: float) -> None:
        phase = term.split("/")[0]
        super().__init__(
            f"loss term '{term}' became {value} at epoch {epoch}, {phase} step {step} of "
            f"{steps} in that epoch"
        )
        self.record = {"term": term, "epoch": epoch, "step": step, "value": str(value)}


class TermAccumulator:
    """Per-epoch sums of the loss terms and the first step at which each was non-finite.

    Everything stays on the device; `summary()` is the single host transfer of an epoch.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.sums: dict[str, Tensor] = {}
        self.counts: dict[str, int] = {}
        self.first_bad_step: dict[str, Tensor] = {}  # -1 while the term has stayed finite
        self.first_bad_value: dict[str, Tensor] = {}

    def add(self, phase: str, terms: LossTerms, step: int) -> None:
        for name, value in terms.items():
            key = f"{phase}/{name}"
            value = value.detach().float()
            if key not in self.sums:
                self.sums[key] = torch.zeros((), device=self.device)
                self.counts[key] = 0
                self.first_bad_step[key] = torch.full((), -1, device=self.device)
                self.first_bad_value[key] = torch.zeros((), device=self.device)
            first = (self.first_bad_step[key] < 0) & ~torch.isfinite(value)
            self.first_bad_step[key] = torch.where(first, step, self.first_bad_step[key])
            self.first_bad_value[key] = torch.where(first, value, self.first_bad_value[key])
            self.sums[key] += value
            self.counts[key] += 1

    def summary(self) -> tuple[dict[str, float], dict[str, tuple[int, float]]]:
        """(mean of each term, {term: (first non-finite step, its value)})."""
        keys = list(self.sums)
        if not keys:
            return {}, {}
        packed = torch.stack(
            [
                torch.stack([self.sums[k], self.first_bad_step[k].float(), self.first_bad_value[k]])
                for k in keys
            ]
        ).tolist()
        means = {k: total / self.counts[k] for k, (total, _, _) in zip(keys, packed, strict=True)}
        bad = {
            k: (int(step), value)
            for k, (_, step, value) in zip(keys, packed, strict=True)
            if step >= 0
        }
        return means, bad

    def state_dict(self) -> dict[str, Any]:
        return {
            "sums": self.sums,
            "counts": self.counts,
            "first_bad_step": self.first_bad_step,
            "first_bad_value": self.first_bad_value,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        move = lambda tensors: {k: v.to(self.device) for k, v in tensors.items()}  # noqa: E731
        self.sums = move(state["sums"])
        self.counts = dict(state["counts"])
        self.first_bad_step = move(state["first_bad_step"])
        self.first_bad_value = move(state["first_bad_value"])


@dataclass
class LoopState:
    """Where a run stands; saved in every checkpoint."""

    pretrained: bool = False  # method.pretrain() has run
    epochs_completed: int = 0
    rounds_completed: int = 0  # inside the epoch in progress
    # Inside the round in progress: steps of each phase done (a student step done means the
    # round's synthesis, finish_synthesis included, is done).
    generator_steps_done: int = 0
    student_steps_done: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    terms: dict[str, Any] | None = None  # TermAccumulator state of the epoch in progress


def _steps_per_round(term: str, loop: LoopConfig) -> int:
    if term.startswith("generator/"):
        return loop.generator_steps_per_round
    return loop.student_steps_per_round


def _order(term: str, step: int, loop: LoopConfig) -> tuple[int, int, int]:
    """Chronological order of (term, step within its phase): round, then phase, then step."""
    return ((step - 1) // _steps_per_round(term, loop), term.startswith("student/"), step)


def _set_trainable(model: Classifier, trainable: bool) -> None:
    model.train(trainable)
    model.requires_grad_(trainable)


def distill(
    method: DFKDMethod,
    student: Classifier,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loop: LoopConfig,
    state: LoopState,
    clock: TrainingClock,
    evaluate: Callable[[], dict[str, float]],
    save: Callable[[LoopState], None],
    progress: Progress,
    stop: StopRequest,
    autocast: Callable[[], AbstractContextManager[Any]] = nullcontext,
) -> LoopState:
    """Runs the remaining epochs of `state` and returns it; raises Diverged or Interrupted."""
    device = clock.device

    def interrupt(terms: TermAccumulator) -> None:
        clock.stop()
        state.terms = terms.state_dict()
        save(state)
        raise Interrupted(stop.exit_status)

    if not state.pretrained:  # its time counts as training time, as any synthesis step's
        clock.start()
        _set_trainable(student, False)
        with autocast():
            method.pretrain()
        state.pretrained = True
        clock.stop()
    for epoch in range(state.epochs_completed + 1, loop.epochs + 1):
        terms = TermAccumulator(device)
        if state.terms is not None:
            terms.load_state_dict(state.terms)
        clock.start()
        for round_index in range(state.rounds_completed, loop.rounds_per_epoch):
            if state.student_steps_done == 0:  # the round's synthesis is not finished
                _set_trainable(student, False)
                for step in range(state.generator_steps_done, loop.generator_steps_per_round):
                    global_step = round_index * loop.generator_steps_per_round + step + 1
                    with autocast():  # the compute mode's (dfkd/compute.py)
                        generator_terms = method.generator_step()
                    terms.add("generator", generator_terms, global_step)
                    state.generator_steps_done = step + 1
                    if stop:
                        interrupt(terms)
                method.finish_synthesis()
            _set_trainable(student, True)
            for step in range(state.student_steps_done, loop.student_steps_per_round):
                with autocast():
                    loss_terms = method.student_loss()
                optimizer.zero_grad(set_to_none=True)
                torch.stack(list(loss_terms.values())).sum().backward()
                optimizer.step()
                global_step = round_index * loop.student_steps_per_round + step + 1
                terms.add("student", loss_terms, global_step)
                state.student_steps_done = step + 1
                if step + 1 == loop.student_steps_per_round:  # the round is complete
                    state.rounds_completed = round_index + 1
                    state.generator_steps_done = state.student_steps_done = 0
                if stop and state.rounds_completed < loop.rounds_per_epoch:
                    interrupt(terms)  # the last round's stop waits for the epoch's checkpoint
            progress.advance()
        scheduler.step()
        method.on_epoch_end(epoch)
        clock.stop()

        means, bad = terms.summary()
        if bad:
            term, (step, value) = min(
                bad.items(), key=lambda item: _order(item[0], item[1][0], loop)
            )
            steps = _steps_per_round(term, loop) * loop.rounds_per_epoch
            raise Diverged(term, epoch, step, steps, value)

        record = {
            "epoch": epoch,
            **evaluate(),
            "train_seconds": clock.elapsed_seconds,
            "learning_rate": optimizer.param_groups[0]["lr"],
            **{f"loss/{k}": v for k, v in means.items()},
        }
        state.history.append(record)
        state.epochs_completed, state.rounds_completed, state.terms = epoch, 0, None
        save(state)
        progress.epoch(record)
        if stop and epoch < loop.epochs:
            raise Interrupted(stop.exit_status)
    return state
