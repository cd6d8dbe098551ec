"""Faceted FCC particles as in Madsen et al. (2018): random layer counts, roughened, on zone axis.

1. Cut from the crystal with ASE's `FaceCenteredCubic`, keeping a random number of layers along
   each of the <100>, <110> and <111> directions.
2. Roughen: add atoms one at a time at empty lattice sites next to the particle, site i chosen
   with probability exp(n_i / T) / sum_j exp(n_j / T), n_i its number of occupied neighbours
   (Madsen 2018, eq. 9), so highly coordinated sites fill first.
3. Orientation (in scene.py): a <110> or <111> zone axis along the beam, a random rotation about
   it, then a tilt of 0-5 degrees about a random in-plane axis.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from hrtem_wf.sampling import sample
from hrtem_wf.structures.particle import FCC_BASIS, Particle, rotation_about

ZONE_AXES = {
    "100": np.array([1.0, 0.0, 0.0]),
    "110": np.array([1.0, 1.0, 0.0]) / np.sqrt(2.0),
    "111": np.ones(3) / np.sqrt(3.0),
}


def _fcc_sites(lattice_constant_A: float, extent_A: float) -> np.ndarray:
    """FCC lattice sites (an atom at the origin) within a cube of half-width extent_A."""
    n = int(np.ceil(extent_A / lattice_constant_A)) + 1
    cells = np.stack(np.meshgrid(*[np.arange(-n, n + 1)] * 3, indexing="ij"), -1).reshape(-1, 1, 3)
    sites = ((cells + FCC_BASIS[None]) * lattice_constant_A).reshape(-1, 3)
    return sites[np.abs(sites).max(axis=1) <= extent_A]


def roughen(
    positions_A: np.ndarray,
    lattice_constant_A: float,
    n_added: int,
    temperature: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Add n_added atoms at empty neighbouring FCC sites, each with p ~ exp(n_i / T)."""
    if n_added <= 0:
        return positions_A
    extent = np.abs(positions_A).max() + 2 * lattice_constant_A
    sites = _fcc_sites(lattice_constant_A, extent)
    bond = lattice_constant_A / np.sqrt(2.0)
    tree = cKDTree(sites)
    occupied = np.zeros(len(sites), dtype=bool)
    _, index = tree.query(positions_A)
    occupied[index] = True
    pairs = tree.query_pairs(bond * 1.05, output_type="ndarray")
    neighbours = [[] for _ in range(len(sites))]
    for a, b in pairs:
        neighbours[a].append(b)
        neighbours[b].append(a)
    coordination = np.zeros(len(sites), dtype=int)
    for a, b in pairs:
        coordination[a] += occupied[b]
        coordination[b] += occupied[a]
    for _ in range(n_added):
        candidates = np.flatnonzero(~occupied & (coordination > 0))
        weights = np.exp(coordination[candidates] / temperature)
        chosen = candidates[rng.choice(len(candidates), p=weights / weights.sum())]
        occupied[chosen] = True
        for neighbour in neighbours[chosen]:
            coordination[neighbour] += 1
    return sites[occupied]


def build_layered_particle(
    material: str, lattice_constant_A: float, spec: dict, rng: np.random.Generator
) -> Particle:
    """spec: `layers` (a distribution, drawn for <100>, <110>, <111>), `added_atoms` (a
    distribution), `temperature` (T of the roughening)."""
    from ase.cluster import FaceCenteredCubic

    layers = [max(1, int(round(sample(spec["layers"], rng)))) for _ in range(3)]
    cluster = FaceCenteredCubic(
        material,
        surfaces=[(1, 0, 0), (1, 1, 0), (1, 1, 1)],
        layers=layers,
        latticeconstant=lattice_constant_A,
    )
    positions = cluster.get_positions()
    positions = (
        positions - positions[np.argmin(np.linalg.norm(positions - positions.mean(0), axis=1))]
    )
    n_added = max(0, int(round(sample(spec["added_atoms"], rng))))
    positions = roughen(positions, lattice_constant_A, n_added, float(spec["temperature"]), rng)
    numbers = np.full(len(positions), cluster.numbers[0])
    radius_A = float(np.linalg.norm(positions, axis=1).max())
    return Particle(
        positions_A=positions,
        numbers=numbers,
        radius_A=radius_A,
        lattice_constant_A=lattice_constant_A,
        occupied_planes=(0, 0),
        extra={"layers_100_110_111": np.array(layers), "added_atoms": n_added},
    )


def zone_axis_rotation(spec: dict, rng: np.random.Generator) -> tuple[np.ndarray, str, float]:
    """A zone axis from spec['axes'] along z, a random rotation about it, then a tilt of
    U(0, tilt_max_deg) about a random in-plane axis. Returns (rotation, axis, tilt_deg)."""
    axes = list(spec["axes"])
    axis_name = axes[int(rng.integers(len(axes)))]
    axis = ZONE_AXES[axis_name]
    z = np.array([0.0, 0.0, 1.0])
    cross = np.cross(axis, z)
    if np.linalg.norm(cross) < 1e-12:
        align = np.eye(3)
    else:
        align = rotation_about(cross, np.arccos(np.clip(axis @ z, -1, 1)))
    spin = rotation_about(z, rng.uniform(0.0, 2 * np.pi))
    tilt_deg = float(rng.uniform(0.0, float(spec["tilt_max_deg"])))
    tilt_axis = rotation_about(z, rng.uniform(0.0, 2 * np.pi)) @ np.array([1.0, 0.0, 0.0])
    tilt = rotation_about(tilt_axis, np.deg2rad(tilt_deg))
    return tilt @ spin @ align, axis_name, tilt_deg
