# Validates params.yaml (as Snakemake's config, so --config overrides are checked too) and the
# files under params/ through dfkd.config, before any job starts; defines the output layout.
# Every rule calls the `dfkd` command line of the environment the suite is installed in (see
# README), so jobs need no per-rule software environment.
from pathlib import Path

from dfkd.schema import to_dict
from dfkd.workflow import check_finished_results_or_exit, load_suite_or_exit

SUITE = load_suite_or_exit(config, "params.yaml", "params")

# Every wildcard of a run is a path level: results/<protocol>/<dataset>/...
TEACHER_DIR = "results/{protocol}/{dataset}/teachers/{architecture}"
RUN_DIR = "results/{protocol}/{dataset}/runs/{teacher}-{student}/{method}/seed{seed}"
DATASET_RECORD = "results/{protocol}/{dataset}/dataset.json"


wildcard_constraints:
    protocol="[a-z0-9_]+",
    dataset="[a-z0-9_]+",
    architecture="[a-z0-9_]+",
    teacher="[a-z0-9_]+",
    student="[a-z0-9_]+",
    method="[a-z0-9_]+",
    seed="[0-9]+",
    experiment="|".join(SUITE.params.experiments),


def teacher_checkpoint(protocol, dataset, architecture):
    return f"{TEACHER_DIR}/teacher.pt".format(
        protocol=protocol, dataset=dataset, architecture=architecture
    )


def report_inputs(w):
    protocol = SUITE.protocol_of(w.experiment)
    runs = [f"{RUN_DIR}/metrics.json".format(**run) for run in SUITE.runs(w.experiment)]
    teachers = [
        f"{TEACHER_DIR}/metrics.json".format(
            protocol=protocol, dataset=w.experiment, architecture=architecture
        )
        for architecture in SUITE.teachers_of(w.experiment)
    ]
    return {"runs": runs, "teachers": teachers}


# Finished results that jobs read are checked before any job runs (dfkd/workflow.py).
check_finished_results_or_exit(
    dataset_records=[
        DATASET_RECORD.format(protocol=SUITE.protocol_of(d), dataset=d)
        for d in SUITE.params.experiments
    ],
    teacher_dirs=[
        TEACHER_DIR.format(protocol=SUITE.protocol_of(d), dataset=d, architecture=a)
        for d in SUITE.params.experiments
        for a in SUITE.teachers_of(d)
    ],
    run_dirs=[RUN_DIR.format(**run) for d in SUITE.params.experiments for run in SUITE.runs(d)],
)
