# Reports: every run of a dataset's experiment -> one table per file (Markdown, LaTeX, and HTML
# for Snakemake's report), the per-run and per-cell CSVs, headline metrics and each run's history
# for DVC (`dvc metrics show`, `dvc plots show`), learning curves and performance profiles
# (dfkd/reporting/report.py lists the files). The job records what it read (dfkd/freshness.py),
# so that the workflow renders the report again whenever a run it shows, or a file it reads,
# changes.
rule report:
    input:
        unpack(report_inputs(lambda w: w.experiment)),
    output:
        **report_outputs(),
        plots=directory("reports/plots/{experiment}"),
    params:
        published=lambda w, input: input.files[0],
        methods_dir=SUITE.params_dir / "methods",
        reference=lambda w, input: input.files[-1],
        out=lambda w: f"reports/{w.experiment}",
        record=report_record(lambda w: w.experiment),
    log:
        "logs/reports/{experiment}.log",
    shell:
        "(dfkd report --dataset {wildcards.experiment} --runs {input.runs}"
        " --teachers {input.teachers} --published {params.published}"
        " --methods-dir {params.methods_dir} --reference {params.reference} --out {params.out}"
        " && dfkd history-plots --runs {input.runs} --out-dir {output.plots}"
        " && dfkd record-inputs --record {params.record} {input}) > {log} 2>&1"
