# Reports: every run of a dataset's experiment -> Markdown and LaTeX tables, a tidy CSV,
# headline metrics for `dvc metrics show`, and learning curves.


rule report:
    input:
        unpack(report_inputs),
        published="params/published.yaml",
        templates=["reports/templates/table.md.j2", "reports/templates/table.tex.j2"],
    output:
        markdown="reports/{experiment}_table.md",
        latex="reports/{experiment}_table.tex",
        runs_csv="reports/{experiment}_runs.csv",
        metrics="reports/{experiment}_metrics.json",
        curves="reports/{experiment}_curves.png",
    params:
        templates=lambda w, input: Path(input.templates[0]).parent,
    log:
        "logs/reports/{experiment}.log",
    run:
        shell(
            "dfkd report --dataset {wildcards.experiment} --runs {input.runs}"
            " --teachers {input.teachers} --published {input.published}"
            " --templates {params.templates} --markdown {output.markdown} --latex {output.latex}"
            " --runs-csv {output.runs_csv} --metrics {output.metrics} --curves {output.curves}"
            " > {log} 2>&1"
        )
