rule dataset:
    input:
        lambda wc: image_stores(wc.dataset),
    output:
        zarr=directory(f"{RESULTS}/datasets/{{dataset}}.zarr"),
        parquet=f"{RESULTS}/datasets/{{dataset}}.parquet",
    params:
        spec=lambda wc: block_spec("datasets", wc.dataset),
        seed=config["seed"],
    log:
        f"{RESULTS}/logs/datasets/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/datasets/{{dataset}}.tsv"
    conda:
        "../envs/datasets.yaml"
    shell:
        "hrtem-wf --log {log} dataset --spec {params.spec:q} --seed {params.seed}"
        " --name {wildcards.dataset} --zarr {output.zarr} --parquet {output.parquet} {input}"
