rule structures:
    input:
        # a CIF-defined crystal: its file is an input, so editing it reruns the set
        lambda wc: (
            [config["structures"][wc.structures]["cif"]]
            if config["structures"][wc.structures]["lattice"] == "cif"
            else []
        ),
    output:
        f"{RESULTS}/structures/{{structures}}/{{item}}.extxyz",
    log:
        f"{RESULTS}/logs/structures/{{structures}}/{{item}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/structures/{{structures}}/{{item}}.tsv"
    conda:
        "../envs/structures.yaml"
    resources:
        constraint="cpu",
    params:
        # `count` is left out: growing a set must not rerun the structures it already has.
        spec=lambda wc: block_spec("structures", wc.structures, drop=("count",)),
        seed=config["seed"],
        code=code_version("hrtem_wf.structures.stage:run"),  # library code version: reruns the stage when its code changes
    shell:
        "hrtem-wf --log {log} structures --spec {params.spec:q} --seed {params.seed}"
        " --block {wildcards.structures} --index {wildcards.item} --output {output}"


PREVIEW_STRUCTURES = 4  # structures shown per set


rule preview:
    """Top and side views of the first structures of a set: `snakemake previews`."""
    input:
        lambda wc: [
            f"{RESULTS}/structures/{wc.structures}/{item}.extxyz"
            for item in structure_ids(config, wc.structures)[:PREVIEW_STRUCTURES]
        ],
    output:
        f"{RESULTS}/structures/{{structures}}/preview.png",
    log:
        f"{RESULTS}/logs/structures/{{structures}}/preview.log",
    benchmark:
        f"{RESULTS}/benchmarks/structures/{{structures}}/preview.tsv"
    conda:
        "../envs/structures.yaml"
    shell:
        "hrtem-wf --log {log} preview --structures {input} --title {wildcards.structures:q}"
        " --output {output}"


rule previews:
    input:
        [f"{RESULTS}/structures/{name}/preview.png" for name in config["structures"]],
