"""The structures stage: one random scene of a `structures.<S>` block, as the `structures` rule
builds it.

Input: the block's config (`count` left out), the config's global seed, the block's name and the
item's index. Output: results/structures/<S>/<index>.extxyz, the atoms with
`arrays["particle"]` and, in `info`, every drawn parameter (`hrtem_wf.structures`) and the
item's provenance: block_name, index, seed (derived from global seed, block and index),
structure_id ("<S>/<index>") and provenance (JSON text: this stage's code version and library
versions, `hrtem_wf.codeversion.provenance`; extxyz keeps only scalars and strings).
"""

from __future__ import annotations

import json
import logging

import ase.io

from hrtem_wf.codeversion import provenance
from hrtem_wf.io import atomic_path
from hrtem_wf.sampling import derive_seed
from hrtem_wf.structures import build_structure

log = logging.getLogger("hrtem_wf")


def run(spec: dict, seed: int, block: str, index: int, output: str):
    """Build structure `index` of block `block` (config `spec`, global seed `seed`) into the
    extxyz file `output`; returns the atoms."""
    item_seed = derive_seed(seed, block, index)
    atoms = build_structure(spec, item_seed)
    atoms.info.update(
        {
            "block_name": block,
            "index": index,
            "seed": item_seed,
            "structure_id": f"{block}/{index:05d}",
            "provenance": json.dumps(provenance(f"{__name__}:run"), sort_keys=True),
        }
    )
    with atomic_path(output) as tmp:
        ase.io.write(tmp, atoms, format="extxyz")
    log.info(
        "structure %s/%05d: %d atoms (%d particle)",
        block,
        index,
        len(atoms),
        int(atoms.arrays["particle"].sum()),
    )
    return atoms
