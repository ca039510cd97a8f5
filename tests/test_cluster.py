"""Profiles for running the suite on more than one device: GPU slots on one machine, a real
single-node SLURM through the SLURM profile, and DVC's SSH remote for a new cluster."""

import csv
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from dfkd.errors import UserError
from tests import services
from tests.support import (
    BIN,
    assert_a_changed_setting_reruns_exactly_its_jobs,
    commit,
    copy_repository,
    environment,
    history_without_timings,
    planned_jobs,
    run_command,
    shrink_like_finished,
)

REPOSITORY_PROFILES = ("default", "gpus", "slurm")


def test_a_job_takes_the_first_free_gpu_slot_and_all_taken_is_one_line(tmp_path, monkeypatch):
    import multiprocessing

    monkeypatch.setenv("DFKD_GPU_SLOTS", "2")
    monkeypatch.setenv("DFKD_GPU_SLOT_DIR", str(tmp_path))
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:  # two holders at once: processes, as Snakemake's jobs are
        first = pool.apply_async(_hold_a_slot, (str(tmp_path / "release"),))
        second = pool.apply_async(_hold_a_slot, (str(tmp_path / "release"),))
        _wait_for(lambda: len(list(tmp_path.glob("held-*"))) == 2)
        with pytest.raises(UserError, match=r"all 2 GPU slots .* are taken"):
            _take_in_this_process()
        (tmp_path / "release").touch()
        assert sorted([first.get(30), second.get(30)]) == [0, 1]


def _take_in_this_process() -> int | None:
    import dfkd.slots

    dfkd.slots._held = None
    return dfkd.slots.gpu_slot()


def _hold_a_slot(release: str) -> int:
    import time
    from pathlib import Path

    from dfkd.slots import gpu_slot

    slot = gpu_slot()
    Path(os.environ["DFKD_GPU_SLOT_DIR"], f"held-{slot}").touch()
    while not Path(release).exists():
        time.sleep(0.05)
    return slot


