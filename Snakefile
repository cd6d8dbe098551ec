# hrtem_wf: config -> structures -> exit waves -> micrographs + labels -> datasets -> models -> report.
# Run `make demo`, or `snakemake --cores N` with the default config; see README.md.

from snakemake.utils import min_version

import sys
from pathlib import Path

from hrtem_wf.config import ConfigError, check_real_sets, read_config_file, validate

min_version("9.0")


def stop_on_config_error(check, *args):
    """Run a config check; a ConfigError stops the workflow with its message alone (one line
    per problem, naming the key or file), not Snakemake's traceback of the Snakefile."""
    try:
        check(*args)
    except ConfigError as error:
        sys.exit(f"hrtem_wf: {error}")


# The workflow's own config file: a YAML error named with its line (Snakemake reads a
# --configfile itself, before this file, and names neither).
if Path("config/config.yaml").exists():
    stop_on_config_error(read_config_file, "config/config.yaml")


configfile: "config/config.yaml"


# Stop before any job is built when the config is malformed (or asks for more jobs than
# max_jobs); the message names the key.
stop_on_config_error(validate, config)
# The real sets' files, once per run (not again in each cluster job): readable, paired, alone.
if workflow.is_main_process:
    stop_on_config_error(check_real_sets, config)


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
