rule images:
    input:
        simulation=lambda wc: f"{RESULTS}/simulations/{config['images'][wc.images]['simulations']}/{wc.item}.zarr",
        # column targets are made from the structure's atoms
        structure=lambda wc: column_structure(wc.images, wc.item),
        # label.grow_A, blur_A {calibrate: <real set>}: what the calibration measured
        calibration=lambda wc: calibration_json(wc.images),
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
        calibration=lambda wc, input: (
            f"--calibration-json {input.calibration}" if input.calibration else ""
        ),
    shell:
        "hrtem-wf --log {log} {params.bind_gpu} images --spec {params.spec:q} --seed {params.seed}"
        " --block {wildcards.images} --index {wildcards.item}"
        " --simulation {input.simulation} {params.structure} {params.calibration} --output {output}"


rule calibration:
    input:
        # the pilot: the block's first structures, drawn as the images rule draws them
        simulations=lambda wc: [
            f"{RESULTS}/simulations/{config['images'][wc.images]['simulations']}/{item}.zarr"
            for item in pilot_items(wc.images)
        ],
        real_set=lambda wc: real_set_paths(calibration_real_set(wc.images)),
    output:
        json=f"{RESULTS}/calibrations/{{images}}.json",
        png=f"{RESULTS}/calibrations/{{images}}.png",
    log:
        f"{RESULTS}/logs/calibrations/{{images}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/calibrations/{{images}}.tsv"
    conda:
        "../envs/images.yaml"
    resources:
        gpu=lambda wc: gpus("images", wc.images),
        constraint=lambda wc: node_constraint("images", wc.images),
        slurm_account=lambda wc: slurm_account("images", wc.images),
    params:
        spec=lambda wc: block_spec("images", wc.images),
        seed=config["seed"],
        pilot=lambda wc: " ".join(str(int(item)) for item in pilot_items(wc.images)),
        real_set=lambda wc: calibration_real_set(wc.images),
        real_set_spec=lambda wc: block_spec("real_sets", calibration_real_set(wc.images)),
        code=code_version("hrtem_wf.images.calibration:run"),  # library code version: reruns the stage when its code changes
        bind_gpu=lambda wc: bind_gpu_flag("images", wc.images),
    shell:
        "hrtem-wf --log {log} {params.bind_gpu} calibration --spec {params.spec:q}"
        " --seed {params.seed} --block {wildcards.images} --indices {params.pilot}"
        " --simulations {input.simulations} --real-set {params.real_set}"
        " --real-set-spec {params.real_set_spec:q} --output {output.json}"
