# Declared studies (params/studies.yaml): one job per (study, cell, seed), teachers of any
# teacher variant a cell names, and one table per study. Nothing here runs by default:
#   snakemake --cores all reports/studies/table5.md


rule train_teacher_variant:
    input:
        unpack(job_inputs(VARIANT_TEACHER_DIR)),
    output:
        config=f"{VARIANT_TEACHER_DIR}/config.yaml",
        model=f"{VARIANT_TEACHER_DIR}/teacher.pt",
        metrics=f"{VARIANT_TEACHER_DIR}/metrics.json",
        history=f"{VARIANT_TEACHER_DIR}/history.csv",
    params:
        settings=job_settings(VARIANT_TEACHER_DIR),
        out_dir=lambda w, output: Path(output.model).parent,
    log:
        f"{VARIANT_TEACHER_DIR}/train.log",
    threads: 1
    shell:
        "dfkd train-teacher --settings {params.settings:q} --out-dir {params.out_dir}"
        " --threads {threads} > {log} 2>&1"


rule distill_study:
    input:
        unpack(job_inputs(STUDY_RUN_DIR)),
    output:
        config=f"{STUDY_RUN_DIR}/config.yaml",
        student=f"{STUDY_RUN_DIR}/student.pt",
        metrics=f"{STUDY_RUN_DIR}/metrics.json",
        history=f"{STUDY_RUN_DIR}/history.csv",
    params:
        settings=job_settings(STUDY_RUN_DIR),
        out_dir=lambda w, output: Path(output.metrics).parent,
    log:
        f"{STUDY_RUN_DIR}/distill.log",
    threads: 1
    shell:
        "dfkd distill --settings {params.settings:q} --out-dir {params.out_dir}"
        " --threads {threads} > {log} 2>&1"


rule study_report:
    input:
        unpack(report_inputs(lambda w: f"studies/{w.study}")),
    output:
        markdown="reports/studies/{study}.md",
        latex="reports/studies/{study}.tex",
        html="reports/studies/{study}.html",
        runs_csv="reports/studies/{study}_runs.csv",
    params:
        studies=lambda w, input: input.files[0],
        out=lambda w: f"reports/studies/{w.study}",
        record=report_record(lambda w: f"studies/{w.study}"),
    log:
        "logs/reports/study_{study}.log",
    shell:
        "(dfkd study-report --study {wildcards.study} --studies {params.studies}"
        " --runs {input.runs} --teachers {input.teachers} --out {params.out}"
        " && dfkd record-inputs --record {params.record} {input}) > {log} 2>&1"
