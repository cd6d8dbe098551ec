rule evaluations:
    input:
        unpack(dataset_of),
        weights=f"{RESULTS}/models/{{models}}/seed{{seed}}/weights.pt",
        metadata=f"{RESULTS}/models/{{models}}/seed{{seed}}/metadata.json",
    output:
        f"{RESULTS}/evaluations/{{models}}/seed{{seed}}.json",
    log:
        f"{RESULTS}/logs/evaluations/{{models}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluations/{{models}}/seed{{seed}}.tsv"
    conda:
        "../envs/models.yaml"
    threads: 8
    resources:
        gpu=lambda wc: gpus("models", wc.models),
        constraint=lambda wc: node_constraint("models", wc.models),
        slurm_account=lambda wc: slurm_account("models", wc.models),
    params:
        code=code_version("hrtem_wf.evaluations.stage:evaluate"),
        bind_gpu=lambda wc: bind_gpu_flag("models", wc.models),
    shell:
        "hrtem-wf --log {log} {params.bind_gpu} evaluations --model-dir $(dirname {input.weights})"
        " --dataset-zarr {input.zarr} --dataset-parquet {input.parquet} --output {output}"


rule scores:
    """One model seed on one real set: F1 per image and pooled."""
    input:
        files=real_set_files,
        weights=f"{RESULTS}/models/{{models}}/seed{{seed}}/weights.pt",
        metadata=f"{RESULTS}/models/{{models}}/seed{{seed}}/metadata.json",
    output:
        f"{RESULTS}/scores/{{real_set}}/{{models}}/seed{{seed}}.json",
    log:
        f"{RESULTS}/logs/scores/{{real_set}}/{{models}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/scores/{{real_set}}/{{models}}/seed{{seed}}.tsv"
    conda:
        "../envs/models.yaml"
    threads: 8
    resources:
        gpu=lambda wc: gpus("models", wc.models),
        constraint=lambda wc: node_constraint("models", wc.models),
        slurm_account=lambda wc: slurm_account("models", wc.models),
    params:
        spec=lambda wc: block_spec("real_sets", wc.real_set),
        code=code_version("hrtem_wf.evaluations.stage:score"),
        bind_gpu=lambda wc: bind_gpu_flag("models", wc.models),
    shell:
        "hrtem-wf --log {log} {params.bind_gpu} scores --model-dir $(dirname {input.weights})"
        " --real-set {wildcards.real_set} --spec {params.spec:q} --output {output}"


rule realism:
    """A dataset's images against a real set's micrographs: the gaps of `hrtem-wf match`."""
    input:
        files=real_set_files,
        zarr=f"{RESULTS}/datasets/{{datasets}}.zarr",
        parquet=f"{RESULTS}/datasets/{{datasets}}.parquet",
    output:
        json=f"{RESULTS}/realism/{{real_set}}/{{datasets}}.json",
        png=f"{RESULTS}/realism/{{real_set}}/{{datasets}}.png",
    log:
        f"{RESULTS}/logs/realism/{{real_set}}/{{datasets}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/realism/{{real_set}}/{{datasets}}.tsv"
    conda:
        "../envs/models.yaml"
    resources:
        constraint="cpu",
    params:
        spec=lambda wc: block_spec("real_sets", wc.real_set),
        code=code_version("hrtem_wf.evaluations.stage:realism_gaps"),
    shell:
        "hrtem-wf --log {log} realism --real-set {wildcards.real_set} --spec {params.spec:q}"
        " --dataset-zarr {input.zarr} --output {output.json}"


rule report:
    input:
        unpack(lambda wc: first_dataset()),
        evaluations=[f"{RESULTS}/evaluations/{m}/seed{s}.json" for m, s in model_runs()],
        scores=[f"{RESULTS}/scores/{b}/{m}/seed{s}.json" for b, m, s in score_runs()],
        realism=[f"{RESULTS}/realism/{r}/{d}.json" for r, d in realism_runs()],
        calibrations=calibration_jsons(),
        parquets=dataset_parquets(),
        weights=[f"{RESULTS}/models/{m}/seed{s}/weights.pt" for m, s in model_runs()],
    output:
        summary=report(REPORT[0], caption="../report/summary.rst", category="Summary"),
        curves=report(REPORT[1], caption="../report/training_curves.rst", category="Training"),
        examples=report(REPORT[2], caption="../report/examples.rst", category="Predictions"),
        distributions=report(REPORT[3], caption="../report/data_distributions.rst", category="Data"),
        real_set_examples=[
            report(path, caption="../report/real_set_examples.rst", category="Predictions")
            for path in REPORT[4:5]
        ],
        real_set_sizes=[
            report(path, caption="../report/real_set_sizes.rst", category="Particles")
            for path in REPORT[5:]
        ],
    log:
        f"{RESULTS}/logs/report.log",
    benchmark:
        f"{RESULTS}/benchmarks/report.tsv"
    conda:
        "../envs/models.yaml"
    resources:
        constraint="cpu",
    params:
        model_dirs=[f"{RESULTS}/models/{m}/seed{s}" for m, s in model_runs()],
        real_sets=json.dumps(REAL_SETS, sort_keys=True),
        code=code_version("hrtem_wf.evaluations.stage:report"),
    shell:
        "hrtem-wf --log {log} report --evaluations {input.evaluations}"
        " --scores {input.scores} --realism {input.realism} --calibrations {input.calibrations}"
        " --dataset-parquets {input.parquets}"
        " --model-dirs {params.model_dirs} --dataset-zarr {input.zarr}"
        " --dataset-parquet {input.parquet} --real-sets-spec {params.real_sets:q}"
        " --out-dir $(dirname {output.summary})"
