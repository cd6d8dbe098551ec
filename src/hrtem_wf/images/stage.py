"""The images stage: the micrographs and masks drawn from one simulation under an `images.<I>`
block, as the `images` rule draws them.

Input: the block's config, the config's global seed, the block's name, the item's index, the
simulation store (from the simulations stage), for `targets.columns` the simulated structure
(extxyz) and, for `label.grow_A`, `blur_A` or `dose_e_per_A2` `{calibrate: ...}`, the calibration
rule's JSON (hrtem_wf.images.calibration). Output: results/images/<I>/<index>.zarr with the arrays
`images` and `masks` (one per draw), the block's targets (`column_maps` and `column_positions`,
`exit_waves`; made here from the block's `targets`, hrtem_wf.images.targets) and attributes:
block_name, config, seed, structure_id, records (every drawn imaging parameter, one per image;
label_grow_A, blur_A and dose_e_per_A2 are the numbers drawn with), calibration (null, or what was
measured against which real set), the simulation's block, seed, path, config and structure, and
provenance (this stage's code version and library versions).
"""

from __future__ import annotations

import logging

import numpy as np

from hrtem_wf.codeversion import provenance
from hrtem_wf.errors import InputError
from hrtem_wf.images import draw_images
from hrtem_wf.images.draw import calibrated_spec
from hrtem_wf.images.targets import image_targets, structure_columns
from hrtem_wf.io import read_arrays, read_json, write_arrays
from hrtem_wf.sampling import derive_seed

log = logging.getLogger("hrtem_wf")


def run(
    spec: dict,
    seed: int,
    block: str,
    index: int,
    output: str,
    simulation: str,
    structure: str | None = None,
    calibration_json: str | None = None,
) -> dict:
    """Draw the images of item `index` of block `block` (config `spec`, global seed `seed`) from
    the exit waves in the Zarr store `simulation` into the Zarr store `output`; `structure`: the
    simulated structure's extxyz, needed by `targets.columns`; `calibration_json`: the
    calibration rule's JSON, for label.grow_A, blur_A or dose_e_per_A2 {calibrate: ...}.
    Returns the store's attributes."""
    calibration = None if calibration_json is None else read_json(calibration_json)
    drawn_spec = calibrated_spec(spec, calibration)
    waves, sim_attrs = read_arrays(
        simulation,
        {"full": np.complex64, "particle": np.complex64},
        items_attr="frozen_phonons",
    )
    item_seed = derive_seed(seed, block, index)
    images, masks, records = draw_images(
        waves["full"],
        waves["particle"],
        sampling_A=tuple(sim_attrs["sampling_A"]),
        energy_eV=sim_attrs["energy_eV"],
        block=drawn_spec,
        rng=np.random.default_rng(item_seed),
        material=sim_attrs["structure"]["info"].get("material"),
    )
    attrs = {
        "block_name": block,
        "config": spec,
        "seed": item_seed,
        "structure_id": sim_attrs["structure_id"],
        "records": records,
        # label.grow_A, blur_A, dose_e_per_A2 {calibrate: ...}: what the calibration measured, where
        "calibration": None
        if calibration is None
        else {
            "path": calibration_json,
            "real_set": calibration["real_set"],
            "grow_A": calibration["grow_A"],
            "blur_A": calibration["blur_A"],
            "dose_e_per_A2": calibration["dose_e_per_A2"],
            "label_offset_A": calibration["label_offset_A"],
        },
        "simulation": {
            "block_name": sim_attrs["block_name"],
            "seed": sim_attrs["seed"],
            "path": simulation,
            "config": sim_attrs["config"],
            "structure": sim_attrs["structure"],
        },
        "provenance": provenance(f"{__name__}:run"),
    }
    sampling_A = tuple(sim_attrs["sampling_A"])
    arrays = {
        "images": images,
        "masks": masks,
        **image_targets(
            spec["targets"], waves["full"], sampling_A, records, target_columns(spec, structure)
        ),
    }
    write_arrays(output, arrays, attrs)
    log.info(
        "images %s/%05d: %d draws of %s%s",
        block,
        index,
        len(images),
        images.shape[1:],
        "".join(
            f", {name} {array.shape[1:]}" for name, array in arrays.items() if name != "images"
        ),
    )
    return attrs


def target_columns(spec: dict, structure: str | None):
    """The projected columns of the simulated structure when the block asks for column targets
    (hrtem_wf.images.targets.structure_columns), else None."""
    if spec["targets"].get("columns") is None:
        return None
    if structure is None:
        raise InputError("targets.columns needs --structure (the .xyz)")
    return structure_columns(structure, spec["targets"]["columns"])