def _wait_for(condition, seconds: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("name", REPOSITORY_PROFILES)
def test_every_profile_names_only_rules_of_the_workflow(name):
    from tests.support import REPOSITORY

    settings = yaml.safe_load((REPOSITORY / "profiles" / name / "config.yaml").read_text())
    rules = {
        line.split()[1].rstrip(":")
        for path in (REPOSITORY / "pipelines").glob("*.smk")
        for line in path.read_text().splitlines()
        if line.startswith("rule ")
    }
    assert set(settings.get("set-resources", {})) <= rules


# A single-node SLURM, as a cluster: the profile with a site's keys, every job a SLURM job --------


def _site_keys(profile: Path, partition: str) -> None:
    """What a user sets for a site, in the profile only: its partition, no account, and this
    node's resources (no GPU; each job asks for all its CPUs, so SLURM runs one job at a time,
    where the local run of `finished` had two at once)."""
    settings = yaml.safe_load(profile.read_text())
    settings["default-resources"]["slurm_partition"] = partition
    settings["slurm-no-account"] = True
    for resources in settings["set-resources"].values():
        resources.update(gpu=0, cpus_per_task=os.cpu_count(), mem_mb=1000)
    profile.write_text(yaml.safe_dump(settings, sort_keys=False))


def _terminate_the_first_distillation(repository: Path, workflow: subprocess.Popen) -> tuple:
    """SIGTERM, as a preemption sends it, to the first distillation job once its run has begun
    (the first line of its log); returns the job's id and the run's folder."""
    runs = repository / "results/tiny/digits/runs"
    while not (begun := [p.parent for p in runs.glob("*/*/*/distill.log") if _begun(p)]):
        assert workflow.poll() is None, "the workflow ended before any distillation began"
        time.sleep(0.02)
    (run,) = begun
    queue = run_command(["squeue", "-h", "-t", "RUNNING", "-o", "%i %k"], repository).stdout
    wildcards = f"_{run.parent.name}_{run.name.removeprefix('seed')}"
    (job,) = [line.split()[0] for line in queue.splitlines() if line.endswith(wildcards)]
    run_command(["scancel", "--signal=TERM", job], repository)
    return job, run


def _begun(log: Path) -> bool:
    """The run's first line: printed once its stop signals are caught (dfkd/distill.py)."""
    return "] starting at epoch 1 of" in log.read_text()


def _records(repository: Path) -> list[Path]:
    results = repository / "results/tiny/digits"
    return sorted(
        [*results.glob("teachers/*/metrics.json"), *results.glob("runs/*/*/*/metrics.json")]
    )


def _assert_same_results(repository: Path, reference: Path) -> None:
    """The same teacher, students and histories, bit for bit, and the same tables, but for
    timings, memory and the commit."""
    assert [p.relative_to(repository) for p in _records(repository)] == [
        p.relative_to(reference) for p in _records(reference)
    ]
    for record in _records(repository):
        twin = reference / record.relative_to(repository)
        assert history_without_timings(record.parent) == history_without_timings(twin.parent)
        (model,) = {"teacher.pt", "student.pt"} & {p.name for p in record.parent.iterdir()}
        ours = torch.load(record.parent / model, weights_only=True)["state_dict"]
        theirs = torch.load(twin.parent / model, weights_only=True)["state_dict"]
        assert all(torch.equal(ours[k], theirs[k]) for k in ours), record
    comparison = [_between(p / "reports/digits_table.md", "### ", "<details>")
                  for p in (repository, reference)]  # fmt: skip
    assert comparison[0] == comparison[1]
    rows = [_deterministic_columns(p / "reports/digits_runs.csv") for p in (repository, reference)]
    assert rows[0] == rows[1]


def _between(path: Path, first: str, last: str) -> str:
    text = path.read_text()
    return text[text.index(first) : text.index(last)]


def _deterministic_columns(path: Path) -> list[dict]:
    varying = ("_hours", "_bytes", "git_commit")
    return [{k: v for k, v in row.items() if not k.endswith(varying)}
            for row in csv.DictReader(path.open())]  # fmt: skip


@pytest.mark.slow
def test_the_slurm_profile_runs_every_job_on_slurm_and_a_preempted_job_resumes(
    slurm, finished, tmp_path
):
    repository = copy_repository(tmp_path / "repository")
    shrink_like_finished(repository)
    _site_keys(repository / "profiles/slurm/config.yaml", slurm)
    commit(repository, "profiles", "site keys")
    command = [str(BIN / "snakemake"), "--workflow-profile", "profiles/slurm",
               "--slurm-init-seconds-before-status-checks", "1",  # not 40: a test's jobs are short
               "reports/digits_table.md"]  # fmt: skip
    log = tmp_path / "snakemake.log"
    with log.open("w") as output:
        workflow = subprocess.Popen(
            command, cwd=repository, env=environment(), stdout=output, stderr=subprocess.STDOUT
        )
    try:
        job, run = _terminate_the_first_distillation(repository, workflow)
        assert workflow.wait(timeout=600) == 0, log.read_text()
    finally:
        if workflow.poll() is None:
            workflow.kill()
            subprocess.run(["scancel", "--partition", slurm])

    # The preempted job failed (SIGTERM: exit 143), was submitted again, and resumed from the
    # checkpoint its run wrote on the signal.
    assert "SLURM status is: 'FAILED'" in log.read_text()
    assert "] resuming from the checkpoint " in (run / "distill.log").read_text().splitlines()[0]
    # Every job ran as a SLURM job of its own; the preempted run's outputs are its second job's.
    jobs = {
        p: json.loads(p.read_text())["provenance"]["slurm_job_id"] for p in _records(repository)
    }
    assert None not in jobs.values() and len(set(jobs.values())) == len(jobs)
    assert jobs[run / "metrics.json"] != job
    _assert_same_results(repository, finished)


# DVC's SSH remote over loopback, and a new cluster that retrains nothing ---------------------


@pytest.mark.slow
def test_a_new_cluster_pulls_every_result_over_ssh_and_reruns_only_what_changed(
    finished_copy, tmp_path
):
    reason = services.why_not_installable(services.SSH_PACKAGES)
    if reason:
        pytest.skip(f"the SSH remote test {reason}")
    dvc = str(BIN / "dvc")
    store = tmp_path / "store"
    clone = tmp_path / "clone"
    with services.ssh_server(tmp_path / "sshd") as server:
        ssh = {"HOME": str(server.home)}  # its known_hosts holds the server's key

        def connect(repository: Path) -> None:  # each machine's own credentials, not in git
            for key, value in (("user", server.user), ("keyfile", str(server.keyfile))):
                run_command([dvc, "remote", "modify", "--local", "storage", key, value], repository)

        remote = f"ssh://127.0.0.1:{server.port}{store}"
        run_command([dvc, "remote", "add", "-d", "storage", remote], finished_copy)
        commit(finished_copy, ".dvc/config", "storage")
        connect(finished_copy)
        run_command([dvc, "push", "benchmark@digits"], finished_copy, extra_environment=ssh)
        assert any(store.rglob("*")), "nothing arrived on the remote"

        run_command(["git", "clone", "-q", str(finished_copy), str(clone)], tmp_path)
        connect(clone)
        run_command([dvc, "pull", "benchmark@digits"], clone, extra_environment=ssh)

    # DVC keeps no file times and the clone has no records of Snakemake's: neither decides
    # anything (README, "A new cluster").
    assert planned_jobs(clone) == {}
    status = run_command([dvc, "status", "benchmark@digits"], clone).stdout
    assert "Data and pipelines are up to date." in status
    _assert_same_results(clone, finished_copy)
    # A clone has none of Snakemake's records of the runs: their settings files tell what changed.
    assert_a_changed_setting_reruns_exactly_its_jobs(clone)
