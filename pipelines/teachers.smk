# Teachers: one job per (protocol, dataset, teacher architecture), trained by the suite or, for
# an experiment with `teacher_source: released`, imported from a released checkpoint.


rule train_teacher:
    input:
        dataset=DATASET_RECORD,
        settings=job_settings_file(TEACHER_DIR),
    output:
        config=f"{TEACHER_DIR}/config.yaml",
        model=f"{TEACHER_DIR}/teacher.pt",
        metrics=f"{TEACHER_DIR}/metrics.json",
        history=f"{TEACHER_DIR}/history.csv",
    params:
        out_dir=lambda w, output: Path(output.model).parent,
    log:
        f"{TEACHER_DIR}/train.log",
    # One CPU thread per job: on the CPU, results then do not depend on --cores.
    threads: 1
    shell:
        "cp {input.settings} {output.config} && dfkd train-teacher --config {output.config}"
        " --out-dir {params.out_dir} --threads {threads} > {log} 2>&1"


rule import_teacher:
    input:
        checkpoint=lambda w: SUITE.import_teacher_config(
            w.protocol, w.dataset, w.architecture
        ).checkpoint,
        dataset=DATASET_RECORD,
        settings=job_settings_file(RELEASED_TEACHER_DIR),
    output:
        config=f"{RELEASED_TEACHER_DIR}/config.yaml",
        model=f"{RELEASED_TEACHER_DIR}/teacher.pt",
        metrics=f"{RELEASED_TEACHER_DIR}/metrics.json",
        history=f"{RELEASED_TEACHER_DIR}/history.csv",
    params:
        out_dir=lambda w, output: Path(output.model).parent,
    log:
        f"{RELEASED_TEACHER_DIR}/import.log",
    threads: 1
    shell:
        "cp {input.settings} {output.config} && dfkd import-teacher --config {output.config}"
        " --out-dir {params.out_dir} --threads {threads} > {log} 2>&1"
