# Validates params.yaml (as Snakemake's config, so --config overrides are checked too) and the
# files under params/ through dfkd.config, then decides by content which finished jobs and
# reports are current (dfkd/freshness.py), reading and never writing: a dry run changes nothing.
# Every job runs the `dfkd` command line of the environment the suite is installed in (see
# README), so no rule needs a software environment of its own.
from pathlib import Path

from dfkd.errors import UserError
from dfkd.freshness import assess, dataset_records_problems
from dfkd.jobs import (
    DATASET_RECORD,
    RELEASED_TEACHER_DIR,
    RUN_DIR,
    STUDY_RUN_DIR,
    TEACHER_DIR,
    VARIANT_TEACHER_DIR,
    Plan,
)
from dfkd.reporting.report import TABLES, report_files
from dfkd.workflow import exit_with, load_suite_or_exit, released_teacher_problem

SUITE = load_suite_or_exit(config, "params.yaml", "params")
PLAN = Plan(SUITE)
# Finished results that jobs read are checked, and what runs again decided, before any job.
FRESHNESS = assess(PLAN)
_problems = dataset_records_problems(PLAN) + FRESHNESS.problems
if _problems:
    exit_with(UserError("\n".join(_problems)))


wildcard_constraints:
    protocol="[a-z0-9_]+",
    dataset="[a-z0-9_]+",
    architecture="[a-z0-9_]+",
    teacher="[a-z0-9_]+",
    student="[a-z0-9_]+",
    method="[a-z0-9_]+",
    seed="[0-9]+",
    experiment="|".join(SUITE.params.experiments),
    study="[a-z0-9_]+",
    cell="[a-z0-9_]+",
    variant="[a-z0-9_]+",


# Snakemake decides re-runs by file times, by its own records and by missing outputs, and only
# forced jobs run regardless. The suite's decision (FRESHNESS) reaches it here, from the first
# input function it calls: after the DAG exists, before Snakemake decides what must run. Every
# job that is not current is forced (only those the targets need are in the DAG), and Snakemake's
# own triggers are left to file times, which `ancient()` inputs make moot: a touched or restored
# teacher, a changed data location or a recreated dataset record re-runs nothing.
_handed_over = False


def hand_over_decisions():
    global _handed_over
    if _handed_over or not workflow.is_main_process:
        return
    _handed_over = True
    from snakemake.settings.enums import RerunTrigger

    dag = workflow.dag
    dag.forcefiles.update(
        PLAN.job(folder).metrics if folder in PLAN.jobs else folder
        for folder in FRESHNESS.stale
    )
    workflow.dag_settings.rerun_triggers = frozenset({RerunTrigger.MTIME})


def job_folder(layout, wildcards):
    return layout.format(**dict(wildcards.items()))


def as_input(current):
    """A current job's inputs are `ancient()`: no file time re-runs it. A job that runs again
    keeps plain inputs: Snakemake reaches a job downstream of another that runs only through an
    input that is not ancient, even when the job is forced."""
    return ancient if current else (lambda path: path)


def job_inputs(layout):
    """A rule's input function: the dataset record (only for a job that runs: a recreated record
    re-runs nothing finished), a run's teacher file, a released teacher's file."""

    def inputs(w):
        hand_over_decisions()
        folder = job_folder(layout, w)
        job, current = PLAN.job(folder), FRESHNESS.current(folder)
        found = {}
        if not current:
            found["dataset"] = PLAN.dataset_record(folder)
        if job.teacher is not None:
            found["teacher"] = as_input(current)(str(Path(job.teacher, "teacher.pt")))
        if job.kind == "released" and not current:
            settings = job.settings()
            problem = released_teacher_problem(SUITE, settings.dataset, settings.architecture)
            if problem:
                exit_with(UserError(f"params.yaml: experiments.{settings.dataset}: {problem}"))
            found["checkpoint"] = settings.checkpoint
        return found

    return inputs


def job_settings(layout):
    """A rule's params function: the job's resolved config, as its command receives it."""
    return lambda w: PLAN.job(job_folder(layout, w)).settings_argument()


def report_inputs(name):
    """The report's inputs: the metrics of the runs and teachers it shows, and its files."""

    def inputs(w):
        hand_over_decisions()
        try:
            shown = PLAN.report(name(w))
        except KeyError:
            have = ", ".join(SUITE.studies.studies) or "none"
            exit_with(UserError(f"no study '{w.study}' in params/studies.yaml; have: {have}"))
        wrap = as_input(FRESHNESS.current(shown.target))
        return {
            "runs": [wrap(str(Path(run, "metrics.json"))) for run in shown.runs],
            "teachers": [wrap(str(Path(t, "metrics.json"))) for t in shown.teachers],
            "files": [wrap(path) for path in shown.files],
        }

    return inputs


def report_record(name):
    """Where a report's job records what it was rendered from (dfkd/freshness.py)."""
    return lambda w: PLAN.report(name(w)).record


def report_outputs():
    """The report's files; report() marks what `snakemake --report` shows of a finished target:
    every table, rendered in place, the CSVs and the figures."""
    outputs = {}
    for role, path in report_files("reports/{experiment}").items():
        name = role.rsplit("_", 1)[0]
        if role.endswith("_html"):
            path = report(
                path,
                caption="../reports/captions/table.rst",
                category="{experiment}",
                subcategory="Tables",
                labels={"table": TABLES[name][0]},
            )
        elif role.endswith(("_csv", "_png")):
            path = report(
                path,
                caption=f"../reports/captions/{name}.rst",
                category="{experiment}",
                subcategory="Data" if role.endswith("_csv") else "Figures",
                labels={"file": Path(path).name},
            )
        outputs[role] = path
    return outputs
