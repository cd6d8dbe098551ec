# hrtem_wf: config -> structures -> exit waves -> micrographs + labels -> datasets -> models -> report.
# Run `make demo`, or `snakemake --cores N` with the default config; see README.md.

from snakemake.utils import min_version

from pathlib import Path

from hrtem_wf.config import (
    check_real_sets,
    exit_on_config_error,
    read_config_file,
    validate,
)

min_version("9.0")


# The workflow's own config file: a YAML error named with its line (Snakemake reads a
# --configfile itself, before this file, and names neither).
if Path("config/config.yaml").exists():
    with exit_on_config_error():
        read_config_file("config/config.yaml")


configfile: "config/config.yaml"


# Stop before any job is built when the config is malformed (or asks for more jobs than
# max_jobs), with the message alone; it names the key. The real sets' files are checked once
# per run (not again in each cluster job): readable, paired, alone.
with exit_on_config_error():
    validate(config)
    if workflow.is_main_process:
        check_real_sets(config)


include: "workflow/rules/common.smk"
include: "workflow/rules/structures.smk"
include: "workflow/rules/simulations.smk"
include: "workflow/rules/images.smk"
include: "workflow/rules/datasets.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/evaluations.smk"


localrules:
    all,
    previews,


rule all:
    default_target: True
    input:
        REPORT,
