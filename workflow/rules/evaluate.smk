rule evaluate:
    input:
        unpack(dataset_of),
        weights=f"{RESULTS}/models/{{model}}/seed{{seed}}/weights.pt",
        metadata=f"{RESULTS}/models/{{model}}/seed{{seed}}/metadata.json",
    output:
        f"{RESULTS}/evaluations/{{model}}/seed{{seed}}.json",
    params:
        code=code_version("evaluate"),
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


rule report:
    input:
        unpack(lambda wc: first_dataset()),
        evaluations=[f"{RESULTS}/evaluations/{m}/seed{s}.json" for m, s in model_runs()],
        weights=[f"{RESULTS}/models/{m}/seed{s}/weights.pt" for m, s in model_runs()],
    output:
        summary=REPORT[0],
        curves=REPORT[1],
        examples=REPORT[2],
    params:
        model_dirs=[f"{RESULTS}/models/{m}/seed{s}" for m, s in model_runs()],
        code=code_version("evaluate"),
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
        " --model-dirs {params.model_dirs} --dataset-zarr {input.zarr}"
        " --dataset-parquet {input.parquet} --out-dir $(dirname {output.summary})"
