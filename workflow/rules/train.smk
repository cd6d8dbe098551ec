rule train:
    input:
        unpack(dataset_of),
    output:
        weights=f"{RESULTS}/models/{{model}}/seed{{seed}}/weights.pt",
        history=f"{RESULTS}/models/{{model}}/seed{{seed}}/history.csv",
        metadata=f"{RESULTS}/models/{{model}}/seed{{seed}}/metadata.json",
    params:
        # `seeds` is left out: adding a seed must not retrain the others.
        spec=lambda wc: block_spec("models", wc.model, drop=("seeds",)),
        code=code_version("hrtem_wf.cli:_train"),  # library code version: reruns the stage when its code changes
        bind_gpu=lambda wc: bind_gpu_flag("models", wc.model),
    threads: 8  # capped at --cores; Snakemake sets OMP_NUM_THREADS, which torch follows
    resources:
        gpu=lambda wc: gpus("models", wc.model),
        constraint=lambda wc: node_constraint("models", wc.model),
        slurm_account=lambda wc: slurm_account("models", wc.model),
    log:
        f"{RESULTS}/logs/train/{{model}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{model}}/seed{{seed}}.tsv"
    conda:
        "../envs/train.yaml"
    shell:
        "hrtem-wf --log {log} {params.bind_gpu} train --spec {params.spec:q} --model-seed {wildcards.seed}"
        " --dataset-zarr {input.zarr} --dataset-parquet {input.parquet}"
        " --out-dir $(dirname {output.weights})"
