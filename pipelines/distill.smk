# Distillation: one job per (protocol, dataset, pair, method, seed).


rule distill:
    input:
        dataset=DATASET_RECORD,
        teacher=lambda w: teacher_checkpoint(w.protocol, w.dataset, w.teacher),
    output:
        config=f"{RUN_DIR}/config.yaml",
        student=f"{RUN_DIR}/student.pt",
        metrics=f"{RUN_DIR}/metrics.json",
        history=f"{RUN_DIR}/history.csv",
    params:
        # Plain data built from the wildcards only: Snakemake records neither objects nor params
        # derived from input files, and a change it does not record would not re-run the job.
        config=lambda w: to_dict(
            SUITE.run_config(
                w.protocol, w.dataset, w.teacher, w.student, w.method, int(w.seed),
                teacher_checkpoint(w.protocol, w.dataset, w.teacher),
            )
        ),
        out_dir=lambda w, output: Path(output.metrics).parent,
    log:
        f"{RUN_DIR}/distill.log",
    # One CPU thread per job: on the CPU, results then do not depend on --cores.
    threads: 1
    run:
        from dfkd.config import save_config

        save_config(params.config, output.config)
        shell(
            "dfkd distill --config {output.config} --out-dir {params.out_dir}"
            " --threads {threads} > {log} 2>&1"
        )
