# Teacher training: one job per (protocol, dataset, teacher architecture).


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
