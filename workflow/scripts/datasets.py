"""Gather a dataset's image stores (called by the `datasets` rule).

A script rather than a shell command: a large dataset has tens of thousands of input stores,
more than one shell command line can carry."""

import json
import logging

from hrtem_wf.datasets import build_dataset

logging.basicConfig(
    filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
)
table = build_dataset(
    json.loads(snakemake.params.spec),
    snakemake.wildcards.datasets,
    list(snakemake.input),
    snakemake.params.seed,
    snakemake.output.zarr,
    snakemake.output.parquet,
    snakemake.output.selection,
    scale=snakemake.params.scale,
)
logging.info(
    "dataset %s: %d images, splits %s",
    snakemake.wildcards.datasets,
    len(table),
    table["split"].value_counts().to_dict(),
)
