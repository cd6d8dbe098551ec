"""The simulations stage: the frozen-phonon exit waves of one structure under a
`simulations.<M>` block, as the `simulations` rule makes them.

Input: the block's config, the config's global seed, the block's name, the item's index and the
structure (extxyz, from the structures stage). Output: results/simulations/<M>/<index>.zarr with
the arrays `full` (the whole scene) and `particle` (the particle alone), complex64, one chunk per
frozen phonon, and attributes: what `simulate_structure` records (sampling_A, energy_eV,
frozen_phonons, seed, ...), block_name, config, structure_id, the structure's block, seed, path and
info, and provenance (this stage's code version and library versions).
"""

from __future__ import annotations

import logging

import ase.io

from hrtem_wf.codeversion import provenance
from hrtem_wf.io import write_arrays
from hrtem_wf.sampling import derive_seed
from hrtem_wf.simulations import simulate_structure

log = logging.getLogger("hrtem_wf")


def run(spec: dict, seed: int, block: str, index: int, output: str, structure: str) -> dict:
    """Simulate the structure in the extxyz file `structure` as item `index` of block `block`
    (config `spec`, global seed `seed`) into the Zarr store `output`; returns its attributes."""
    atoms = ase.io.read(structure, format="extxyz")
    item_seed = derive_seed(seed, block, index)
    result = simulate_structure(atoms, spec, item_seed)
    info = {k: v for k, v in atoms.info.items() if k not in ("block_name", "seed")}
    attrs = {
        **result["attrs"],
        "block_name": block,
        "config": spec,
        "structure_id": atoms.info["structure_id"],
        "structure": {
            "block_name": atoms.info["block_name"],
            "seed": atoms.info["seed"],
            "path": structure,
            "info": info,
        },
        "provenance": provenance(f"{__name__}:run"),
    }
    write_arrays(output, {"full": result["full"], "particle": result["particle"]}, attrs)
    log.info(
        "simulation %s/%05d: %s waves, sampling %s A",
        block,
        index,
        result["full"].shape,
        attrs["sampling_A"],
    )
    return attrs
