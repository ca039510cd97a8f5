# Teachers: one job per (protocol, dataset, teacher architecture), trained by the suite or, for
# an experiment with `teacher_source: released`, imported from a released checkpoint. A job's
# command receives its resolved config (`--settings`) and writes it as config.yaml.


rule train_teacher:
    input:
        unpack(job_inputs(TEACHER_DIR)),
    output:
        config=f"{TEACHER_DIR}/config.yaml",
        model=f"{TEACHER_DIR}/teacher.pt",
        metrics=f"{TEACHER_DIR}/metrics.json",
        history=f"{TEACHER_DIR}/history.csv",
    params:
        settings=job_settings(TEACHER_DIR),
        out_dir=lambda w, output: Path(output.model).parent,
    log:
        f"{TEACHER_DIR}/train.log",
    # One CPU thread per job: on the CPU, results then do not depend on --cores.
    threads: 1
    shell:
        "dfkd train-teacher --settings {params.settings:q} --out-dir {params.out_dir}"
        " --threads {threads} > {log} 2>&1"


rule import_teacher:
    input:
        unpack(job_inputs(RELEASED_TEACHER_DIR)),
    output:
        config=f"{RELEASED_TEACHER_DIR}/config.yaml",
        model=f"{RELEASED_TEACHER_DIR}/teacher.pt",
        metrics=f"{RELEASED_TEACHER_DIR}/metrics.json",
        history=f"{RELEASED_TEACHER_DIR}/history.csv",
    params:
        settings=job_settings(RELEASED_TEACHER_DIR),
        out_dir=lambda w, output: Path(output.model).parent,
    log:
        f"{RELEASED_TEACHER_DIR}/import.log",
    threads: 1
    shell:
        "dfkd import-teacher --settings {params.settings:q} --out-dir {params.out_dir}"
        " --threads {threads} > {log} 2>&1"
