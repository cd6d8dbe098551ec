rule dataset:
    input:
        lambda wc: image_stores(wc.dataset),
    output:
        zarr=directory(f"{RESULTS}/datasets/{{dataset}}.zarr"),
        parquet=f"{RESULTS}/datasets/{{dataset}}.parquet",
        selection=f"{RESULTS}/datasets/{{dataset}}.selection.json",
    params:
        spec=lambda wc: block_spec("datasets", wc.dataset),
        seed=config["seed"],
        scale=config.get("scale", 1.0),  # scales the counts of the block's `select`
        code=code_version(DATASET_SCRIPT),  # library code version: reruns the stage when its code changes
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
