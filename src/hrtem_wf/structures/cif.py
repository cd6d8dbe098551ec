"""Particles of any crystal given as a CIF (e.g. a Materials Project download), via pymatgen.

The conventional cell is repeated over a grid that covers the sphere and cut by it, centred on
the first site of the cell (as the FCC and wurtzite builders centre theirs on an atom). No
planar defects: the defect builders need to know the crystal's close-packed planes.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from hrtem_wf.structures.particle import Particle


@lru_cache(maxsize=8)
def read_cell(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lattice rows [A], fractional coordinates, atomic numbers) of the CIF's conventional cell."""
    from pymatgen.core import Structure

    structure = Structure.from_file(path).to_conventional()
    numbers = np.array([site.specie.Z for site in structure])
    return (np.array(structure.lattice.matrix), np.array(structure.frac_coords), numbers)


def elements_of(path: str) -> list[str]:
    from ase.data import chemical_symbols

    return sorted({chemical_symbols[z] for z in read_cell(path)[2]})


def crystal_sphere(
    lattice: np.ndarray, fractional: np.ndarray, numbers: np.ndarray, radius_A: float
) -> tuple[np.ndarray, np.ndarray]:
    """(positions, atomic numbers) of a crystal (lattice vectors as rows, the cell's fractional
    coordinates) within radius_A of its first site, which is put at the origin."""
    fractional = fractional - fractional[0]
    # enough cells along each lattice vector: radius / (its height over the other two's plane)
    volume = abs(np.linalg.det(lattice))
    heights = [
        volume / np.linalg.norm(np.cross(lattice[(i + 1) % 3], lattice[(i + 2) % 3]))
        for i in range(3)
    ]
    n = [int(np.ceil(radius_A / h)) + 1 for h in heights]
    grid = np.stack(
        np.meshgrid(*[np.arange(-k, k + 1) for k in n], indexing="ij"), axis=-1
    ).reshape(-1, 1, 3)
    positions = ((grid + fractional[None]) @ lattice).reshape(-1, 3)
    all_numbers = np.tile(numbers, len(grid))
    keep = np.linalg.norm(positions, axis=1) <= radius_A
    return positions[keep], all_numbers[keep]


def build_cif_particle(path: str, radius_A: float) -> Particle:
    lattice, fractional, numbers = read_cell(path)
    positions, numbers = crystal_sphere(lattice, fractional, numbers, radius_A)
    return Particle(
        positions_A=positions,
        numbers=numbers,
        radius_A=radius_A,
        lattice_constant_A=float(np.linalg.norm(lattice[0])),
        occupied_planes=(0, 0),
    )
