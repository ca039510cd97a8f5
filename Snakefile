# The suite's run graph: teachers -> distillation runs -> reports.
#   snakemake --cores all reports/digits_table.md     (the embedded default; also `rule all`)
#   snakemake --cores all reports/cifar10_table.md    (the paper protocol on a GPU box)
#   snakemake --cores all reports/studies/table5.md   (a declared study, params/studies.yaml)
# The experiment matrix and the protocols are in params.yaml; values per method and dataset
# under params/. See README.md.
from snakemake.utils import min_version

min_version("9.0")

from dfkd.workflow import check_params_file

# Before Snakemake reads it: its own loader names neither line nor column of a YAML error.
check_params_file("params.yaml")


configfile: "params.yaml"


# `snakemake --report report.html <target>`: the tables, runs and curves of a finished target,
# with every job's runtime.
report: "reports/captions/workflow.rst"


include: "pipelines/common.smk"
include: "pipelines/data.smk"
include: "pipelines/teachers.smk"
include: "pipelines/distill.smk"
include: "pipelines/reports.smk"
include: "pipelines/studies.smk"


# Light jobs run where Snakemake runs, also with a cluster executor: the data download needs the
# network, which compute nodes often lack, and a report takes seconds.
localrules:
    prepare_data,
    report,
    study_report,


rule all:
    default_target: True
    input:
        "reports/digits_table.md",
