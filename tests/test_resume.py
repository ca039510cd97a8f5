"""Runs survive kills: a run killed at random points and resumed equals an uninterrupted one.

Every run executes in a child process forked from a forkserver that has imported the suite once,
so a kill costs a fraction of a second instead of a fresh interpreter. Children run the real
command line (`dfkd.cli.main`), and are killed with SIGKILL at points drawn from a seeded RNG,
some of them while a checkpoint is being written; one run is stopped with SIGTERM instead.
Deterministic mode on the CPU makes "equal" bitwise.
"""

import json
import multiprocessing
import os
import random
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from dfkd.config import save_config

CONTEXT = multiprocessing.get_context("forkserver")
CONTEXT.set_forkserver_preload(["dfkd.cli", "dfkd.distill", "dfkd.teacher", "torch._dynamo"])
METHODS = ["adi", "cmi", "dafl", "dafl_original", "dfq", "fast2", "mad", "nayer"]


def _command(arguments: list[str]) -> None:
    from dfkd.cli import main

    torch.set_num_threads(1)
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - the child exits right after
    sys.exit(main(arguments))


def _start(command: str, run_dir: Path) -> multiprocessing.Process:
    arguments = [command, "--config", str(run_dir / "config.yaml"), "--out-dir", str(run_dir)]
    process = CONTEXT.Process(target=_command, args=(arguments,))
    process.start()
    return process


def _kill_while_writing(process: multiprocessing.Process, run_dir: Path, limit: float) -> bool:
    """SIGKILLs `process` the moment a checkpoint's temporary file appears; False if none did."""
    deadline = time.monotonic() + limit
    while process.is_alive() and time.monotonic() < deadline:
        if any(run_dir.glob(".checkpoint.pt.*.tmp")):
            os.kill(process.pid, signal.SIGKILL)
            process.join()
            return True
    return False


def _start_afresh(run_dir: Path) -> None:
    """Drops a finished run's outputs, so the next attempt runs (and can be killed) again."""
    for path in run_dir.iterdir():
        if path.name != "config.yaml":
            path.unlink()


def _run_with_faults(command: str, run_dir: Path, delays: list[float], torn: int) -> None:
    """Runs to completion through `torn` kills during checkpoint writes and kills after each of
    `delays` seconds. An attempt that finishes before its kill (a busy
    machine can shift the timing) starts the run afresh, so every planned kill lands."""
    caught = 0
    while caught < torn:
        process = _start(command, run_dir)
        if _kill_while_writing(process, run_dir, limit=30):
            caught += 1
        else:
            process.join()
            _start_afresh(run_dir)
    for delay in delays:
        while True:
            process = _start(command, run_dir)
            process.join(delay)
            if process.is_alive():
                os.kill(process.pid, signal.SIGKILL)
                process.join()
                break
            _start_afresh(run_dir)
    process = _start(command, run_dir)
    process.join()
    assert process.exitcode == 0


def _reference_run(command: str, run_dir: Path) -> float:
    """Runs uninterrupted in a child like the others; returns its wall-clock seconds."""
    began = time.monotonic()
    process = _start(command, run_dir)
    process.join()
    assert process.exitcode == 0
    return time.monotonic() - began


def _comparable(run_dir: Path, model_file: str) -> tuple[list[dict], dict]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    history = [
        {k: v for k, v in r.items() if not k.endswith("_seconds")} for r in metrics["history"]
    ]
    weights = torch.load(run_dir / model_file, weights_only=True)["state_dict"]
    return history, weights


def _assert_same(first: Path, second: Path, model_file: str) -> None:
    history, weights = _comparable(first, model_file)
    other_history, other_weights = _comparable(second, model_file)
    assert history == other_history and len(history) > 0
    assert weights.keys() == other_weights.keys()
    assert all(torch.equal(weights[k], other_weights[k]) for k in weights)
    assert not any(second.glob("checkpoint*.pt")) and not any(second.glob(".*.tmp"))


@pytest.fixture(scope="module")
def teacher_config(suite):
    config = suite.teacher_config("tiny", "digits", "cnn_small")
    optimizer = replace(config.recipe.optimizer, milestones=(2, 3))
    return replace(config, recipe=replace(config.recipe, epochs=4, optimizer=optimizer))


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, teacher_config):
    run_dir = tmp_path_factory.mktemp("teacher")
    save_config(teacher_config, run_dir / "config.yaml")
    seconds = _reference_run("train-teacher", run_dir)
    return run_dir / "teacher.pt", seconds


