# Distillation: one job per (protocol, dataset, pair, method, seed).


rule distill:
    input:
        unpack(job_inputs(RUN_DIR)),
    output:
        config=f"{RUN_DIR}/config.yaml",
        student=f"{RUN_DIR}/student.pt",
        metrics=f"{RUN_DIR}/metrics.json",
        history=f"{RUN_DIR}/history.csv",
    params:
        settings=job_settings(RUN_DIR),
        out_dir=lambda w, output: Path(output.metrics).parent,
    log:
        f"{RUN_DIR}/distill.log",
    # One CPU thread per job: on the CPU, results then do not depend on --cores.
    threads: 1
    shell:
        "dfkd distill --settings {params.settings:q} --out-dir {params.out_dir}"
        " --threads {threads} > {log} 2>&1"
