# Reports: every run of a dataset's experiment -> Markdown and LaTeX tables, a tidy CSV,
# headline metrics for `dvc metrics show`, and learning curves.


rule report:
    input:
        unpack(report_inputs),
        published="params/published.yaml",
        templates=["reports/templates/table.md.j2", "reports/templates/table.tex.j2"],
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
        metrics="reports/{experiment}_metrics.json",
        curves=report(
            "reports/{experiment}_curves.png",
            caption="../reports/captions/curves.rst",
            category="{experiment}",
        ),
    params:
        templates=lambda w, input: Path(input.templates[0]).parent,
    log:
        "logs/reports/{experiment}.log",
    shell:
        "dfkd report --dataset {wildcards.experiment} --runs {input.runs}"
        " --teachers {input.teachers} --published {input.published}"
        " --templates {params.templates} --markdown {output.markdown} --latex {output.latex}"
        " --runs-csv {output.runs_csv} --metrics {output.metrics} --curves {output.curves}"
        " > {log} 2>&1"