def _distill_config(suite, method: str, teacher: Path):
    config = suite.run_config("tiny", "digits", "cnn_small", "cnn_tiny", "dafl", 0, str(teacher))
    schedule, hyperparameters = suite.method_settings(method, "digits", "cnn_small-cnn_tiny")
    optimizer = schedule.student_optimizer
    if optimizer.milestones:
        optimizer = replace(optimizer, milestones=(1, 2))
    loop = replace(
        schedule,
        epochs=3,
        rounds_per_epoch=4,
        # ADI's and CMI's long rounds, shortened: a kill still lands inside one.
        generator_steps_per_round=min(schedule.generator_steps_per_round, 6),
        student_steps_per_round=min(schedule.student_steps_per_round, 10),
        batch_size=16,
        student_optimizer=optimizer,
        # NAYER's warm-up: one epoch of two syntheses, then rounds of two syntheses each.
        warmup_epochs=min(schedule.warmup_epochs, 1),
        warmup_syntheses_per_epoch=min(schedule.warmup_syntheses_per_epoch, 2),
    )
    if method == "mad":  # the ImageNet rows' pre-training (D-8) must run once, kills or not
        hyperparameters = {**hyperparameters, "generator_pretraining_steps": 3}
    if method == "nayer":  # a new generator every epoch, so kills land around rebuilds; the
        # reference's student in train mode after an epoch's first synthesis
        hyperparameters = {
            **hyperparameters, "generator_lifetime_epochs": 2,
            "later_syntheses_student_mode": "train",
        }  # fmt: skip
    if method.startswith("fast"):  # the meta-generator's first layers reset inside the run
        hyperparameters = {**hyperparameters, "first_layer_reset_epoch": 2}
    return replace(
        config, method=method, implementation=suite.methods[method].implementation,
        loop=loop, hyperparameters=hyperparameters,
    )  # fmt: skip


@pytest.mark.slow
def test_teacher_training_survives_kills(tmp_path, teacher, teacher_config):
    interrupted = tmp_path / "interrupted"
    save_config(teacher_config, interrupted / "config.yaml")
    reference, duration = teacher
    rng = random.Random(2024)
    delays = [rng.uniform(0.05, 0.3) * duration for _ in range(4)]
    _run_with_faults("train-teacher", interrupted, delays, torn=1)
    _assert_same(reference.parent, interrupted, "teacher.pt")


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_distillation_survives_kills(tmp_path, suite, teacher, method):
    config = _distill_config(suite, method, teacher[0])
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    for run_dir in (reference, interrupted):
        save_config(config, run_dir / "config.yaml")
    duration = _reference_run("distill", reference)

    rng = random.Random(f"kills-{method}")
    delays = [rng.uniform(0.05, 0.3) * duration for _ in range(3)]
    _run_with_faults("distill", interrupted, delays, torn=1 if method == "dfq" else 0)
    _assert_same(reference, interrupted, "student.pt")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["adi", "cmi", "cudfkd", "dfq", "fast2", "mad", "nayer"])
def test_sigterm_checkpoints_mid_round_and_the_resumed_run_is_identical(
    tmp_path, suite, teacher, method
):
    config = _distill_config(suite, method, teacher[0])
    optimizer = config.loop.student_optimizer
    if optimizer.milestones:  # a step schedule over the 2 epochs: one decay, after epoch 1
        optimizer = replace(optimizer, milestones=(1,))
    loop = replace(config.loop, epochs=2, rounds_per_epoch=3, student_optimizer=optimizer)
    config = replace(config, loop=loop)
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    for run_dir in (reference, interrupted):
        save_config(config, run_dir / "config.yaml")
    _reference_run("distill", reference)
    from dfkd.checkpoint import decode

    rng = random.Random(f"sigterm-{method}")
    while True:  # until the stop lands inside a round, which the loop position then shows
        process = _start("distill", interrupted)
        while process.is_alive() and not (interrupted / "checkpoint.pt").exists():
            time.sleep(0.005)  # the first epoch is done: now stop it inside the second
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(process.pid, signal.SIGTERM)
        process.join()
        if process.exitcode == 128 + signal.SIGTERM:
            loop = decode((interrupted / "checkpoint.pt").read_bytes(), "checkpoint")["loop"]
            if loop["generator_steps_done"] or loop["student_steps_done"]:
                break
        _start_afresh(interrupted)  # finished, or stopped between two rounds: again
    assert loop["epochs_completed"] == 1

    process = _start("distill", interrupted)
    process.join()
    assert process.exitcode == 0
    _assert_same(reference, interrupted, "student.pt")


