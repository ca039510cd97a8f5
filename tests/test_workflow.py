"""The README's promises through Snakemake, as a user meets them: bad input is one line per
problem and exit status 2 before any job; a damaged or foreign input never costs a finished
result; a full disk is one line; results are as readable as the umask allows."""

import errno
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from dfkd.atomic import atomic_write_bytes
from dfkd.errors import DiskFullError
from dfkd.progress import Progress
from tests.support import (
    BIN,
    REPOSITORY,
    SNAKEMAKE,
    copy_repository,
    edit_yaml,
    error_lines,
    files_of,
    run_command,
    snakemake_main,
)

_snakemake, _error_lines, _edit_yaml, _files = snakemake_main, error_lines, edit_yaml, files_of


TEACHER = "results/tiny/digits/teachers/cnn_small/teacher.pt"
STUDENT = "results/tiny/digits/runs/cnn_small-cnn_tiny/dfq/seed0/student.pt"


def _truncate(repository: Path) -> None:
    path = repository / TEACHER
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _foreign(repository: Path) -> None:
    shutil.copy(repository / STUDENT, repository / TEACHER)


# 1. A damaged or foreign input never costs a finished result ---------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("damage", [_truncate, _foreign], ids=["truncated", "a student copied"])
def test_a_damaged_teacher_is_refused_before_any_job_and_finished_runs_survive(
    finished_copy, damage
):
    repository = finished_copy
    damage(repository)
    before = _files(repository / "results") | _files(repository / "reports")

    result = _snakemake(repository)

    assert result.returncode == 2
    assert _error_lines(result) == [
        f"error: {TEACHER} is not the teacher its run wrote (its SHA-256 differs from the one in "
        f"{Path(TEACHER).parent}/metrics.json): it was damaged or replaced; restore it "
        f"(`dvc checkout`) or delete {Path(TEACHER).parent}/ to train it again"
    ]
    assert _files(repository / "results") | _files(repository / "reports") == before


@pytest.mark.slow
def test_a_damaged_run_record_is_refused_and_the_reports_survive(finished_copy):
    repository = finished_copy
    metrics = repository / "results/tiny/digits/runs/cnn_small-cnn_tiny/dafl/seed1/metrics.json"
    metrics.write_text(metrics.read_text()[:100])
    before = _files(repository / "reports")

    result = _snakemake(repository)

    assert result.returncode == 2
    (line,) = _error_lines(result)
    assert line.startswith(f"error: {metrics.relative_to(repository)} is not valid JSON")
    assert line.endswith(
        "delete results/tiny/digits/runs/cnn_small-cnn_tiny/dafl/seed1/ to run it again"
    )
    assert _files(repository / "reports") == before


# 2-5. Bad input through Snakemake: exit 2, one line per problem, nothing else -------------------


def _bad_method_value(repository: Path) -> None:
    _edit_yaml(
        repository / "params/methods/dfq.yaml",
        lambda m: m["hyperparameters"].update(generator_learning_rate=-1e-3),
    )


def _misspelt_method_key(repository: Path) -> None:
    _edit_yaml(
        repository / "params/methods/dafl.yaml",
        lambda m: m["hyperparameters"].update(generator_lr_typo=0.1),
    )


def _late_statistics_window(repository: Path) -> None:
    _edit_yaml(
        repository / "params.yaml",
        lambda p: p["protocols"]["tiny"].update(stability_start_epoch=50),
    )


def _data_root_is_a_file(repository: Path) -> None:
    (repository / "datasets.txt").write_text("not a folder\n")
    _edit_yaml(repository / "params.yaml", lambda p: p["data"].update(root="datasets.txt"))


def _yaml_syntax_error(repository: Path) -> None:
    path = repository / "params.yaml"
    path.write_text(path.read_text().replace("  digits:\n", "  digits: [\n", 1))


