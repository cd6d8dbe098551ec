"""Structure-stage benchmark: seconds per structure in the study's cell (128 x 128 A, 50 A film).

    python benchmarks/structures.py [--count 10]

Builds `count` structures of the study's Baseline Au block (radius N(40, 10) in [30, 50] A,
0-3 planar defects, 5 nm amorphous carbon) and of a CdSe block (up to 5 wurtzite particles)
through `build_structure`, the function the structure rule calls, and prints seconds per
structure next to the study's 15.2 s (DaCosta et al. 2024, Table 2; their workstation).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from hrtem_wf.config import validate_block
from hrtem_wf.structures import build_structure
from hrtem_wf.structures.substrate import random_film

CARBON = {
    "material": "amorphous_carbon",
    "thickness_A": 50.0,
    "density_per_A3": 0.1103,
    "min_distance_A": 1.4,
}
BLOCKS = {
    "baseline Au (1 particle, 0-3 defects)": {
        "count": 1,
        "material": "Au",
        "lattice_constant_A": 4.07825,
        "radius_A": {"distribution": "normal", "mean": 40.0, "sd": 10.0, "min": 30.0, "max": 50.0},
        "planar_defects": {
            "max_count": 3,
            "kinds": ["twin", "stacking_fault"],
            "min_separation_planes": 3,
        },
        "cell_A": [128.0, 128.0],
        "edge_margin_A": 10.0,
        "embedding_fraction": 0.2,
        "substrate": CARBON,
        "vacuum_A": 2.0,
    },
    "optimal CdSe (1-5 wurtzite particles)": {
        "count": 1,
        "material": "CdSe",
        "lattice": "wurtzite",
        "elements": ["Cd", "Se"],
        "lattice_constant_A": 4.39,
        "c_A": 7.17,
        "radius_A": {"distribution": "normal", "mean": 17.5, "sd": 30.0, "min": 10.0, "max": 25.0},
        "particles": {
            "count": {"distribution": "choice", "values": [1, 2, 3, 4, 5]},
            "min_separation_A": 10.0,
            "max_attempts": 100,
        },
        "planar_defects": {
            "max_count": 2,
            "kinds": ["stacking_fault"],
            "min_separation_planes": 4,
            "max_count_by_radius": [[22.0, 2], [15.0, 1]],
        },
        "cell_A": [128.0, 128.0],
        "edge_margin_A": 10.0,
        "embedding_fraction": 0.2,
        "substrate": CARBON,
        "vacuum_A": 2.0,
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10)
    args = parser.parse_args()
    random_film((10.0, 10.0, 5.0), 0.1103, 1.4, np.random.default_rng(0))  # numba compile
    start = time.perf_counter()
    film = random_film((128.0, 128.0, 50.0), 0.1103, 1.4, np.random.default_rng(1))
    film_s = time.perf_counter() - start
    print(f"structures benchmark: {os.cpu_count()} CPU cores, {args.count} structures per block")
    print(f"  amorphous carbon film 128 x 128 x 50 A ({len(film)} atoms): {film_s:.3f} s")
    for name, block in BLOCKS.items():
        block = validate_block("structures", block)
        build_structure(block, 0)  # warm-up
        times, atoms_count = [], []
        for seed in range(1, args.count + 1):
            start = time.perf_counter()
            atoms = build_structure(block, seed)
            times.append(time.perf_counter() - start)
            atoms_count.append(len(atoms))
        print(
            f"  {name}: {np.mean(times):.3f} s per structure (min {min(times):.3f}, "
            f"max {max(times):.3f}; {np.mean(atoms_count):.0f} atoms)"
        )
    print("  the study (Table 2, workstation): 15.2 s per structure")


if __name__ == "__main__":
    main()
