"""The training loop's contract, with a probe method that records what the loop does."""

import copy
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
from dfkd.runtime import Interrupted, StopRequest, TrainingClock, memory_format
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
        student.parameters(), loop.student_optimizer, loop.training_epochs
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


# ---------------------------------------------------------------------------------------------
# Warm-up epochs and several syntheses per round (NAYER, Fast-DFKD)


class Recorder(Probe):
    """A probe that logs every call, in order, with the epoch it falls in."""

    def __init__(self, context: MethodContext) -> None:
        super().__init__(context)
        self.log: list[tuple[int, str]] = []

    def generator_step(self):
        self.log.append((self.epoch, "g"))
        return super().generator_step()

    def finish_synthesis(self):
        self.log.append((self.epoch, "finish"))

    def sample(self, batch_size):
        self.log.append((self.epoch, "s"))
        return super().sample(batch_size)


def _warm_loop():
    optimizer = OptimizerConfig("sgd", 0.2, 0.9, 0.0, "cosine", (), 0.1, minimum_learning_rate=2e-3)
    return LoopConfig(
        epochs=5, rounds_per_epoch=2, generator_steps_per_round=2, student_steps_per_round=3,
        batch_size=4, student_optimizer=optimizer, syntheses_per_round=2, warmup_epochs=2,
        warmup_syntheses_per_epoch=3,
    )  # fmt: skip


def test_warm_up_epochs_synthesise_only_then_rounds_run_every_synthesis_before_the_student():
    method, saved = Recorder(_context()), []
    loop = _warm_loop()
    optimizer, scheduler = build_optimizer(
        method.student.parameters(), loop.student_optimizer, loop.training_epochs
    )
    state = distill(
        method, method.student, optimizer, scheduler, loop, LoopState(),
        TrainingClock(torch.device("cpu")), lambda: {"acc1": 50.0},
        lambda state: saved.append(1), Progress("test", 5, 2, "round"), StopRequest(),
    )  # fmt: skip
    warm_epoch = ["g", "g", "finish"] * 3  # 3 syntheses of 2 steps, no student step
    round_ = ["g", "g", "finish"] * 2 + ["s"] * 3  # every synthesis, then the student steps
    for epoch in (1, 2):
        assert [call for e, call in method.log if e == epoch] == warm_epoch
    for epoch in (3, 4, 5):
        assert [call for e, call in method.log if e == epoch] == round_ * 2
    assert method.epochs_ended == [1, 2, 3, 4, 5] and len(saved) == 5
    # The lr holds through the warm-up, then anneals by a cosine over the 3 epochs after it
    # (T_max = epochs - warm-up, as NAYER's CosineAnnealingLR) down to its minimum.
    rates = [record["learning_rate"] for record in state.history]
    cosine = [2e-3 + (0.2 - 2e-3) * (1 + math.cos(math.pi * t / 3)) / 2 for t in (1, 2, 3)]
    assert rates == pytest.approx([0.2, 0.2, *cosine], rel=1e-12)
    assert "loss/student/kd" not in state.history[0] and "loss/student/kd" in state.history[2]


def test_a_stop_inside_a_warm_up_or_a_second_synthesis_resumes_where_it_stopped():
    loop = _warm_loop()
    uninterrupted = Recorder(_context())
    _run(uninterrupted, loop, [])
    for stop_after in (4, 17, 25):  # inside warm-up syntheses, and a round's second synthesis
        method, saved_states = Recorder(_context()), []
        stop, state = StopRequest(), LoopState()
        optimizer, scheduler = build_optimizer(
            method.student.parameters(), loop.student_optimizer, loop.training_epochs
        )

        def save(current, saved_states=saved_states):
            saved_states.append(copy.deepcopy(vars(current)))

        original = method.generator_step

        def counted(original=original, method=method, stop=stop, stop_after=stop_after):
            terms = original()
            if sum(call == "g" for _, call in method.log) == stop_after:
                stop.signal_number = 15
            return terms

        method.generator_step = counted
        with pytest.raises(Interrupted):
            distill(method, method.student, optimizer, scheduler, loop, state,
                    TrainingClock(torch.device("cpu")), lambda: {"acc1": 50.0}, save,
                    Progress("test", 5, 2, "round"), stop)  # fmt: skip
        stop.signal_number = None
        resumed = LoopState(**saved_states[-1])
        distill(method, method.student, optimizer, scheduler, loop, resumed,
                TrainingClock(torch.device("cpu")), lambda: {"acc1": 50.0}, save,
                Progress("test", 5, 2, "round"), stop)  # fmt: skip
        assert [call for _, call in method.log] == [call for _, call in uninterrupted.log]
