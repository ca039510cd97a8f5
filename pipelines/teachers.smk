# Teachers: one job per (protocol, dataset, teacher architecture), trained by the suite or, for
# an experiment with `teacher_source: released`, imported from a released checkpoint.


rule train_teacher:
    input:
        DATASET_RECORD,
    output:
        config=f"{TEACHER_DIR}/config.yaml",
        model=f"{TEACHER_DIR}/teacher.pt",
        metrics=f"{TEACHER_DIR}/metrics.json",
        history=f"{TEACHER_DIR}/history.csv",
    params:
        # The fully resolved config as plain data (what Snakemake records to detect changes): a
        # change to it, or to the suite version it holds, re-runs the job.
        config=lambda w: to_dict(SUITE.teacher_config(w.protocol, w.dataset, w.architecture)),
        out_dir=lambda w, output: Path(output.model).parent,
    log:
        f"{TEACHER_DIR}/train.log",
    # One CPU thread per job: on the CPU, results then do not depend on --cores.
    threads: 1
    run:
        from dfkd.config import save_config

        save_config(params.config, output.config)
        shell(
            "dfkd train-teacher --config {output.config} --out-dir {params.out_dir}"
            " --threads {threads} > {log} 2>&1"
        )


rule import_teacher:
    input:
        checkpoint=lambda w: SUITE.import_teacher_config(
            w.protocol, w.dataset, w.architecture
        ).checkpoint,
        dataset=DATASET_RECORD,
    output:
        config=f"{RELEASED_TEACHER_DIR}/config.yaml",
        model=f"{RELEASED_TEACHER_DIR}/teacher.pt",
        metrics=f"{RELEASED_TEACHER_DIR}/metrics.json",
        history=f"{RELEASED_TEACHER_DIR}/history.csv",
    params:
        # The pinned SHA-256 is part of it: a new pin re-imports the teacher.
        config=lambda w: to_dict(
            SUITE.import_teacher_config(w.protocol, w.dataset, w.architecture)
        ),
        out_dir=lambda w, output: Path(output.model).parent,
    log:
        f"{RELEASED_TEACHER_DIR}/import.log",
    threads: 1
    run:
        from dfkd.config import save_config

        save_config(params.config, output.config)
        shell(
            "dfkd import-teacher --config {output.config} --out-dir {params.out_dir}"
            " --threads {threads} > {log} 2>&1"
        )
