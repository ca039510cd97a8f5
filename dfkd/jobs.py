"""Every job of the workflow as the suite sees it: the folder it writes, the settings it runs
with, the teacher a distillation reads, and the report that shows its results.

The Snakemake rules (pipelines/) write the same folders; this table is what the workflow's start
checks read (dfkd/freshness.py) and what each job hands its command. Every wildcard of a job is a
path level: results/<protocol>/<dataset>/...
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dfkd.config import Suite
from dfkd.config.studies import TRAINED
from dfkd.schema import to_dict

TEACHER_DIR = "results/{protocol}/{dataset}/teachers/{architecture}"
# A released teacher (params/released_teachers.yaml), verified and evaluated by the suite.
RELEASED_TEACHER_DIR = "results/{protocol}/{dataset}/released_teachers/{architecture}"
RUN_DIR = "results/{protocol}/{dataset}/runs/{teacher}-{student}/{method}/seed{seed}"
DATASET_RECORD = "results/{protocol}/{dataset}/dataset.json"
# Declared studies (params/studies.yaml) and the teachers of their teacher variants.
STUDY_RUN_DIR = "results/{protocol}/{dataset}/studies/{study}/{cell}/seed{seed}"
VARIANT_TEACHER_DIR = "results/{protocol}/{dataset}/teacher_variants/{variant}/{architecture}"
# What a report was rendered from (dfkd/freshness.py), inside its experiment's results, which
# DVC versions with the runs.
REPORT_RECORD = "results/{protocol}/{dataset}/report_inputs/{dataset}.json"
STUDY_REPORT_RECORD = "results/{protocol}/{dataset}/report_inputs/study_{study}.json"

# The embedded default's committed runs, which its report compares with its runs seed by seed.
SEED_REFERENCE = "benchmarks/results/seed_robustness.json"

JobKind = Literal["teacher", "released", "run"]


@dataclass(frozen=True)
class Job:
    """One training job: a teacher trained or imported, or one distillation run."""

    folder: str
    kind: JobKind
    resolve: Callable[[], Any] = field(repr=False, compare=False)
    teacher: str | None = None  # a run's teacher folder

    @property
    def model_file(self) -> str:
        return "student.pt" if self.kind == "run" else "teacher.pt"

    @property
    def outputs(self) -> tuple[str, ...]:
        """The files a finished job leaves, `metrics.json` written last."""
        names = ("config.yaml", self.model_file, "history.csv", "metrics.json")
        return tuple(str(Path(self.folder, name)) for name in names)

    @property
    def metrics(self) -> str:
        return str(Path(self.folder, "metrics.json"))

    def settings(self) -> Any:
        """The job's resolved config (a TeacherRunConfig, ImportTeacherConfig or RunConfig)."""
        return self.resolve()

    def settings_argument(self) -> str:
        """The resolved config as the one-line JSON its command receives (`--settings`)."""
        return json.dumps(to_dict(self.settings()), separators=(",", ":"))


@dataclass(frozen=True)
class Report:
    """One rendered table (an experiment's or a study's) and what it is rendered from."""

    target: str  # its Markdown file, the target users name
    record: str  # what it was last rendered from (dfkd/freshness.py)
    runs: tuple[str, ...]  # run folders, in table order
    teachers: tuple[str, ...]  # teacher folders
    files: tuple[str, ...]  # the other files it reads: params files, the seed reference

    def inputs(self) -> list[str]:
        """Every file the report reads, in the order its job receives them."""
        return [
            *(str(Path(run, "metrics.json")) for run in self.runs),
            *(str(Path(teacher, "metrics.json")) for teacher in self.teachers),
            *self.files,
        ]


