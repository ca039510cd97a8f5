"""The one distillation loop, shared by every method.

    method.pretrain()   (once, on a fresh run; student frozen, eval mode)
    for each epoch:
        a warm-up epoch (the first `warmup_epochs`): `warmup_syntheses_per_epoch` syntheses
        otherwise, for each of `rounds_per_epoch` rounds:
            `syntheses_per_round` syntheses, each:
                `generator_steps_per_round` x method.generator_step()   (student frozen, eval mode)
                method.finish_synthesis()
            `student_steps_per_round`   x method.student_loss() -> backward -> SGD step
        student lr schedule step (not after a warm-up epoch); method.on_epoch_end(epoch)
    (generator steps and student losses inside the compute mode's autocast; backward outside it
    for the student, inside a generator step's own optimisation)
        evaluate on the full test set; append to the history; checkpoint

Loss terms are accumulated on the device and read once per epoch, so no step synchronises with
the host. A non-finite term stops the run after that epoch with the term, epoch and step named;
the last checkpoint (end of the previous epoch) stays the latest good state.

A stop request (SIGTERM/SIGINT) is honoured at the next step: the loop writes a checkpoint that
includes the position inside the epoch and raises `Interrupted`; starting the run again
continues from there, with the same result as an uninterrupted run in deterministic mode on the
CPU.
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
    # Inside the round in progress: syntheses finished, generator steps of the synthesis in
    # progress, and student steps done (a student step done means every synthesis is done).
    syntheses_done: int = 0
    generator_steps_done: int = 0
    student_steps_done: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    terms: dict[str, Any] | None = None  # TermAccumulator state of the epoch in progress


@dataclass(frozen=True)
class EpochShape:
    """The rounds of one epoch: a warm-up epoch's, or a training epoch's."""

    warmup: bool
    rounds: int
    syntheses_per_round: int
    generator_steps_per_synthesis: int
    student_steps_per_round: int

    @classmethod
    def of(cls, loop: LoopConfig, epoch: int) -> EpochShape:
        if epoch <= loop.warmup_epochs:
            return cls(True, loop.warmup_syntheses_per_epoch, 1, loop.generator_steps_per_round, 0)
        return cls(
            False,
            loop.rounds_per_epoch,
            loop.syntheses_per_round,
            loop.generator_steps_per_round,
            loop.student_steps_per_round,
        )

    def steps_per_round(self, term: str) -> int:
        if term.startswith("generator/"):
            return self.syntheses_per_round * self.generator_steps_per_synthesis
        return self.student_steps_per_round

    def order(self, term: str, step: int) -> tuple[int, int, int]:
        """Chronological order of (term, step within its phase): round, then phase, then step."""
        return ((step - 1) // self.steps_per_round(term), term.startswith("student/"), step)


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
        shape = EpochShape.of(loop, epoch)
        terms = TermAccumulator(device)
        if state.terms is not None:
            terms.load_state_dict(state.terms)
        clock.start()
        for round_index in range(state.rounds_completed, shape.rounds):
            if state.student_steps_done == 0:  # the round's syntheses are not all finished
                _set_trainable(student, False)
                steps = shape.generator_steps_per_synthesis
                for synthesis in range(state.syntheses_done, shape.syntheses_per_round):
                    first = (round_index * shape.syntheses_per_round + synthesis) * steps
                    for step in range(state.generator_steps_done, steps):
                        with autocast():  # the compute mode's (dfkd/compute.py)
                            generator_terms = method.generator_step()
                        terms.add("generator", generator_terms, first + step + 1)
                        state.generator_steps_done = step + 1
                        if stop:
                            interrupt(terms)
                    method.finish_synthesis()
                    state.syntheses_done, state.generator_steps_done = synthesis + 1, 0
            _set_trainable(student, True)
            for step in range(state.student_steps_done, shape.student_steps_per_round):
                with autocast():
                    loss_terms = method.student_loss()
                optimizer.zero_grad(set_to_none=True)
                torch.stack(list(loss_terms.values())).sum().backward()
                optimizer.step()
                global_step = round_index * shape.student_steps_per_round + step + 1
                terms.add("student", loss_terms, global_step)
                state.student_steps_done = step + 1
                if step + 1 < shape.student_steps_per_round and stop:
                    interrupt(terms)
            state.rounds_completed = round_index + 1  # the round is complete
            state.syntheses_done = state.generator_steps_done = state.student_steps_done = 0
            if stop and state.rounds_completed < shape.rounds:
                interrupt(terms)  # the last round's stop waits for the epoch's checkpoint
            progress.advance(loop.rounds_per_epoch / shape.rounds)
        if not shape.warmup:
            scheduler.step()
        method.on_epoch_end(epoch)
        clock.stop()

        means, bad = terms.summary()
        if bad:
            term, (step, value) = min(
                bad.items(), key=lambda item: shape.order(item[0], item[1][0])
            )
            raise Diverged(term, epoch, step, shape.steps_per_round(term) * shape.rounds, value)

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
