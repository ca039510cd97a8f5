"""What runs again is decided by content (dfkd/freshness.py), as a user meets it through
Snakemake: an interrupted or failed job resumes and its report is rendered again; a deleted
teacher is trained again with its runs; a touched, copied or restored teacher of real size, a
changed data location or a recreated dataset record re-runs nothing; a dry run writes nothing.
All on copies of the shared finished workspace (conftest.py: DAFL and DFQ, seeds 0 and 1)."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.support import (
    BIN,
    SNAKEMAKE,
    copy_repository,
    edit_yaml,
    environment,
    error_lines,
    planned_jobs,
    run_command,
    snakemake_main,
)

TEACHER = Path("results/tiny/digits/teachers/cnn_small")
RUNS = Path("results/tiny/digits/runs/cnn_small-cnn_tiny")
RECORD = Path("results/tiny/digits/report_inputs/digits.json")
NOTHING = "Nothing to be done"


def _change_dfq(repository: Path, weight: float = 19.0) -> None:
    method = repository / "params/methods/dfq.yaml"
    method.write_text(
        method.read_text().replace("class_balance_weight: 20.0", f"class_balance_weight: {weight}")
    )


def _ran_with(run: Path) -> float:
    record = json.loads((run / "metrics.json").read_text())
    return record["config"]["hyperparameters"]["class_balance_weight"]


def _preempt_the_dfq_runs_once_they_checkpoint(repository: Path) -> list[Path]:
    """SIGTERM to both DFQ jobs (the two runs the change concerns, which run at once), as a
    scheduler preempting them sends, once each has written a checkpoint; Snakemake then fails.
    Returns their folders."""
    process = subprocess.Popen(
        SNAKEMAKE, cwd=repository, env=environment(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    while process.poll() is None and len(list(repository.glob(f"{RUNS}/dfq/*/checkpoint.pt"))) < 2:
        time.sleep(0.02)
    runs = sorted(
        checkpoint.parent for checkpoint in repository.glob(f"{RUNS}/dfq/*/checkpoint.pt")
    )
    folders = [str(run.relative_to(repository)).encode() for run in runs]
    jobs = [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and any(_is_the_job_of(entry, folder) for folder in folders)
    ]
    assert len(jobs) == 2
    for job in jobs:
        os.kill(job, signal.SIGTERM)
    assert process.wait(timeout=300) != 0
    return runs


def _is_the_job_of(process: Path, folder: bytes) -> bool:
    """Whether `process` is the `dfkd distill` of the run in `folder` (its --out-dir)."""
    try:
        arguments = (process / "cmdline").read_bytes().split(b"\0")
    except OSError:  # it ended meanwhile
        return False
    return (
        len(arguments) > 2 and arguments[1].endswith(b"/dfkd") and arguments[2] == b"distill"
        and folder in arguments
    )  # fmt: skip


def _fail_every_job(repository: Path) -> None:
    """Jobs that fail: a GPU asked for where there is none."""
    result = snakemake_main(repository, extra_environment={"DFKD_DEVICE": "cuda"})
    assert result.returncode != 0


# 1. A failed or interrupted job runs again, and so does the report that shows it --------------


@pytest.mark.slow
@pytest.mark.parametrize("how", ["preempted", "failed"])
def test_a_stopped_job_resumes_and_the_report_is_rendered_again(finished_copy, how):
    repository = finished_copy
    report = repository / "reports/digits_table.md"
    rendered = report.stat().st_mtime_ns
    _change_dfq(repository)
    if how == "preempted":
        stopped = _preempt_the_dfq_runs_once_they_checkpoint(repository)
    else:
        if torch.cuda.is_available():
            pytest.skip("DFKD_DEVICE=cuda does not fail where a GPU is")
        _fail_every_job(repository)
        stopped = [repository / RUNS / "dfq/seed0", repository / RUNS / "dfq/seed1"]
    # Snakemake removed the failed jobs' outputs; the report still shows the old setting.
    assert not any((run / "metrics.json").exists() for run in stopped)

    result = snakemake_main(repository)

    assert result.returncode == 0, result.stderr
    if how == "preempted":
        for run in stopped:
            assert "] resuming from the checkpoint at epoch" in (run / "distill.log").read_text()
    assert [_ran_with(repository / RUNS / f"dfq/seed{seed}") for seed in (0, 1)] == [19.0, 19.0]
    assert report.stat().st_mtime_ns > rendered
    # The report shows what the runs now hold.
    from dfkd.workflow import inputs_record

    recorded = json.loads((repository / RECORD).read_text())
    assert recorded == inputs_record(recorded["inputs"], repository)
    again = snakemake_main(repository)
    assert NOTHING in again.stdout + again.stderr


@pytest.mark.slow
def test_a_deleted_teacher_is_trained_again_with_the_runs_it_taught(finished_copy):
    shutil.rmtree(finished_copy / TEACHER)  # the README's remedy for a damaged teacher
    planned = planned_jobs(finished_copy)
    assert planned == {"train_teacher": 1, "distill": 4, "report": 1, "total": 6}


@pytest.mark.slow
def test_a_deleted_run_runs_again_with_its_report(finished_copy):
    shutil.rmtree(finished_copy / RUNS / "dafl/seed1")
    assert planned_jobs(finished_copy) == {"distill": 1, "report": 1, "total": 2}


# 2. Same bytes, new time: nothing runs again ---------------------------------------------------


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _with_a_teacher_of_real_size(repository: Path) -> Path:
    """The finished teacher saved again with 2 MiB of padding beside its weights (real teachers
    are 9-85 MB; Snakemake compares the content only of files under 1 MB), and every record
    that names its SHA-256 updated, as its jobs would have written them."""
    model = repository / TEACHER / "teacher.pt"
    saved = torch.load(model, map_location="cpu", weights_only=True)
    saved["padding"] = torch.zeros(2**19)  # float32: 2 MiB
    torch.save(saved, model)
    digest = _sha256(model)
    for metrics in [repository / TEACHER / "metrics.json", *repository.glob(f"{RUNS}/*/*/*.json")]:
        record = json.loads(metrics.read_text())
        if record["kind"] == "teacher":
            record["model_sha256"] = digest
        else:
            record["teacher"]["sha256"] = digest
        metrics.write_text(json.dumps(record, indent=2) + "\n")
    if (repository / RECORD).exists():  # what the report was rendered from, with them
        inputs = json.loads((repository / RECORD).read_text())["inputs"]
        digests = {
            path: hashlib.sha256((repository / path).read_bytes()).hexdigest() for path in inputs
        }
        (repository / RECORD).write_text(json.dumps({"inputs": digests}, indent=2) + "\n")
    assert model.stat().st_size > 2 * 10**6
    return model


@pytest.mark.slow
def test_a_touched_copied_or_restored_teacher_of_real_size_reruns_nothing(finished_copy):
    repository = finished_copy
    teacher = _with_a_teacher_of_real_size(repository)
    assert planned_jobs(repository) == {}
    teacher.touch()
    assert planned_jobs(repository) == {}
    shutil.copy(teacher, repository / "kept.pt")  # restored, as from a backup or re-extracted
    teacher.unlink()
    shutil.copy(repository / "kept.pt", teacher)
    os.utime(teacher, (time.time() + 3600, time.time() + 3600))
    assert planned_jobs(repository) == {}
    # Where the data lives, and whether it may be downloaded, changes no result; nor does a
    # dataset record prepared again.
    edit_yaml(repository / "params.yaml", lambda p: p["data"].update(download=False))
    (repository / "results/tiny/digits/dataset.json").unlink()
    assert planned_jobs(repository) == {}


# 3. A dry run changes nothing --------------------------------------------------------------------


def _state(repository: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(path.relative_to(repository)): (path.read_bytes(), path.stat().st_mtime_ns)
        for folder in ("results", "reports")
        for path in (repository / folder).rglob("*")
        if path.is_file()
    }


@pytest.mark.slow
def test_a_dry_run_writes_nothing_and_an_edit_reverted_reruns_nothing(finished_copy):
    repository = finished_copy
    shutil.rmtree(repository / ".snakemake")  # as in a fresh clone: no records of Snakemake's
    before = _state(repository)
    original = (repository / "params/methods/dfq.yaml").read_text()
    _change_dfq(repository)

    assert planned_jobs(repository) == {"distill": 2, "report": 1, "total": 3}

    assert _state(repository) == before
    (repository / "params/methods/dfq.yaml").write_text(original)
    assert planned_jobs(repository) == {}
    # DVC finds its outputs as it recorded them: nothing unsaved to refuse.
    run_command([str(BIN / "dvc"), "checkout", "benchmark@digits"], repository)
    assert _state(repository) == before


# What else a finished result must be to be kept --------------------------------------------------


@pytest.mark.slow
def test_a_hand_edited_config_of_a_finished_run_is_one_line(finished_copy):
    config = finished_copy / RUNS / "dfq/seed0/config.yaml"
    edit_yaml(config, lambda c: c["hyperparameters"].update(class_balance_weight=5.0))
    result = snakemake_main(finished_copy)
    assert result.returncode == 2
    assert error_lines(result) == [
        f"error: {config.relative_to(finished_copy)} is not the config its run recorded in "
        f"{RUNS}/dfq/seed0/metrics.json (edited by hand?); settings come from params.yaml and "
        f"params/: restore it (`dvc checkout`) or delete {RUNS}/dfq/seed0/ to run it again"
    ]


@pytest.mark.slow
def test_a_run_record_with_nan_is_refused_before_any_job(finished_copy):
    metrics = finished_copy / RUNS / "dafl/seed0/metrics.json"
    metrics.write_text(metrics.read_text().replace('"final_acc1": ', '"final_acc1": NaN, "x": ', 1))
    result = snakemake_main(finished_copy)
    assert result.returncode == 2
    assert error_lines(result) == [
        f"error: {metrics.relative_to(finished_copy)} holds NaN, which the suite never writes; "
        f"restore it (`dvc checkout`) or delete {RUNS}/dafl/seed0/ to run it again"
    ]


def test_an_unknown_study_is_one_line(tmp_path):
    repository = copy_repository(tmp_path)
    result = run_command(
        [SNAKEMAKE[0], "-n", "reports/studies/table99.md"], repository, check=False
    )
    assert result.returncode == 2
    studies = yaml.safe_load((repository / "params/studies.yaml").read_text())["studies"]
    assert error_lines(result) == [
        f"error: no study 'table99' in params/studies.yaml; have: {', '.join(studies)}"
    ]
