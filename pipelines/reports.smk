# Reports: every run of a dataset's experiment -> Markdown and LaTeX tables, a tidy CSV,
# headline metrics and each run's history for DVC (`dvc metrics show`, `dvc plots show`), and
# learning curves. The job records what it read (dfkd/freshness.py), so that the workflow renders
# the report again whenever a run it shows, or a file it reads, changes.


rule report:
    input:
        unpack(report_inputs(lambda w: w.experiment)),
    output:
        # report(): what `snakemake --report` shows of a finished target.
        markdown=report(
            "reports/{experiment}_table.md",
            caption="../reports/captions/table.rst",
            category="{experiment}",
        ),
        latex="reports/{experiment}_table.tex",
        runs_csv=report(
            "reports/{experiment}_runs.csv",
            caption="../reports/captions/runs.rst",
            category="{experiment}",
        ),
        metrics="reports/metrics/{experiment}.json",
        plots=directory("reports/plots/{experiment}"),
        curves=report(
            "reports/{experiment}_curves.png",
            caption="../reports/captions/curves.rst",
            category="{experiment}",
        ),
    params:
        published=lambda w, input: input.files[0],
        templates=lambda w, input: Path(input.files[1]).parent,
        record=report_record(lambda w: w.experiment),
    log:
        "logs/reports/{experiment}.log",
    shell:
        "(dfkd report --dataset {wildcards.experiment} --runs {input.runs}"
        " --teachers {input.teachers} --published {params.published}"
        " --templates {params.templates} --markdown {output.markdown} --latex {output.latex}"
        " --runs-csv {output.runs_csv} --metrics {output.metrics} --curves {output.curves}"
        " && dfkd history-plots --runs {input.runs} --out-dir {output.plots}"
        " && dfkd record-inputs --record {params.record} {input}) > {log} 2>&1"
