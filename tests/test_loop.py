"""The training loop's contract, with a probe method that records what the loop does."""

import json
import math
from dataclasses import replace

import pytest
import torch

from dfkd.checkpoint import save_model
from dfkd.config import LoopConfig, OptimizerConfig, save_config
from dfkd.data import dataset_info
from dfkd.distill import run_distillation
from dfkd.loop import Diverged, LoopState, TermAccumulator, distill
from dfkd.methods.base import DFKDMethod, MethodConfig, MethodContext, method_context
from dfkd.models import build_model
from dfkd.optim import build_optimizer
from dfkd.progress import Progress
from dfkd.runtime import StopRequest, TrainingClock, memory_format
from tests.support import frozen_teacher


class Probe(DFKDMethod):
    """Records the student's mode in each phase; its generator loss turns NaN on request."""

    def __init__(self, context: MethodContext, nan_at: tuple[int, int] | None = None) -> None:
        super().__init__(MethodConfig(student_temperature=1.0), context)
        self.nan_at, self.epoch, self.generator_calls = nan_at, 1, 0
        self.modes: set[tuple[str, bool, bool]] = set()
        self.epochs_ended: list[int] = []
        self.calls: list[str] = []  # the order of pretrain and the first generator steps

    def _record(self, phase: str) -> None:
        student = self.student
        self.modes.add((phase, student.training, next(student.parameters()).requires_grad))

    def pretrain(self):
        self._record("pretrain")
        self.calls.append("pretrain")

    def generator_step(self):
        self._record("generator")
        self.calls.append("generator")
        self.generator_calls += 1
        value = torch.tensor(float(self.generator_calls))
        if self.nan_at == (self.epoch, self.generator_calls):
            value = torch.tensor(math.nan)
        return {"probe": value}

    def sample(self, batch_size):
        self._record("student")
        return torch.randn(batch_size, 3, 16, 16)

    def on_epoch_end(self, epoch):
        self.epochs_ended.append(epoch)
        self.epoch, self.generator_calls = epoch + 1, 0


def _loop(epochs=3, rounds=2):
    optimizer = OptimizerConfig("sgd", 0.1, 0.9, 0.0, "cosine", (), 0.1)
    return LoopConfig(epochs, rounds, 2, 3, 4, optimizer)


def _run(method, loop, saved, state=None):
    student = method.student
    optimizer, scheduler = build_optimizer(
        student.parameters(), loop.student_optimizer, loop.epochs
    )
    clock = TrainingClock(torch.device("cpu"))
    progress = Progress("test", loop.epochs, loop.rounds_per_epoch, "round")
    return distill(
        method, student, optimizer, scheduler, loop, state or LoopState(), clock,
        lambda: {"acc1": 50.0},
        lambda state: saved.append(json.loads(json.dumps(state.history))), progress, StopRequest(),
    )  # fmt: skip


def _context():
    torch.manual_seed(0)
    cpu = torch.device("cpu")
    student = build_model("cnn_tiny", 10)
    return method_context(
        dataset_info("digits"), frozen_teacher(), student, 4, 3, cpu, memory_format(cpu)
    )


def test_loop_freezes_the_student_while_synthesising_and_trains_it_after():
    method, saved = Probe(_context()), []
    state = _run(method, _loop(), saved)
    assert method.modes == {
        ("pretrain", False, False), ("generator", False, False), ("student", True, True)
    }  # fmt: skip
    assert method.calls[:2] == ["pretrain", "generator"] and method.calls.count("pretrain") == 1
    assert state.pretrained
    assert method.epochs_ended == [1, 2, 3]
    assert [record["epoch"] for record in state.history] == [1, 2, 3]
    # Loss means per epoch: generator steps 1..4 of each epoch average to 2.5.
    assert all(record["loss/generator/probe"] == 2.5 for record in state.history)
    assert len(saved) == 3  # one checkpoint per epoch
    assert [r["learning_rate"] for r in state.history][-1] == pytest.approx(0.0, abs=1e-12)


def test_a_resumed_run_does_not_pretrain_again():
    method = Probe(_context())
    _run(method, _loop(epochs=2), [], LoopState(pretrained=True, epochs_completed=1, history=[{}]))
    assert "pretrain" not in method.calls and method.epochs_ended == [2]