@pytest.mark.slow
def test_a_torn_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, suite, teacher, capsys):
    config = _distill_config(suite, "dfq", teacher[0])
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    for run_dir in (reference, interrupted):
        save_config(config, run_dir / "config.yaml")
    _reference_run("distill", reference)

    process = _start("distill", interrupted)
    latest, previous = interrupted / "checkpoint.pt", interrupted / "checkpoint.prev.pt"
    while process.is_alive() and not (previous.exists() and latest.exists()):
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.join()
    if not latest.exists():  # killed between rotating the old file away and writing the new one
        latest.write_bytes(previous.read_bytes())
    latest.write_bytes(latest.read_bytes()[:-100])  # as if the disk lost its tail

    from dfkd.cli import main

    torch.set_num_threads(1)
    arguments = ["--config", str(interrupted / "config.yaml"), "--out-dir", str(interrupted)]
    assert main(["distill", *arguments]) == 0
    assert "checkpoint.pt is corrupt or truncated (checksum mismatch); trying the previous" in (
        capsys.readouterr().err
    )
    _assert_same(reference, interrupted, "student.pt")


def test_after_a_fallback_a_kill_during_the_next_save_keeps_the_good_checkpoint(
    tmp_path, monkeypatch, capsys
):
    from dfkd import checkpoint

    for step in (1, 2):
        checkpoint.save_run_state(tmp_path, {"config_hash": "h", "step": step})
    latest = tmp_path / checkpoint.LATEST
    latest.write_bytes(latest.read_bytes()[:-100])  # the disk lost its tail
    assert checkpoint.load_run_state(tmp_path, "h")["step"] == 1  # the fallback

    def killed(path, data):
        raise KeyboardInterrupt  # the next save is cut short by a kill while it writes

    monkeypatch.setattr(checkpoint, "atomic_write_bytes", killed)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_run_state(tmp_path, {"config_hash": "h", "step": 3})
    monkeypatch.undo()

    assert checkpoint.load_run_state(tmp_path, "h")["step"] == 1
    assert "trying the previous checkpoint" in capsys.readouterr().err


class _StopAtStep:
    """Stands in for StopRequest: set once the methods' generator steps reach `at`."""

    steps, at = 0, 0

    def __init__(self) -> None:
        self.signal_number = None

    def __bool__(self) -> bool:
        return _StopAtStep.steps >= _StopAtStep.at

    exit_status = 143

    def installed(self):
        import contextlib

        return contextlib.nullcontext(self)


# fast10 (its synthesis capped at 6 steps by _distill_config): the meta-gradients of 4 and of 3
# inner steps carry over, in the warm-up and in the second synthesis after it.
STOPS = [("nayer", [5, 21]), ("fast2", [1, 3, 5]), ("fast10", [4, 9])]


@pytest.mark.parametrize(("method", "stops"), STOPS)
def test_a_stop_inside_a_synthesis_resumes_to_the_uninterrupted_run(
    tmp_path, suite, teacher, monkeypatch, method, stops
):
    """Deterministically inside a synthesis, in the warm-up and after it: the noisy layers, a
    rebuilt generator, the meta-generator's summed gradients and its Adam carry over."""
    from dfkd.checkpoint import decode
    from dfkd.distill import run_distillation
    from dfkd.methods import METHODS
    from dfkd.runtime import Interrupted

    config = _distill_config(suite, method, teacher[0])
    config = replace(config, loop=replace(config.loop, epochs=2, rounds_per_epoch=2))
    torch.set_num_threads(1)
    reference = tmp_path / "reference"
    save_config(config, reference / "config.yaml")
    assert run_distillation(reference / "config.yaml", reference) == 0
    implementation = METHODS.get(config.implementation)
    original = implementation.generator_step

    def counted(self):
        terms = original(self)
        _StopAtStep.steps += 1
        return terms

    for at in stops:
        interrupted = tmp_path / f"stopped{at}"
        save_config(config, interrupted / "config.yaml")
        with monkeypatch.context() as patch:
            patch.setattr(implementation, "generator_step", counted)
            patch.setattr("dfkd.distill.StopRequest", _StopAtStep)
            _StopAtStep.steps, _StopAtStep.at = 0, at
            with pytest.raises(Interrupted):
                run_distillation(interrupted / "config.yaml", interrupted)
        loop = decode((interrupted / "checkpoint.pt").read_bytes(), "checkpoint")["loop"]
        assert loop["generator_steps_done"] > 0  # inside a synthesis
        assert run_distillation(interrupted / "config.yaml", interrupted) == 0
        _assert_same(reference, interrupted, "student.pt")
