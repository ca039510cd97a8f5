"""The whole chain as a user runs it: Snakemake and DVC on a copy of the repository."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.support import BIN, REPOSITORY, copy_repository, environment, run_command


def _shrink_tiny_protocol(repository: Path) -> None:
    """Fewer epochs, for tests that compare two runs rather than judge how well students learn."""
    path = repository / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["protocols"]["tiny"].update(teacher_epochs=3, distill_epochs=2, rounds_per_epoch=3)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    run_command(["git", "commit", "-qam", "shrink", "--author", "t <t@example.com>"], repository)


def _report_numbers(repository: Path) -> dict:
    """Everything the reports say that does not depend on timing or the machine."""
    metrics = json.loads((repository / "reports/digits_metrics.json").read_text())
    runs = sorted((repository / "results/tiny/digits/runs").rglob("metrics.json"))
    histories = {
        str(path.relative_to(repository)): [
            {k: v for k, v in epoch.items() if not k.endswith("_seconds")}
            for epoch in json.loads(path.read_text())["history"]
        ]
        for path in runs
    }
    return {"headline": metrics, "histories": histories}


def _students(repository: Path) -> dict[str, dict]:
    return {
        str(path.relative_to(repository)): torch.load(path, weights_only=True)["state_dict"]
        for path in sorted((repository / "results/tiny/digits/runs").rglob("student.pt"))
    }


def test_snakemake_lint_is_clean():
    result = run_command([str(BIN / "snakemake"), "--lint"], REPOSITORY)
    assert "Congratulations" in result.stdout + result.stderr


@pytest.mark.slow
def test_embedded_default_runs_to_the_report_and_students_learn(tmp_path):
    repository = copy_repository(tmp_path)
    run_command([str(BIN / "snakemake"), "--cores", "all", "reports/digits_table.md"], repository)

    table = (repository / "reports/digits_table.md").read_text()
    latex = (repository / "reports/digits_table.tex").read_text()
    assert "protocol `tiny`" in table and "\\toprule" in latex
    for method in ("dafl", "dfq"):
        assert f"| {method} |" in table
    assert (repository / "reports/digits_curves.png").stat().st_size > 0

    headline = json.loads((repository / "reports/digits_metrics.json").read_text())
    assert headline["teacher"]["cnn_small"] > 90.0
    pair = headline["cnn_small-cnn_tiny"]
    chance = 10.0
    assert all(pair[m]["n"] == 2 and pair[m]["diverged"] == 0 for m in ("dafl", "dfq"))
    assert all(pair[m]["final_acc1_mean"] > 2 * chance for m in ("dafl", "dfq"))
    assert max(pair[m]["final_acc1_mean"] for m in ("dafl", "dfq")) > 6 * chance

    run = repository / "results/tiny/digits/runs/cnn_small-cnn_tiny/dfq/seed0"
    assert {"config.yaml", "student.pt", "metrics.json", "history.csv", "distill.log"} <= {
        p.name for p in run.iterdir()
    }
    assert not (run / "checkpoint.pt").exists()  # resume state is dropped once a run finished
    # A second invocation finds nothing to do.
    again = run_command(
        [str(BIN / "snakemake"), "--cores", "all", "reports/digits_table.md"], repository
    )
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.slow
def test_killed_serial_run_resumes_and_equals_a_parallel_dvc_repro(tmp_path):
    # Serial Snakemake, killed (the whole process group, as a lost node) once a distillation job
    # has written its first checkpoint, then restarted: the job resumes instead of restarting.
    serial = copy_repository(tmp_path / "serial")
    _shrink_tiny_protocol(serial)
    snakemake = [str(BIN / "snakemake"), "--cores", "1", "reports/digits_table.md"]
    process = subprocess.Popen(
        snakemake, cwd=serial, env=environment(), start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    runs = serial / "results/tiny/digits/runs"
    while process.poll() is None and not any(runs.glob("*/*/*/checkpoint.pt")):
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    (killed,) = [path.parent for path in runs.glob("*/*/*/checkpoint.pt")]
    assert not (killed / "metrics.json").exists()
    run_command([str(BIN / "snakemake"), "--unlock"], serial)
    run_command(snakemake, serial)
    assert "resuming from the checkpoint at epoch 2" in (killed / "distill.log").read_text()

    # The same experiment through DVC, whose stage runs Snakemake with parallel jobs.
    versioned = copy_repository(tmp_path / "dvc")
    _shrink_tiny_protocol(versioned)
    run_command([str(BIN / "dvc"), "repro", "benchmark@digits"], versioned)  # --cores all inside

    assert _report_numbers(versioned) == _report_numbers(serial)
    serial_students, dvc_students = _students(serial), _students(versioned)
    assert serial_students.keys() == dvc_students.keys() and len(serial_students) == 4
    for name, weights in serial_students.items():
        assert all(torch.equal(weights[k], dvc_students[name][k]) for k in weights), name

    lock = yaml.safe_load((versioned / "dvc.lock").read_text())
    outs = {out["path"] for out in lock["stages"]["benchmark@digits"]["outs"]}
    assert "results/tiny/digits" in outs
    shown = run_command([str(BIN / "dvc"), "metrics", "show", "--json"], versioned).stdout
    assert "final_acc1_mean" in shown
    status = run_command([str(BIN / "dvc"), "status", "benchmark@digits"], versioned).stdout
    assert "up to date" in status
