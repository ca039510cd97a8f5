"""The whole chain as a user runs it: Snakemake and DVC on a copy of the repository."""

import csv
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from benchmarks.seed_robustness import recipes
from dfkd.config import load_suite, read_yaml
from tests.support import (
    BIN,
    REPOSITORY,
    assert_a_changed_setting_reruns_exactly_its_jobs,
    copy_repository,
    environment,
    planned_jobs,
    run_command,
)

# Per-run floors of the embedded default, measured over 5 seeds (benchmarks/seed_robustness.py).
FLOORS = REPOSITORY / "benchmarks" / "results" / "seed_robustness.json"


def test_snakemake_lint_asks_for_nothing_but_per_rule_environments():
    """Every job runs the `dfkd` of the one locked environment the workflow runs in (uv.lock, on
    every node: README), so no rule names a conda environment or a container of its own."""
    result = run_command([str(BIN / "snakemake"), "--lint"], REPOSITORY, check=False)
    output = (result.stdout + result.stderr).splitlines()
    assert not [line for line in output if line.startswith("Lints for snakefile")]
    titles = {line.strip() for line in output if line.startswith("    * ")}
    assert titles == {"* Specify a conda environment or container for each rule.:"}


def _kill_once_a_run_checkpoints(command: list[str], repository: Path) -> Path:
    """Starts Snakemake and SIGKILLs its whole process group, as a lost node would, as soon as a
    distillation job has written its first checkpoint; returns that job's run directory."""
    process = subprocess.Popen(
        command, cwd=repository, env=environment(), start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    runs = repository / "results/tiny/digits/runs"
    while process.poll() is None and not any(runs.glob("*/*/*/checkpoint.pt")):
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    (killed, *_) = [path.parent for path in runs.glob("*/*/*/checkpoint.pt")]
    assert not (killed / "metrics.json").exists()
    return killed


def _floors(suite) -> dict[str, float]:
    """Per-run floors of the committed seed-robustness result, checked to be for today's recipes."""
    measured = json.loads(FLOORS.read_text())
    current = json.loads(json.dumps(recipes(suite)))
    stale = sorted(k for k in current if measured["recipes"].get(k) != current[k])
    assert not stale, (
        f"{FLOORS} was measured for other recipes of {stale}: run "
        "`python benchmarks/seed_robustness.py` and commit its result"
    )
    return {key: row["floor"] for key, row in measured["methods"].items()}


def _assert_every_run_above_its_floor(repository: Path) -> None:
    """Every run, not a mean: one good seed must not carry a bad one."""
    suite = load_suite(read_yaml(repository / "params.yaml"), repository / "params")
    floors = _floors(suite)
    runs = list(csv.DictReader((repository / "reports/digits_runs.csv").open()))
    assert len(runs) == len(suite.runs("digits"))
    for run in runs:
        key = f"{run['pair']}/{run['method']}"
        assert run["status"] == "completed", f"{key} seed {run['seed']} diverged"
        final = float(run["final_acc1"])
        assert final >= floors[key], (
            f"{key} seed {run['seed']} ended at {final:.2f}% final Acc@1, below its floor "
            f"{floors[key]:.2f}% ({FLOORS.name})"
        )


def test_the_floors_cover_every_method_of_the_embedded_default(suite):
    floors = _floors(suite)
    runs = suite.runs("digits")
    assert {f"{r['teacher']}-{r['student']}/{r['method']}" for r in runs} <= floors.keys()
    assert all(floor >= 60.0 for floor in floors.values())  # six times chance, at least


@pytest.mark.slow
def test_embedded_default_survives_a_kill_and_its_students_learn(tmp_path, suite):
    repository = copy_repository(tmp_path)
    snakemake = [str(BIN / "snakemake"), "--cores", "all", "reports/digits_table.md"]
    killed = _kill_once_a_run_checkpoints(snakemake, repository)
    run_command([str(BIN / "snakemake"), "--unlock"], repository)
    run_command(snakemake, repository)
    # The interrupted job was run again and continued from its checkpoint.
    assert "resuming from the checkpoint at epoch 2" in (killed / "distill.log").read_text()

    table = (repository / "reports/digits_table.md").read_text()
    latex = (repository / "reports/digits_table.tex").read_text()
    assert "protocol `tiny`" in table and "\\toprule" in latex
    methods = suite.params.experiments["digits"].methods
    for method in methods:  # by their display names
        assert f"| {suite.methods[method].display_name} |" in table
    # The loop that ran, and which of the paper's and the reference code's options, are stated
    # beside each method, in the provenance.
    assert "; kept_batch best\n" in table
    assert "; adversarial_schedule eq15; self_paced log;" in table
    assert (
        "- MAD [mad]: 10 epochs x 20 rounds of 3 synthesis + 10 student steps, batch 32 "
        "(0.064 M student images), student SGD lr 0.0354 cosine; ema_placement "
        "after_generator_steps;"
    ) in table
    assert "label_embeddings random_orthogonal" in table  # NAYER's stand-in embeddings, named
    # Every run equals its seed of the committed 5-seed reference (benchmarks/results/).
    reference = (repository / "reports/digits/reference.md").read_text()
    runs = len(suite.runs("digits"))
    assert f"all {runs} runs and 1 teacher compared equal their reference exactly" in reference
    assert "| equal |" in reference and "differs" not in reference
    for name in ("digits_curves.png", "digits_curves.pdf", "digits/profile.pdf"):
        assert (repository / "reports" / name).stat().st_size > 0

    headline = json.loads((repository / "reports/metrics/digits.json").read_text())
    assert headline["teacher"]["cnn_small"] > 90.0
    _assert_every_run_above_its_floor(repository)

    run = repository / "results/tiny/digits/runs/cnn_small-cnn_tiny/dfq/seed0"
    assert {"config.yaml", "student.pt", "metrics.json", "history.csv", "distill.log"} <= {
        p.name for p in run.iterdir()
    }
    assert not any(run.parent.parent.glob("*/*/checkpoint*.pt"))  # dropped once runs finish
    again = run_command(snakemake, repository)
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.slow
def test_dvc_repro_records_every_output_and_snakemakes_report_shows_them(finished_copy):
    repository = finished_copy  # the shrunk embedded default after `dvc repro` (conftest.py)
    dvc = str(BIN / "dvc")
    lock = yaml.safe_load((repository / "dvc.lock").read_text())
    outs = {out["path"] for out in lock["stages"]["benchmark@digits"]["outs"]}
    # Every output is in DVC's cache, so that `dvc push` carries all of it (test_cluster.py).
    assert {"results/tiny/digits", "reports/digits_table.md", "reports/digits_curves.png"} <= outs
    status = run_command([dvc, "status", "benchmark@digits"], repository).stdout
    assert "up to date" in status
    # The headline metrics: one line, one column per cell and teacher, and no warning about the
    # experiments that did not run.
    shown = run_command([dvc, "metrics", "show"], repository)
    assert shown.stderr == ""
    header, row = shown.stdout.splitlines()
    assert header.split() == [
        "Path", "aggregate.dafl", "aggregate.dfq", "cnn_small-cnn_tiny.dafl",
        "cnn_small-cnn_tiny.dfq", "teacher.cnn_small",
    ]  # fmt: skip
    assert row.split()[0] == "reports/metrics/digits.json"
    # Each run's test accuracy per epoch, as data series.
    plots = json.loads(run_command([dvc, "plots", "show", "--json"], repository).stdout)
    assert not plots.get("errors")
    runs = sorted(path.relative_to(repository) for path in repository.glob("results/**/seed*"))
    assert sorted(plots["data"]) == [
        f"reports/plots/digits/{run.parent.parent.name}/{run.parent.name}/{run.name}.csv"
        for run in runs
    ]
    # Snakemake's own HTML report of the finished target: tables, runs, curves, job runtimes.
    report = [str(BIN / "snakemake"), "--report", "report.html", "reports/digits_table.md"]
    run_command(report, repository)
    html = (repository / "report.html").read_text(errors="replace")
    # Each table shown in place (an HTML page each), the CSVs and the figures.
    for name in ("table.html", "reproduction.html", "digits_runs.csv", "digits_cells.csv",
                 "digits_curves.png", "profile.png", "train_teacher"):  # fmt: skip
        assert name in html, name
    assert "report.html" not in run_command(["git", "status", "--short"], repository).stdout
    # Without Snakemake's records, as in a fresh clone, the suite's own records tell what changed
    # (test_cluster.py runs the clone itself, with a remote).
    shutil.rmtree(repository / ".snakemake")
    assert planned_jobs(repository) == {}
    assert_a_changed_setting_reruns_exactly_its_jobs(repository)


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
def test_the_cifar_tables_plan_every_pair_method_and_seed(suite, dataset, tmp_path):
    repository = copy_repository(tmp_path)
    plan = run_command(
        [str(BIN / "snakemake"), "-n", "--cores", "1", f"reports/{dataset}_table.md"], repository
    )
    jobs = dict(
        line.split()
        for line in plan.stdout.splitlines()
        if line.startswith(("distill ", "train_teacher ", "report ", "prepare_data "))
    )
    experiment = suite.params.experiments[dataset]
    runs = len(experiment.pairs) * len(experiment.methods) * len(experiment.seeds)
    baselines = {"nayer", "fast2", "fast5", "fast10"}
    assert {"adi", "cmi", "dafl", "dfq"} | baselines <= set(experiment.methods)
    assert jobs == {
        "prepare_data": "1",
        "train_teacher": str(len(suite.teachers_of(dataset))),
        "distill": str(runs),
        "report": "1",
    }
