rule models:
    input:
        unpack(dataset_of),
        simulations=lambda wc: on_the_fly_simulations(wc.models),
        # on_the_fly with label.grow_A or blur_A {calibrate: ...}: what was measured
        calibration=lambda wc: calibration_json(on_the_fly_images(wc.models)),
    output:
        weights=f"{RESULTS}/models/{{models}}/seed{{seed}}/weights.pt",
        history=f"{RESULTS}/models/{{models}}/seed{{seed}}/history.csv",
        metadata=f"{RESULTS}/models/{{models}}/seed{{seed}}/metadata.json",
    log:
        f"{RESULTS}/logs/models/{{models}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/models/{{models}}/seed{{seed}}.tsv"
    conda:
        "../envs/models.yaml"
    threads: 8  # capped at --cores; Snakemake sets OMP_NUM_THREADS, which torch follows
    resources:
        gpu=lambda wc: gpus("models", wc.models),
        constraint=lambda wc: node_constraint("models", wc.models),
        slurm_account=lambda wc: slurm_account("models", wc.models),
    params:
        # `seeds` is left out: adding a seed must not retrain the others.
        spec=lambda wc: block_spec("models", wc.models, drop=("seeds",)),
        # on_the_fly: the images block that draws the training images (changing it retrains)
        on_the_fly=lambda wc: on_the_fly_arguments(wc.models),
        code=code_version("hrtem_wf.models.stage:run"),  # library code version: reruns the stage when its code changes
        bind_gpu=lambda wc: bind_gpu_flag("models", wc.models),
    shell:
        "hrtem-wf --log {log} {params.bind_gpu} models --spec {params.spec:q} --model-seed {wildcards.seed}"
        " --dataset-zarr {input.zarr} --dataset-parquet {input.parquet}"
        " --out-dir $(dirname {output.weights}) {params.on_the_fly}"
