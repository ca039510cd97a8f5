# Reports: every run of a dataset's experiment -> one table per file (Markdown, LaTeX, and HTML
# for Snakemake's report), the per-run and per-cell CSVs, headline metrics for `dvc metrics
# show`, learning curves and performance profiles (dfkd/reporting/report.py lists the files).
from dfkd.reporting.report import TABLES, report_files

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


rule report:
    input:
        unpack(report_inputs),
        published="params/published.yaml",
        methods=sorted(str(path) for path in Path("params/methods").glob("*.yaml")),
        reference=SEED_REFERENCE,
    output:
        **report_outputs(),
    params:
        out=lambda w: f"reports/{w.experiment}",
    log:
        "logs/reports/{experiment}.log",
    shell:
        "dfkd report --dataset {wildcards.experiment} --runs {input.runs}"
        " --teachers {input.teachers} --published {input.published}"
        " --methods-dir params/methods --reference {input.reference} --out {params.out}"
        " > {log} 2>&1"
