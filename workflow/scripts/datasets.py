"""The `datasets` rule's job (a script: a large dataset's input list outruns a command line)."""

from hrtem_wf.datasets.stage import run_job

run_job(snakemake)
