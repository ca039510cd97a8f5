# Reports: every run of a dataset's experiment -> one table per file (Markdown, LaTeX, and HTML
# for Snakemake's report), the per-run and per-cell CSVs, headline metrics for `dvc metrics
# show`, learning curves and performance profiles (dfkd/reporting/report.py lists the files).
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
