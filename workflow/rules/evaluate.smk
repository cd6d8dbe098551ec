rule evaluate:
    input:
        unpack(dataset_of),
        weights=f"{RESULTS}/models/{{model}}/seed{{seed}}/weights.pt",
        metadata=f"{RESULTS}/models/{{model}}/seed{{seed}}/metadata.json",
    output:
        f"{RESULTS}/evaluations/{{model}}/seed{{seed}}.json",
    params:
        code=code_version("hrtem_wf.cli:_evaluate"),
        bind_gpu=lambda wc: bind_gpu_flag("models", wc.model),
    threads: 8
    resources:
        gpu=lambda wc: gpus("models", wc.model),
        constraint=lambda wc: node_constraint("models", wc.model),
        slurm_account=lambda wc: slurm_account("models", wc.model),
    log:
        f"{RESULTS}/logs/evaluate/{{model}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{{model}}/seed{{seed}}.tsv"
    conda:
        "../envs/train.yaml"
    shell:
        "hrtem-wf --log {log} {params.bind_gpu} evaluate --model-dir $(dirname {input.weights})"
        " --dataset-zarr {input.zarr} --dataset-parquet {input.parquet} --output {output}"


rule score:
    """One model seed on one experimental benchmark: F1 per image and pooled."""
    input:
        files=benchmark_files,
        weights=f"{RESULTS}/models/{{model}}/seed{{seed}}/weights.pt",
        metadata=f"{RESULTS}/models/{{model}}/seed{{seed}}/metadata.json",
    output:
        f"{RESULTS}/scores/{{benchmark}}/{{model}}/seed{{seed}}.json",
    params:
        spec=lambda wc: block_spec("benchmarks", wc.benchmark),
        code=code_version("hrtem_wf.cli:_score"),
        bind_gpu=lambda wc: bind_gpu_flag("models", wc.model),
    threads: 8
    resources:
        gpu=lambda wc: gpus("models", wc.model),
        constraint=lambda wc: node_constraint("models", wc.model),
        slurm_account=lambda wc: slurm_account("models", wc.model),
    log:
        f"{RESULTS}/logs/score/{{benchmark}}/{{model}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/score/{{benchmark}}/{{model}}/seed{{seed}}.tsv"
    conda:
        "../envs/train.yaml"
    shell:
        "hrtem-wf --log {log} {params.bind_gpu} score --model-dir $(dirname {input.weights})"
        " --benchmark {wildcards.benchmark} --spec {params.spec:q} --output {output}"


rule report:
    input:
        unpack(lambda wc: first_dataset()),
        evaluations=[f"{RESULTS}/evaluations/{m}/seed{s}.json" for m, s in model_runs()],
        scores=[f"{RESULTS}/scores/{b}/{m}/seed{s}.json" for b, m, s in benchmark_runs()],
        parquets=dataset_parquets(),
        weights=[f"{RESULTS}/models/{m}/seed{s}/weights.pt" for m, s in model_runs()],
    output:
        summary=report(REPORT[0], caption="../report/summary.rst", category="Summary"),
        curves=report(REPORT[1], caption="../report/training_curves.rst", category="Training"),
        examples=report(REPORT[2], caption="../report/examples.rst", category="Predictions"),
        distributions=report(REPORT[3], caption="../report/data_distributions.rst", category="Data"),
        benchmark_examples=[report(path, caption="../report/benchmark_examples.rst",
                                   category="Predictions") for path in REPORT[4:]],
    params:
        model_dirs=[f"{RESULTS}/models/{m}/seed{s}" for m, s in model_runs()],
        benchmarks=json.dumps(BENCHMARKS, sort_keys=True),
        code=code_version("hrtem_wf.cli:_report"),
    resources:
        constraint="cpu",
    log:
        f"{RESULTS}/logs/report.log",
    benchmark:
        f"{RESULTS}/benchmarks/report.tsv"
    conda:
        "../envs/train.yaml"
    shell:
        "hrtem-wf --log {log} report --evaluations {input.evaluations}"
        " --scores {input.scores} --dataset-parquets {input.parquets}"
        " --model-dirs {params.model_dirs} --dataset-zarr {input.zarr}"
        " --dataset-parquet {input.parquet} --benchmarks-spec {params.benchmarks:q}"
        " --out-dir $(dirname {output.summary})"
