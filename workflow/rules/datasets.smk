rule dataset:
    input:
        lambda wc: image_stores(wc.dataset),
    output:
        zarr=directory(f"{RESULTS}/datasets/{{dataset}}.zarr"),
        parquet=f"{RESULTS}/datasets/{{dataset}}.parquet",
    params:
        spec=lambda wc: block_spec("datasets", wc.dataset),
        seed=config["seed"],
        code=code_version("datasets"),  # library code version: reruns the stage when its code changes
    resources:
        constraint="cpu",
    log:
        f"{RESULTS}/logs/datasets/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/datasets/{{dataset}}.tsv"
    conda:
        "../envs/datasets.yaml"
    script:
        "../scripts/dataset.py"