class Plan:
    """Every job and report that params.yaml, params/ and params/studies.yaml declare."""

    def __init__(self, suite: Suite) -> None:
        self.suite = suite
        self.jobs: dict[str, Job] = {}
        self.reports: dict[str, Report] = {}
        for dataset in suite.params.experiments:
            self._add_experiment(dataset)
        for name in suite.studies.studies:
            self._add_study(name)

    # -- folders ------------------------------------------------------------------------------

    def teacher_dir(self, protocol: str, dataset: str, architecture: str) -> str:
        """The folder of an experiment's teacher: trained by the suite, or released."""
        released = self.suite.teacher_source(dataset) == "released"
        layout = RELEASED_TEACHER_DIR if released else TEACHER_DIR
        return layout.format(protocol=protocol, dataset=dataset, architecture=architecture)

    def study_teacher_dir(self, study: str, cell: str) -> str:
        """The folder of the teacher a study's cell distils from: trained, or a variant."""
        chosen = self.suite.study(study)
        protocol = self.suite.protocol_of(chosen.experiment)
        architecture = chosen.pair.split("-")[0]
        spec = chosen.cells[cell]
        if spec.teacher == TRAINED:
            return self.teacher_dir(protocol, chosen.experiment, architecture)
        return VARIANT_TEACHER_DIR.format(
            protocol=protocol, dataset=chosen.experiment, variant=spec.teacher,
            architecture=architecture,
        )  # fmt: skip

    def dataset_record(self, folder: str) -> str:
        """The dataset record of the experiment a job folder belongs to."""
        _, protocol, dataset, *_ = Path(folder).parts
        return DATASET_RECORD.format(protocol=protocol, dataset=dataset)

    def job(self, folder: str) -> Job:
        if folder not in self.jobs:
            raise KeyError(f"no job of params.yaml or params/studies.yaml writes {folder}")
        return self.jobs[folder]

    def report(self, name: str) -> Report:
        """An experiment's report (`digits`) or a study's (`studies/table5`)."""
        return self.reports[name]

    # -- building -----------------------------------------------------------------------------

    def _add(self, folder: str, kind: JobKind, resolve: Callable[[], Any], teacher=None) -> None:
        self.jobs[folder] = Job(folder, kind, functools.cache(resolve), teacher)

    def _add_experiment(self, dataset: str) -> None:
        suite = self.suite
        protocol = suite.protocol_of(dataset)
        released = suite.teacher_source(dataset) == "released"
        teachers = []
        for architecture in suite.teachers_of(dataset):
            folder = self.teacher_dir(protocol, dataset, architecture)
            resolve = suite.import_teacher_config if released else suite.teacher_config
            self._add(
                folder, "released" if released else "teacher",
                functools.partial(resolve, protocol, dataset, architecture),
            )  # fmt: skip
            teachers.append(folder)
        runs = []
        for run in suite.runs(dataset):
            folder = RUN_DIR.format(**run)
            teacher = self.teacher_dir(protocol, dataset, run["teacher"])
            resolve = functools.partial(
                suite.run_config, protocol, dataset, run["teacher"], run["student"],
                run["method"], run["seed"], str(Path(teacher, "teacher.pt")),
            )  # fmt: skip
            self._add(folder, "run", resolve, teacher)
            runs.append(folder)
        self.reports[dataset] = Report(
            target=f"reports/{dataset}_table.md",
            record=REPORT_RECORD.format(protocol=protocol, dataset=dataset),
            runs=tuple(runs),
            teachers=tuple(teachers),
            # published numbers, the methods' display names, the seed reference (last)
            files=(
                str(suite.params_dir / "published.yaml"),
                *sorted(str(path) for path in (suite.params_dir / "methods").glob("*.yaml")),
                SEED_REFERENCE,
            ),
        )

    def _add_study(self, name: str) -> None:
        suite = self.suite
        study = suite.study(name)
        protocol = suite.protocol_of(study.experiment)
        architecture = study.pair.split("-")[0]
        for cell in study.cells.values():
            if cell.teacher != TRAINED:
                folder = VARIANT_TEACHER_DIR.format(
                    protocol=protocol, dataset=study.experiment, variant=cell.teacher,
                    architecture=architecture,
                )  # fmt: skip
                resolve = functools.partial(
                    suite.teacher_variant_config, protocol, study.experiment, cell.teacher,
                    architecture,
                )  # fmt: skip
                self._add(folder, "teacher", resolve)
        runs, teachers = [], []
        for run in suite.study_runs(name):
            folder = STUDY_RUN_DIR.format(**run)
            teacher = self.study_teacher_dir(name, run["cell"])
            resolve = functools.partial(
                suite.study_run_config, name, run["cell"], run["seed"],
                str(Path(teacher, "teacher.pt")),
            )  # fmt: skip
            self._add(folder, "run", resolve, teacher)
            runs.append(folder)
            teachers.append(teacher)
        self.reports[f"studies/{name}"] = Report(
            target=f"reports/studies/{name}.md",
            record=STUDY_REPORT_RECORD.format(
                protocol=protocol, dataset=study.experiment, study=name
            ),
            runs=tuple(runs),
            teachers=tuple(dict.fromkeys(teachers)),
            files=(str(suite.params_dir / "studies.yaml"),),
        )
