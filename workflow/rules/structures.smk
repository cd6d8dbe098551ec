rule structure:
    output:
        f"{RESULTS}/structures/{{structures}}/{{item}}.extxyz",
    params:
        # `count` is left out: growing a set must not rerun the structures it already has.
        spec=lambda wc: block_spec("structures", wc.structures, drop=("count",)),
        seed=config["seed"],
        code=code_version("structures"),  # library code version: reruns the stage when its code changes
    resources:
        constraint="cpu",
    log:
        f"{RESULTS}/logs/structures/{{structures}}/{{item}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/structures/{{structures}}/{{item}}.tsv"
    conda:
        "../envs/structures.yaml"
    shell:
        "hrtem-wf --log {log} structure --spec {params.spec:q} --seed {params.seed}"
        " --block {wildcards.structures} --index {wildcards.item} --output {output}"
