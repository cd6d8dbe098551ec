"""The datasets stage: one curated dataset of a `datasets.<D>` block, as the `datasets` rule
gathers it (through workflow/scripts/datasets.py: a large dataset's list of image stores is too
long for a shell command line).

Input: the block's config, its name, the image stores of its `images` blocks (from the images
stage), the config's global seed and `scale` (which scales the counts of the block's `select`).
Output: results/datasets/<D>.zarr (images, masks and the targets, one row per kept image; its
attributes: dataset, config, targets, focal_series, n_images, split_counts and provenance, this
stage's code version and library versions), <D>.parquet (one row per image: every structure,
simulation and imaging parameter, ids, seeds, split) and <D>.selection.json (what `select` kept).
"""

from __future__ import annotations

import json
import logging

import pandas as pd

from hrtem_wf.codeversion import provenance
from hrtem_wf.datasets import build_dataset

log = logging.getLogger("hrtem_wf")


def run(
    spec: dict,
    name: str,
    image_stores: list[str],
    seed: int,
    zarr_path: str,
    parquet_path: str,
    selection_path: str,
    scale: float = 1.0,
) -> pd.DataFrame:
    """Gather dataset `name` (config `spec`) from `image_stores` into `zarr_path`,
    `parquet_path` and `selection_path`; returns its table."""
    table = build_dataset(
        spec,
        name,
        image_stores,
        seed,
        zarr_path,
        parquet_path,
        selection_path,
        scale=scale,
        provenance=provenance(f"{__name__}:run"),
    )
    log.info(
        "dataset %s: %d images, splits %s",
        name,
        len(table),
        table["split"].value_counts().to_dict(),
    )
    return table


def run_job(job) -> None:
    """The `datasets` rule's script: `run` with the job's params, input and output (`job`: the
    `snakemake` object Snakemake gives a rule's script), logging to the rule's log."""
    logging.basicConfig(
        filename=job.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    run(
        json.loads(job.params.spec),
        job.wildcards.datasets,
        list(job.input),
        job.params.seed,
        job.output.zarr,
        job.output.parquet,
        job.output.selection,
        scale=job.params.scale,
    )
