rule simulations:
    input:
        structure=lambda wc: f"{RESULTS}/structures/{config['simulations'][wc.simulations]['structures']}/{wc.item}.extxyz",
    output:
        directory(f"{RESULTS}/simulations/{{simulations}}/{{item}}.zarr"),
    log:
        f"{RESULTS}/logs/simulations/{{simulations}}/{{item}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/simulations/{{simulations}}/{{item}}.tsv"
    conda:
        "../envs/simulations.yaml"
    resources:
        gpu=lambda wc: gpus("simulations", wc.simulations),
        constraint=lambda wc: node_constraint("simulations", wc.simulations),
        slurm_account=lambda wc: slurm_account("simulations", wc.simulations),
    params:
        spec=lambda wc: block_spec("simulations", wc.simulations),
        seed=config["seed"],
        code=code_version("hrtem_wf.simulations.stage:run"),  # library code version: reruns the stage when its code changes
        bind_gpu=lambda wc: bind_gpu_flag("simulations", wc.simulations),
    shell:
        "hrtem-wf --log {log} {params.bind_gpu} simulations --spec {params.spec:q} --seed {params.seed}"
        " --block {wildcards.simulations} --index {wildcards.item}"
        " --structure {input.structure} --output {output}"
