rule datasets:
    input:
        lambda wc: image_stores(wc.datasets),
    output:
        zarr=directory(f"{RESULTS}/datasets/{{datasets}}.zarr"),
        parquet=f"{RESULTS}/datasets/{{datasets}}.parquet",
        selection=f"{RESULTS}/datasets/{{datasets}}.selection.json",
    log:
        f"{RESULTS}/logs/datasets/{{datasets}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/datasets/{{datasets}}.tsv"
    conda:
        "../envs/datasets.yaml"
    resources:
        constraint="cpu",
    params:
        spec=lambda wc: block_spec("datasets", wc.datasets),
        seed=config["seed"],
        scale=config.get("scale", 1.0),  # scales the counts of the block's `select`
        code=code_version("hrtem_wf.datasets.stage:run"),  # library code version: reruns the stage when its code changes
    # a script, not a shell command: a large dataset's input list outruns a command line
    script:
        "../scripts/datasets.py"