def test_a_non_finite_term_stops_the_run_naming_term_epoch_and_step():
    method, saved = Probe(_context(), nan_at=(2, 3)), []
    with pytest.raises(Diverged) as error:
        _run(method, _loop(), saved)
    assert str(error.value) == (
        "loss term 'generator/probe' became nan at epoch 2, generator step 3 of 4 in that epoch"
    )
    assert error.value.record == {"term": "generator/probe", "epoch": 2, "step": 3, "value": "nan"}
    assert len(saved) == 1  # the last good checkpoint is the end of epoch 1


def test_term_accumulator_state_round_trip():
    first = TermAccumulator(torch.device("cpu"))
    first.add("student", {"kd": torch.tensor(1.0)}, 1)
    first.add("student", {"kd": torch.tensor(math.inf)}, 2)
    second = TermAccumulator(torch.device("cpu"))
    second.load_state_dict(first.state_dict())
    second.add("student", {"kd": torch.tensor(math.nan)}, 3)
    means, bad = second.summary()
    assert bad == {"student/kd": (2, math.inf)}
    assert math.isnan(means["student/kd"])


def test_a_diverging_run_is_reported_as_diverged(tmp_path, suite):
    teacher = tmp_path / "teacher.pt"
    save_model(teacher, frozen_teacher(), "cnn_small", "digits", {})
    config = suite.run_config("tiny", "digits", "cnn_small", "cnn_tiny", "dfq", 0, str(teacher))
    exploding = replace(config.loop.student_optimizer, learning_rate=1e12)
    config = replace(
        config,
        loop=replace(
            config.loop, epochs=2, rounds_per_epoch=3, batch_size=8, student_optimizer=exploding
        ),
    )
    save_config(config, tmp_path / "run" / "config.yaml")
    assert run_distillation(tmp_path / "run" / "config.yaml", tmp_path / "run") == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "diverged"
    assert metrics["divergence"]["term"].startswith("student/")
    assert metrics["divergence"]["epoch"] == 1
    assert (tmp_path / "run" / "student.pt").exists()


def test_a_diverging_teacher_stops_naming_the_batch(tmp_path, suite, capsys):
    from dfkd.cli import main

    config = suite.teacher_config("tiny", "digits", "cnn_small")
    exploding = replace(config.recipe.optimizer, learning_rate=1e30)
    config = replace(config, recipe=replace(config.recipe, epochs=2, optimizer=replace(
        exploding, milestones=(1,))))  # fmt: skip
    save_config(config, tmp_path / "config.yaml")
    arguments = ["--config", str(tmp_path / "config.yaml"), "--out-dir", str(tmp_path)]
    assert main(["train-teacher", *arguments, "--threads", "1"]) == 1
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith("error: training diverged: loss term 'train/cross_entropy' became ")
    assert "at epoch 1, train step " in error and "of 22 in that epoch" in error
    assert not (tmp_path / "metrics.json").exists()


class _Stop(Exception):
    pass


def test_a_run_hands_the_loop_a_frozen_eval_mode_teacher_and_a_trainable_student(
    tmp_path, suite, monkeypatch
):
    teacher = tmp_path / "teacher.pt"
    save_model(teacher, frozen_teacher(), "cnn_small", "digits", {})
    config = suite.run_config("tiny", "digits", "cnn_small", "cnn_tiny", "dfq", 0, str(teacher))
    save_config(config, tmp_path / "run" / "config.yaml")
    seen = {}

    def probe(method, student, *arguments):
        seen["teacher"] = [(m.training, p.requires_grad) for m in method.teacher.modules()
                           for p in m.parameters(recurse=False)]  # fmt: skip
        seen["student_is_the_methods"] = student is method.student
        seen["student"] = {p.requires_grad for p in student.parameters()}
        raise _Stop

    monkeypatch.setattr("dfkd.distill.distill", probe)
    with pytest.raises(_Stop):
        run_distillation(tmp_path / "run" / "config.yaml", tmp_path / "run")
    assert seen["teacher"] and set(seen["teacher"]) == {(False, False)}
    assert seen["student_is_the_methods"] and seen["student"] == {True}
