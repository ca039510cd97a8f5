"""Bad input stops before any work with one clear line, exit status 2, and nothing written."""

import argparse
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import torch
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


def _check(
    write_params: Callable[[Path], str],
    experiments: tuple[str, ...] = ("digits",),
    edit_params_dir: Callable[[Path], None] | None = None,
) -> Callable[[dict], list[str]]:
    """`dfkd check` of the experiments named, with params.yaml (and, given `edit_params_dir`, a
    copy of params/) changed."""

    def arguments(ws: dict) -> list[str]:
        params = write_params(ws["dir"])
        params_dir = REPOSITORY / "params"
        if edit_params_dir is not None:
            params_dir = ws["dir"] / "params"
            shutil.copytree(REPOSITORY / "params", params_dir)
            edit_params_dir(params_dir)
        return ["check", *experiments, "--params", params, "--params-dir", str(params_dir)]

    return arguments


def _with_seeds(seeds: list[int], teacher_seed: int = 0) -> Callable[[Path], str]:
    return _params_with(
        lambda p: p["experiments"]["digits"].update(seeds=seeds, teacher_seed=teacher_seed)
    )


def _method_file(name: str) -> Callable[[Path], None]:
    return lambda params: shutil.copy(params / "methods/dfq.yaml", params / f"methods/{name}.yaml")


def _edit_studies(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def change(params: Path) -> None:
        studies = read_yaml(params / "studies.yaml")
        edit(studies)
        (params / "studies.yaml").write_text(yaml.safe_dump(studies, sort_keys=False))

    return change


def _released_cifar10(p: dict) -> None:
    p["experiments"]["cifar10"].update(teacher_source="released", pairs=["resnet34-resnet18"])


# The line of params.yaml's first `seeds:`, before which _duplicate_key writes another.
_SEEDS_LINE = (REPOSITORY / "params.yaml").read_text().splitlines().index("    seeds: [0, 1]") + 1


def _duplicate_key(directory: Path) -> str:
    text = (REPOSITORY / "params.yaml").read_text()
    first = text.index("    seeds: [0, 1]\n")
    (directory / "params.yaml").write_text(text[:first] + "    seeds: [2]\n" + text[first:])
    return str(directory / "params.yaml")


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
    # What the workflow cannot run (its seeds go to NumPy, its names into paths and wildcards).
    "negative seed": (_check(_with_seeds([0, -1])), "seeds: got -1; a seed is an integer in"),
    "seed beyond 2^32": (_check(_with_seeds([2**32])), "seeds: got 4294967296; a seed is"),
    "negative teacher seed": (
        _check(_with_seeds([0], teacher_seed=-3)),
        "teacher_seed: got -3; a seed is an integer in [0, 2^32)",
    ),
    "a method file outside the path pattern": (
        _check(_params_with(lambda p: None), edit_params_dir=_method_file("DFQ-v2")),
        "methods/DFQ-v2.yaml: a method's name is a level of its runs' paths",
    ),
    "a teacher variant outside the path pattern": (
        _check(
            _params_with(lambda p: None),
            edit_params_dir=_edit_studies(
                lambda s: s["teacher_variants"].update({"Noisy v2": s["teacher_variants"]["noisy"]})
            ),
        ),
        "teacher_variants.Noisy v2: a teacher variant's name is a level of its teachers' paths",
    ),
    "a study cell that ends before the statistics window": (
        _check(
            _params_with(lambda p: None),
            edit_params_dir=_edit_studies(
                lambda s: s["studies"]["table5"]["cells"]["self_paced_constant"].update(
                    schedule={"epochs": 50}
                )
            ),
        ),
        "studies.table5.cells.self_paced_constant: its runs end after epoch 50, before the "
        "statistics window",
    ),
    "a released teacher not downloaded": (
        _check(_params_with(_released_cifar10), experiments=("cifar10",)),
        "experiments.cifar10: its released resnet34 is not downloaded: download "
        "https://www.dropbox.com/sh/w8xehuk7debnka3/AABhoazFReE_5mMeyvb4iUWoa?dl=0 so that "
        "checkpoints/pretrained/cifar10_resnet34.pth exists, then pin its SHA-256 in "
        'params/released_teachers.yaml (README, "Released teachers", steps 1-2)',
    ),
    "an unknown experiment": (
        _check(_params_with(lambda p: None), experiments=("mnist",)),
        "no experiment mnist in",
    ),
    "a key given twice": (
        _check(_duplicate_key),
        f"(line {_SEEDS_LINE + 1}, column 5): key 'seeds' is given twice (first on line "
        f"{_SEEDS_LINE}); keep one",
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


# One line, never a traceback, where the input is hostile or the machine is not what was asked --


def test_a_yaml_alias_bomb_is_refused_quickly_in_short_lines(tmp_path, capsys):
    """Each level nine aliases of the one before: 9^10 seeds, were they written out."""
    levels = ["&l0 [0, 1, 2, 3, 4, 5, 6, 7, 8]"]
    levels += [f"&l{n} [{', '.join([f'*l{n - 1}'] * 9)}]" for n in range(1, 10)]
    text = (REPOSITORY / "params.yaml").read_text()
    bomb = text.replace("    seeds: [0, 1]\n", f"    seeds: [{', '.join(levels)}]\n", 1)
    (tmp_path / "params.yaml").write_text(bomb)

    status = main(["check", "digits", "--params", str(tmp_path / "params.yaml")])

    assert status == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 10 and all(len(line) < 200 for line in lines)
    assert lines[1].startswith("error: params.yaml: experiments.digits.seeds[1]: expected an")


def test_an_unreadable_params_file_is_one_line(tmp_path, monkeypatch, capsys):
    params = tmp_path / "params.yaml"
    shutil.copy(REPOSITORY / "params.yaml", params)
    read_text = Path.read_text

    def as_another_user(path, *args, **kwargs):  # root reads any file; others get EACCES
        if path == params:
            raise PermissionError(13, "Permission denied", str(path))
        return read_text(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", as_another_user)
    assert main(["check", "digits", "--params", str(params)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: {params}: cannot be read (Permission denied)"
    ]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here")
def test_a_gpu_asked_for_where_there_is_none_is_one_line(workspace, monkeypatch, capsys):
    monkeypatch.setenv("DFKD_DEVICE", "cuda")
    out = workspace["dir"] / "out"
    save_config(workspace["run"], workspace["dir"] / "run.yaml")

    status = main(
        ["distill", "--config", str(workspace["dir"] / "run.yaml"), "--out-dir", str(out)]
    )

    assert status == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: DFKD_DEVICE=cuda, but this machine has no CUDA device(s); unset it or choose one "
        "that exists"
    ]
    assert list(out.iterdir()) == []


def test_the_command_line_has_a_version_and_help_on_every_option(capsys):
    import dfkd
    from dfkd.cli import _parser

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"dfkd {dfkd.__version__}\n"
    parser = _parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name, command in commands.choices.items():
        for action in command._actions:
            assert action.help, f"dfkd {name} {'/'.join(action.option_strings) or action.dest}"
