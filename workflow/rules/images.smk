rule images:
    input:
        simulation=lambda wc: f"{RESULTS}/simulations/{config['images'][wc.images]['simulations']}/{wc.item}.zarr",
        # column targets are made from the structure's atoms
        structure=lambda wc: column_structure(wc.images, wc.item),
    output:
        directory(f"{RESULTS}/images/{{images}}/{{item}}.zarr"),
    log:
        f"{RESULTS}/logs/images/{{images}}/{{item}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/images/{{images}}/{{item}}.tsv"
    conda:
        "../envs/images.yaml"
    resources:
        gpu=lambda wc: gpus("images", wc.images),
        constraint=lambda wc: node_constraint("images", wc.images),
        slurm_account=lambda wc: slurm_account("images", wc.images),
    params:
        spec=lambda wc: block_spec("images", wc.images),
        seed=config["seed"],
        code=code_version("hrtem_wf.images.stage:run"),  # library code version: reruns the stage when its code changes
        bind_gpu=lambda wc: bind_gpu_flag("images", wc.images),
        structure=lambda wc, input: f"--structure {input.structure}" if input.structure else "",
    shell:
        "hrtem-wf --log {log} {params.bind_gpu} images --spec {params.spec:q} --seed {params.seed}"
        " --block {wildcards.images} --index {wildcards.item}"
        " --simulation {input.simulation} {params.structure} --output {output}"
