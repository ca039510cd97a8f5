# Validates params.yaml (as Snakemake's config, so --config overrides are checked too) and the
# files under params/ through dfkd.config, before any job starts; defines the output layout.
# Every job runs the `dfkd` command line of the environment the suite is installed in (see
# README), so no rule needs a software environment of its own.
from functools import partial
from pathlib import Path

from dfkd.atomic import atomic_write_text
from dfkd.config import config_text
from dfkd.config.studies import TRAINED
from dfkd.reporting.report import TABLES, report_files
from dfkd.workflow import check_finished_results_or_exit, load_suite_or_exit

SUITE = load_suite_or_exit(config, "params.yaml", "params")

# Every wildcard of a run is a path level: results/<protocol>/<dataset>/...
TEACHER_DIR = "results/{protocol}/{dataset}/teachers/{architecture}"
# A released teacher (params/released_teachers.yaml), verified and evaluated by the suite.
RELEASED_TEACHER_DIR = "results/{protocol}/{dataset}/released_teachers/{architecture}"
RUN_DIR = "results/{protocol}/{dataset}/runs/{teacher}-{student}/{method}/seed{seed}"
DATASET_RECORD = "results/{protocol}/{dataset}/dataset.json"
# Declared studies (params/studies.yaml) and the teachers of their teacher variants.
STUDY_RUN_DIR = "results/{protocol}/{dataset}/studies/{study}/{cell}/seed{seed}"
VARIANT_TEACHER_DIR = "results/{protocol}/{dataset}/teacher_variants/{variant}/{architecture}"


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


def experiment_teacher_dir(protocol, dataset, architecture):
    """The folder of an experiment's teacher: trained by the suite, or released."""
    released = SUITE.teacher_source(dataset) == "released"
    layout = RELEASED_TEACHER_DIR if released else TEACHER_DIR
    return layout.format(protocol=protocol, dataset=dataset, architecture=architecture)


def teacher_checkpoint(protocol, dataset, architecture):
    return f"{experiment_teacher_dir(protocol, dataset, architecture)}/teacher.pt"


def report_inputs(w):
    protocol = SUITE.protocol_of(w.experiment)
    runs = [f"{RUN_DIR}/metrics.json".format(**run) for run in SUITE.runs(w.experiment)]
    teachers = [
        f"{experiment_teacher_dir(protocol, w.experiment, architecture)}/metrics.json"
        for architecture in SUITE.teachers_of(w.experiment)
    ]
    return {"runs": runs, "teachers": teachers}


# The embedded default's committed runs, compared with its runs seed by seed.
SEED_REFERENCE = "benchmarks/results/seed_robustness.json"


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


def study_teacher_dir(protocol, dataset, study, cell):
    """The folder of the teacher a study's cell distils from: trained, or a teacher variant."""
    spec = SUITE.study(study).cells[cell]
    architecture = SUITE.study(study).pair.split("-")[0]
    if spec.teacher == TRAINED:
        return experiment_teacher_dir(protocol, dataset, architecture)
    return VARIANT_TEACHER_DIR.format(
        protocol=protocol, dataset=dataset, variant=spec.teacher, architecture=architecture
    )


def study_teacher_checkpoint(protocol, dataset, study, cell):
    return str(Path(study_teacher_dir(protocol, dataset, study, cell), "teacher.pt"))


def study_report_inputs(w):
    runs = SUITE.study_runs(w.study)
    teachers = dict.fromkeys(
        study_teacher_dir(run["protocol"], run["dataset"], w.study, run["cell"]) for run in runs
    )
    return {
        "runs": [f"{STUDY_RUN_DIR}/metrics.json".format(**run) for run in runs],
        "teachers": [str(Path(directory, "metrics.json")) for directory in teachers],
    }


# Every job's settings by the folder the job writes. They are also a file, one of the job's
# inputs (job_settings_file): a change to them, or to the suite version they hold, re-runs
# exactly that job and the report, also where Snakemake has no records of its own, as in a fresh
# clone after `dvc pull` (README, "Clusters").
TEACHER_SETTINGS, RUN_SETTINGS = {}, {}
for _dataset in SUITE.params.experiments:
    _protocol = SUITE.protocol_of(_dataset)
    for _architecture in SUITE.teachers_of(_dataset):
        if SUITE.teacher_source(_dataset) == "released":
            _settings = SUITE.import_teacher_config
        else:
            _settings = SUITE.teacher_config
        TEACHER_SETTINGS[experiment_teacher_dir(_protocol, _dataset, _architecture)] = partial(
            _settings, _protocol, _dataset, _architecture
        )
    for _run in SUITE.runs(_dataset):
        RUN_SETTINGS[RUN_DIR.format(**_run)] = partial(
            SUITE.run_config, _run["protocol"], _dataset, _run["teacher"], _run["student"],
            _run["method"], _run["seed"], teacher_checkpoint(_protocol, _dataset, _run["teacher"]),
        )  # fmt: skip
for _study in SUITE.studies.studies.values():
    _protocol = SUITE.protocol_of(_study.experiment)
    for _cell in _study.cells.values():
        if _cell.teacher != TRAINED:
            _architecture = _study.pair.split("-")[0]
            _folder = VARIANT_TEACHER_DIR.format(
                protocol=_protocol, dataset=_study.experiment, variant=_cell.teacher,
                architecture=_architecture,
            )  # fmt: skip
            TEACHER_SETTINGS[_folder] = partial(
                SUITE.teacher_variant_config, _protocol, _study.experiment, _cell.teacher,
                _architecture,
            )  # fmt: skip
for _name in SUITE.studies.studies:
    for _run in SUITE.study_runs(_name):
        _checkpoint = study_teacher_checkpoint(
            _run["protocol"], _run["dataset"], _name, _run["cell"]
        )
        RUN_SETTINGS[STUDY_RUN_DIR.format(**_run)] = partial(
            SUITE.study_run_config, _name, _run["cell"], _run["seed"], _checkpoint
        )
JOB_SETTINGS = TEACHER_SETTINGS | RUN_SETTINGS


def job_settings_of(folder):
    """The resolved settings of the job that writes `folder`."""
    if folder not in JOB_SETTINGS:
        raise ValueError(f"no job of params.yaml or params/studies.yaml writes {folder}")
    return JOB_SETTINGS[folder]()


def job_settings_file(layout):
    """A rule's input function: its job's settings file, `<job folder>/settings.yaml`, written
    whenever the settings differ from the file's (also by a dry run, which so records them).
    A changed setting thus makes an input newer than the job's outputs, which Snakemake sees by
    file times alone, without records of its own, as in a fresh clone after `dvc pull`."""

    def settings_file(w):
        folder = layout.format(**dict(w.items()))
        path = Path(folder, "settings.yaml")
        text = config_text(job_settings_of(folder))
        if not path.exists() or path.read_text() != text:
            atomic_write_text(path, text)
        return str(path)

    return settings_file


# Finished results that jobs read are checked before any job runs (dfkd/workflow.py).
check_finished_results_or_exit(
    dataset_records=[
        DATASET_RECORD.format(protocol=SUITE.protocol_of(d), dataset=d)
        for d in SUITE.params.experiments
    ],
    teacher_dirs=list(TEACHER_SETTINGS),
    run_dirs=list(RUN_SETTINGS),
)