BAD_INPUT = {
    "a negative value in a method file": (
        _bad_method_value,
        [
            "error: params/methods/dfq.yaml: hyperparameters.generator_learning_rate: got -0.001; "
            "expected a number > 0"
        ],
    ),
    "a misspelt key in a method file": (
        _misspelt_method_key,
        [
            "error: params/methods/dafl.yaml: hyperparameters.generator_lr_typo: unknown key; "
            "allowed keys: student_temperature, generator, latent_dim, generator_base_channels, "
            "generator_learning_rate, generator_betas, one_hot_weight, "
            "information_entropy_weight, activation_weight, entropy_log_base, student_batch"
        ],
    ),
    "a statistics window after the last epoch": (
        _late_statistics_window,
        [
            f"error: params.yaml: protocols.tiny.stability_start_epoch: 50 is after the last epoch "
            f"(10) of {method} cnn_small-cnn_tiny in experiment 'digits', so mu and sigma^2 would "
            "be empty; choose an epoch <= the run's epochs"
            for method in yaml.safe_load((REPOSITORY / "params.yaml").read_text())["experiments"][
                "digits"
            ]["methods"]
        ],
    ),
    "data.root naming a file": (
        _data_root_is_a_file,
        [
            "error: params.yaml: data.root: 'datasets.txt' is a file; expected the folder that "
            "holds (or will hold) the datasets"
        ],
    ),
    "a YAML syntax error in params.yaml": (
        _yaml_syntax_error,
        [
            "error: params.yaml: not valid YAML (line 12, column 10): expected ',' or ']', but "
            "got ':'"
        ],
    ),
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_through_snakemake_is_one_line_per_problem_and_exit_2(tmp_path, case):
    edit, expected = BAD_INPUT[case]
    repository = copy_repository(tmp_path)
    edit(repository)

    result = _snakemake(repository)

    assert result.returncode == 2, result.stderr
    assert _error_lines(result) == expected
    assert not (repository / "results").exists()


def test_a_value_from_the_command_line_is_named_as_such_and_read_as_yaml(tmp_path):
    repository = copy_repository(tmp_path)
    result = _snakemake(repository, "--config", "data={root: data, download: maybe}")
    assert result.returncode == 2
    assert _error_lines(result) == [
        "error: command line (--config or --configfile): data.download: expected true or false, "
        "got 'maybe'"
    ]
    # Nested --config values reach the workflow as strings; numbers are read as numbers.
    plan = run_command(
        [*SNAKEMAKE, "-n", "--config", "experiments={digits: {seeds: [3]}}"], repository
    )
    assert "seed3" in plan.stdout + plan.stderr


def test_dfkd_check_names_the_same_problems(tmp_path):
    repository = copy_repository(tmp_path)
    _data_root_is_a_file(repository)
    _late_statistics_window(repository)
    result = run_command([str(BIN / "dfkd"), "check"], repository, check=False)
    assert result.returncode == 2
    methods = yaml.safe_load((repository / "params.yaml").read_text())["experiments"]["digits"]
    assert len(result.stderr.splitlines()) == 1 + len(methods["methods"])
    assert "data.root: 'datasets.txt' is a file" in result.stderr


# 6. A full disk is one line ------------------------------------------------------------------


def test_a_full_disk_is_one_error_naming_the_file_and_the_old_file_stays(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    target.write_text("old\n")

    def full(descriptor):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(DiskFullError, match=rf"while writing {target} .*free space under"):
        atomic_write_bytes(target, b"new\n" * 1000)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary left


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MiB tmpfs, as a disk that can fill up; needs the right to mount."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.slow
def test_a_run_on_a_full_disk_ends_in_one_line_and_resumes_once_space_is_freed(
    finished, small_disk
):
    run = small_disk / "run"
    run.mkdir()
    config = finished / "results/tiny/digits/runs/cnn_small-cnn_tiny/dfq/seed0/config.yaml"
    data = yaml.safe_load(config.read_text())
    data["teacher_checkpoint"] = str(finished / TEACHER)
    data["data"]["root"] = str(finished / "data")
    (run / "config.yaml").write_text(yaml.safe_dump(data))
    filler = small_disk / "filler"
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    filler.write_bytes(b"\0" * (free - 64 * 1024))  # 64 KiB left: less than a checkpoint
    command = [str(BIN / "dfkd"), "distill", "--config", str(run / "config.yaml"),
               "--out-dir", str(run), "--threads", "1"]  # fmt: skip

    result = run_command(command, finished, check=False)

    assert result.returncode == 1
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith("error: no space left on the device (or quota) while writing ")
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml"]  # nothing half-written
    filler.unlink()
    run_command(command, finished)
    assert json.loads((run / "metrics.json").read_text())["status"] == "completed"


# 7. Results are as readable as the umask allows ----------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_atomic_writes_follow_the_umask_like_open(tmp_path, umask):
    previous = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "atomic", b"x")
        (tmp_path / "plain").write_bytes(b"x")
    finally:
        os.umask(previous)
    mode = stat.S_IMODE((tmp_path / "atomic").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain").stat().st_mode) == 0o666 & ~umask


@pytest.mark.slow
def test_a_workflows_results_are_readable_by_the_group_and_others_under_umask_022(finished):
    outputs = [
        *finished.glob("reports/digits_*"),
        *finished.glob("results/tiny/digits/**/*.pt"),
        *finished.glob("results/tiny/digits/**/*.json"),
        *finished.glob("results/tiny/digits/**/config.yaml"),
    ]
    assert len(outputs) > 10
    modes = {str(p.relative_to(finished)): stat.S_IMODE(p.stat().st_mode) for p in outputs}
    assert set(modes.values()) == {0o644}, modes


# 8. Messages ---------------------------------------------------------------------------------


def test_progress_messages_after_the_last_epoch_and_for_batches(capsys):
    Progress("run", 10, 40, "round").start(10, 0, resumed=True)
    Progress("teacher", 30, 22, "batch").start(4, 0, resumed=True)
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "[run] resuming from the checkpoint after the last epoch (10): writing the final outputs",
        "[teacher] resuming from the checkpoint at epoch 5 of 30 (0 of 22 batches done)",
    ]
