"""Which jobs and reports must run again, decided by content when the workflow starts.

Snakemake compares file times, and file contents only for files under 1 MB with its own records
(`.snakemake/`), which a fresh clone lacks; it never runs a finished job again because an input
is missing, and it deletes the outputs of a failed job. Left to itself it re-ran every run of a
teacher whose file was merely touched or restored, and left a report stale after a failed job.
So the suite decides, reading only:

- a teacher or run is *current* when all its outputs exist, its `metrics.json` records the
  digest of the settings it ran with (dfkd.config.config_hash) equal to the current one, and a
  run's record names the SHA-256 of the teacher file it distilled from, equal to the one the
  current teacher's record holds; any other job runs again (and resumes from its checkpoint);
- a report is *current* when every run and teacher it shows is current and the files it was
  rendered from are, byte for byte, the ones it recorded (`report_inputs/<name>.json` in its
  experiment's results).

The workflow hands Snakemake the jobs that are not current (pipelines/common.smk) and makes every
input `ancient()`, so that file times decide nothing. Nothing here writes a file: a dry run
changes nothing.

Finished results that jobs read are verified too: a teacher whose SHA-256 differs from the one
its run recorded, a released teacher's file that differs from its pin, an unreadable record, a
run's `config.yaml` edited by hand: one line each, before Snakemake could delete anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dfkd.config import config_hash
from dfkd.jobs import Job, Plan, Report
from dfkd.records import RecordError, load_json, read_record
from dfkd.workflow import inputs_record, released_teacher_problem, sha256_of

RESTORE = "restore it (`dvc checkout`) or delete {folder}/ to {again}"


@dataclass
class Freshness:
    """The verdict on every job and report of a plan."""

    stale: dict[str, str] = field(default_factory=dict)  # job folder or report -> why it runs
    problems: list[str] = field(default_factory=list)  # damaged results, one line each
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # current jobs' metrics

    def current(self, folder: str) -> bool:
        return folder not in self.stale


def _again(job: Job) -> str:
    return {"run": "run it again", "teacher": "train it again", "released": "import it again"}[
        job.kind
    ]


def _recorded_config(job: Job, record: dict[str, Any]) -> str | None:
    """A problem if the run's config.yaml is not the config its metrics recorded (edited)."""
    path = Path(job.folder, "config.yaml")
    try:
        written = json.dumps(_yaml(path), sort_keys=True)
    except (OSError, ValueError):
        written = None
    if written != json.dumps(record.get("config"), sort_keys=True):
        return (
            f"{path} is not the config its run recorded in {job.metrics} (edited by hand?); "
            "settings come from params.yaml and params/: "
            + RESTORE.format(folder=job.folder, again=_again(job))
        )
    return None


def _yaml(path: Path) -> Any:
    import yaml

    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ValueError(str(error)) from None


def _assess_job(plan: Plan, job: Job, verdict: Freshness) -> None:
    folder = job.folder
    if not all(Path(output).is_file() for output in job.outputs):
        verdict.stale[folder] = "unfinished" if Path(folder).exists() else "not run yet"
        return
    kind = "distillation" if job.kind == "run" else "teacher"
    try:
        record = read_record(job.metrics, kind, identity=True)
    except RecordError as error:
        verdict.problems.append(
            f"{job.metrics} {error}; " + RESTORE.format(folder=folder, again=_again(job))
        )
        return
    if job.kind != "run":
        model = Path(folder, job.model_file)
        if sha256_of(model) != record["model_sha256"]:
            verdict.problems.append(
                f"{model} is not the teacher its run wrote (its SHA-256 differs from the one in "
                f"{job.metrics}): it was damaged or replaced; "
                + RESTORE.format(folder=folder, again=_again(job))
            )
            return
    if record["provenance"]["config_hash"] != config_hash(job.settings()):
        verdict.stale[folder] = "its settings changed"
        return
    if job.teacher is not None:
        teacher = verdict.records.get(job.teacher)
        recorded = (record.get("teacher") or {}).get("sha256")
        if teacher is None or recorded != teacher["model_sha256"]:
            verdict.stale[folder] = "its teacher changed"
            return
    problem = _recorded_config(job, record)
    if problem:
        verdict.problems.append(problem)
        return
    verdict.records[folder] = record


def _released_source_problem(plan: Plan, job: Job) -> str | None:
    """A downloaded released teacher that differs from its pin, found before anything runs (a
    file not downloaded or not pinned is named when its import is asked for)."""
    settings = job.settings()
    if settings.sha256 is None or not Path(settings.checkpoint).is_file():
        return None
    problem = released_teacher_problem(plan.suite, settings.dataset, settings.architecture)
    return f"params.yaml: experiments.{settings.dataset}: {problem}" if problem else None


def _assess_report(report: Report, verdict: Freshness) -> None:
    waiting = [folder for folder in (*report.teachers, *report.runs) if not verdict.current(folder)]
    if waiting:
        verdict.stale[report.target] = f"{len(waiting)} of its runs and teachers run again"
        return
    if not all(Path(path).is_file() for path in report.inputs()):
        verdict.stale[report.target] = "an input is missing"
        return
    try:
        recorded = load_json(report.record)
    except (OSError, ValueError):
        recorded = None
    if recorded != inputs_record(report.inputs()):
        verdict.stale[report.target] = "its inputs changed since it was rendered"


def assess(plan: Plan) -> Freshness:
    """Reads every finished result of the plan (never writes) and decides what runs again."""
    verdict = Freshness()
    ordered = sorted(plan.jobs.values(), key=lambda job: job.kind == "run")  # teachers first
    for job in ordered:
        if job.kind == "released":
            problem = _released_source_problem(plan, job)
            if problem:
                verdict.problems.append(problem)
        _assess_job(plan, job, verdict)
    for report in plan.reports.values():
        _assess_report(report, verdict)
    return verdict


def dataset_records_problems(plan: Plan) -> list[str]:
    """An unreadable dataset record: one line each."""
    problems = []
    for record in sorted({plan.dataset_record(folder) for folder in plan.jobs}):
        if Path(record).exists():
            try:
                data = load_json(record)
            except (OSError, ValueError) as error:
                problems.append(
                    f"{record} is damaged ({type(error).__name__}); delete it to prepare the "
                    "dataset again"
                )
                continue
            if not isinstance(data, dict):
                problems.append(f"{record} is damaged; delete it to prepare the dataset again")
    return problems
