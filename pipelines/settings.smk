# A job's settings as a file named by their digest, one of the job's inputs (common.smk): a
# changed setting is a new input, so its job re-runs also where Snakemake has no records of its
# own, as in a fresh clone after `dvc pull`.

rule job_settings:
    output:
        "{folder}/settings/{digest}.yaml",
    wildcard_constraints:
        folder="results/.+",
        digest="[0-9a-f]{16}",
    params:
        # As save_config writes them; a shell job: a `run:` job would start Snakemake anew.
        text=lambda w: yaml.safe_dump(to_dict(JOB_SETTINGS[w.folder]()), sort_keys=False),
    log:
        "logs/{folder}/settings/{digest}.log",
    localrule: True
    shell:
        "printf '%s' {params.text:q} > {output} 2> {log}"
