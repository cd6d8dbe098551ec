"""The models stage: one network of a `models.<N>` block trained with one seed, as the `models`
rule trains it.

Input: the block's config (`seeds` left out), the model seed, the dataset (Zarr and Parquet, from
the datasets stage) and, for a block with `on_the_fly`, the images block that draws the training
images and the folder of its simulation stores. Output: results/models/<N>/seed<k>/weights.pt
(the checkpointed epoch's state_dict), history.csv (one row per epoch), drawn.parquet (on the
fly: one row per drawn image) and, last, metadata.json (what was trained on and how, the best
epoch, and provenance: this stage's code version and library versions).
"""

from __future__ import annotations

import json
import logging

from hrtem_wf.codeversion import provenance
from hrtem_wf.images.draw import calibrated_spec
from hrtem_wf.io import read_json
from hrtem_wf.models import train_model

log = logging.getLogger("hrtem_wf")


def run(
    spec: dict,
    model_seed: int,
    dataset_zarr: str,
    dataset_parquet: str,
    out_dir: str,
    images_spec: dict | None = None,
    simulations_dir: str | None = None,
    calibration_json: str | None = None,
) -> dict:
    """Train the network of config `spec` with seed `model_seed` on the dataset `dataset_zarr`
    and `dataset_parquet` into `out_dir`; on the fly, with the images block `images_spec` from
    the simulation stores in `simulations_dir` (and `calibration_json`, the calibration rule's
    JSON, when its label.grow_A, blur_A or dose_e_per_A2 is {calibrate: ...}). Returns the
    metadata."""
    if images_spec is not None:
        calibration = None if calibration_json is None else read_json(calibration_json)
        images_spec = calibrated_spec(images_spec, calibration)
    summary = train_model(
        spec,
        dataset_zarr,
        dataset_parquet,
        model_seed,
        out_dir,
        log=log.info,
        image_spec=images_spec,
        simulations_dir=simulations_dir,
        provenance=provenance(f"{__name__}:run"),
    )
    log.info("trained: %s", json.dumps(summary, default=str))
    return summary
