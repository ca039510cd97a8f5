# Datasets: downloaded (when params.yaml allows it) and verified once, before any training job,
# so parallel jobs never write into the data folder at the same time.


rule prepare_data:
    output:
        f"{DATASET_RECORD}",
    params:
        root=SUITE.params.data.root,
        download="--download" if SUITE.params.data.download else "--no-download",
    log:
        "results/{protocol}/{dataset}/prepare_data.log",
    # On a cluster this runs where the workflow runs, which usually has the network access.
    localrule: True
    shell:
        "dfkd prepare-data --dataset {wildcards.dataset} --root {params.root}"
        " {params.download} --record {output} > {log} 2>&1"
