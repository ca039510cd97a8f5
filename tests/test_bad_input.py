"""Bad input stops before any work with one clear line, exit status 2, and nothing written."""

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from dfkd.checkpoint import save_model
from dfkd.cli import main
from dfkd.config import read_yaml, save_config
from dfkd.models import build_model
from dfkd.schema import to_dict
from tests.support import REPOSITORY


def _files(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


@pytest.fixture
def workspace(tmp_path, suite):
    """A valid teacher file, valid teacher and run configs, and an empty output folder."""
    teacher = tmp_path / "teacher.pt"
    save_model(teacher, build_model("cnn_small", 10), "cnn_small", "digits", {})
    run = suite.run_config("tiny", "digits", "cnn_small", "cnn_tiny", "dfq", 0, str(teacher))
    teacher_config = suite.teacher_config("tiny", "digits", "cnn_small")
    (tmp_path / "out").mkdir()
    return {"dir": tmp_path, "teacher": teacher, "run": run, "teacher_config": teacher_config}


def _params_with(edit: Callable[[dict], None]) -> Callable[[Path], str]:
    def write(directory: Path) -> str:
        params = read_yaml(REPOSITORY / "params.yaml")
        edit(params)
        (directory / "params.yaml").write_text(yaml.safe_dump(params))
        return str(directory / "params.yaml")

    return write


def _params_text(text: str) -> Callable[[Path], str]:
    def write(directory: Path) -> str:
        (directory / "params.yaml").write_text(text)
        return str(directory / "params.yaml")

    return write


def _check(write_params: Callable[[Path], str]) -> Callable[[dict], list[str]]:
    def arguments(ws: dict) -> list[str]:
        params = write_params(ws["dir"])
        return ["check", "--params", params, "--params-dir", str(REPOSITORY / "params")]

    return arguments


def _distill(edit: Callable[[dict], object]) -> Callable[[dict], list[str]]:
    """`dfkd distill` with the workspace's run config changed by `edit` (which may return one)."""

    def arguments(ws: dict) -> list[str]:
        config = edit(ws) or ws["run"]
        path = ws["dir"] / "run.yaml"
        if isinstance(config, str):
            path.write_text(config)
        else:
            save_config(config, path)
        return ["distill", "--config", str(path), "--out-dir", str(ws["dir"] / "out")]

    return arguments


def _teacher(edit: Callable[[dict], object]) -> Callable[[dict], list[str]]:
    def arguments(ws: dict) -> list[str]:
        config = edit(ws)
        path = ws["dir"] / "teacher.yaml"
        path.write_text(yaml.safe_dump(config) if isinstance(config, dict) else config)
        return ["train-teacher", "--config", str(path), "--out-dir", str(ws["dir"] / "out")]

    return arguments


def _teacher_dict(ws: dict, **changes) -> dict:
    data = to_dict(ws["teacher_config"])
    for key, value in changes.items():
        *parents, leaf = key.split(".")
        target = data
        for parent in parents:
            target = target[parent]
        target[leaf] = value
    return data


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _damaged_resume_state(ws: dict) -> None:
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        (ws["dir"] / "out" / name).write_bytes(b"dfkd-checkpoint-v1\n" + b"0" * 64 + b"\nxx")


CASES = {
    "invalid YAML": (_check(_params_text("data: [1\n")), "not valid YAML (line 2"),
    "unknown key": (_check(_params_with(lambda p: p.update(verbose=True))), "verbose: unknown key"),
    "wrong type": (
        _check(_params_with(lambda p: p["experiments"]["digits"].update(seeds="0,1"))),
        "seeds: expected a list, got '0,1'",
    ),
    "negative epochs": (
        _check(_params_with(lambda p: p["protocols"]["tiny"].update(distill_epochs=-5))),
        "distill_epochs: got -5; expected a number > 0",
    ),
    "unknown method": (
        _check(_params_with(lambda p: p["experiments"]["digits"].update(methods=["cmi2"]))),
        "unknown method 'cmi2'",
    ),
    "unknown model": (
        _check(_params_with(lambda p: p["experiments"]["digits"].update(pairs=["vgg99-cnn_tiny"]))),
        "unknown teacher model 'vgg99'",
    ),
    "unknown dataset": (
        _check(_params_with(lambda p: p["experiments"].update(mnist=p["experiments"]["digits"]))),
        "experiments.mnist: unknown dataset",
    ),
    "missing params key": (
        _check(_params_with(lambda p: p["protocols"]["tiny"].pop("deterministic"))),
        "protocols.tiny.deterministic: missing",
    ),
    "missing config file": (
        lambda ws: ["distill", "--config", str(ws["dir"] / "nope.yaml"), "--out-dir", "out"],
        "nope.yaml: file not found",
    ),
    "incomplete run config": (
        _distill(
            lambda ws: yaml.safe_dump({k: v for k, v in to_dict(ws["run"]).items() if k != "seed"})
        ),
        "run.yaml: seed: missing",
    ),
    "negative batch size": (
        _distill(lambda ws: replace(ws["run"], loop=replace(ws["run"].loop, batch_size=-8))),
        "loop.batch_size: got -8",
    ),
    "unknown hyperparameter": (
        _distill(
            lambda ws: replace(ws["run"], hyperparameters={**ws["run"].hyperparameters, "bn": 1.0})
        ),
        "hyperparameters.bn: unknown key",
    ),
    "teacher of the wrong architecture": (
        _distill(lambda ws: replace(ws["run"], teacher="cnn_tiny")),
        "holds a cnn_small for 10 classes of digits, but this run needs a cnn_tiny",
    ),
    "teacher of another dataset": (
        _distill(lambda ws: replace(ws["run"], dataset="cifar10")),
        "but this run needs a cnn_small for 10 classes of cifar10",
    ),
    "missing teacher": (
        _distill(lambda ws: replace(ws["run"], teacher_checkpoint=str(ws["dir"] / "t.pt"))),
        "t.pt not found",
    ),
    "truncated teacher": (
        _distill(lambda ws: _truncate(ws["teacher"])),
        "teacher.pt is corrupt or truncated",
    ),
    "damaged resume checkpoints": (
        _distill(_damaged_resume_state),
        "every checkpoint in",
    ),
    "missing dataset offline": (
        _teacher(
            lambda ws: _teacher_dict(
                ws,
                dataset="cifar10",
                **{"data.root": str(ws["dir"] / "data"), "data.download": False},
            )
        ),
        "CIFAR-10 not found or corrupt under",
    ),
    "dataset offline, prepared by the pipeline": (
        lambda ws: [
            "prepare-data",
            "--dataset",
            "cifar100",
            "--root",
            str(ws["dir"] / "data"),
            "--no-download",
            "--record",
            str(ws["dir"] / "out" / "dataset.json"),
        ],
        "CIFAR-100 not found or corrupt under",
    ),
    "unknown teacher architecture": (
        _teacher(lambda ws: _teacher_dict(ws, architecture="resnet1000")),
        "unknown model 'resnet1000'",
    ),
    "milestone beyond the schedule": (
        _teacher(lambda ws: _teacher_dict(ws, **{"recipe.optimizer.milestones": [6, 40]})),
        "each must be < epochs",
    ),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_input_gives_one_clear_line_and_writes_nothing(workspace, capsys, case):
    arguments, message = CASES[case]
    command = arguments(workspace)
    out = workspace["dir"] / "out"
    before = _files(out)

    status = main(command)

    lines = capsys.readouterr().err.splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert status == 2
    assert len(errors) == 1 and message in errors[0], lines
    assert all(line.startswith(("error: ", "warning: ")) for line in lines), lines
    assert _files(out) == before
