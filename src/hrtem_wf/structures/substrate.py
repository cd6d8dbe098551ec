"""Amorphous carbon support film, periodic in x and y, from czone's amorphous algorithm.

czone's `AmorphousGenerator` fills a box by random sequential addition: uniform random points,
each rejected if closer than `min_dist` to an accepted atom (minimum image in x and y), until the
box holds density x volume atoms. We call its algorithm (`gen_p_substrate`) directly because
`AmorphousGenerator.supply_atoms` (czone 2022.9.20) drops its `density` and returns coordinates
relative to the box corner instead of the volume's position.

Two things czone leaves to us:
- it draws from the *global* `np.random`; `amorphous_carbon_slab` seeds it from the structure seed
  and restores the caller's global state afterwards;
- its neighbour grid has cells of exactly `min_dist`, so when the box width is not a multiple of
  `min_dist` the last, narrower cell column is not checked against the second-to-last across the
  periodic boundary, and a few pairs end up closer than `min_dist` through the x/y boundary
  (~20 of 8700 atoms for a 51.2 x 51.2 x 30 A slab). `repair_periodic_contacts` removes one atom
  of each such pair and re-adds as many by the same rule (uniform point, rejected if too close),
  so the film is periodic with the minimum distance held everywhere and the density unchanged.
"""

from __future__ import annotations

import numpy as np
from czone.generator.amorphous_algorithms import gen_p_substrate
from scipy.spatial import cKDTree

CARBON = 6
SUBSTRATE_MATERIALS = ("amorphous_carbon",)


def _periodic_tree(positions_A: np.ndarray, box_A: np.ndarray, min_distance_A: float) -> cKDTree:
    """KD-tree with minimum-image distances in x and y only (z padded so it never wraps)."""
    boxsize = np.array([box_A[0], box_A[1], box_A[2] + 2.0 * min_distance_A])
    return cKDTree(positions_A, boxsize=boxsize)


def too_close_pairs(positions_A: np.ndarray, box_A: np.ndarray,
                    min_distance_A: float) -> np.ndarray:
    """(K, 2) index pairs closer than min_distance_A (minimum image in x and y)."""
    tree = _periodic_tree(positions_A, box_A, min_distance_A)
    # a hair below min_distance so pairs exactly at it (float noise) are not flagged
    return tree.query_pairs(min_distance_A * (1.0 - 1e-9), output_type="ndarray")


def repair_periodic_contacts(positions_A: np.ndarray, box_A: np.ndarray, min_distance_A: float,
                             rng: np.random.Generator, max_tries: int = 100_000
                             ) -> tuple[np.ndarray, int]:
    """Re-place atoms that sit closer than min_distance_A to another one; return (positions, n)."""
    pairs = too_close_pairs(positions_A, box_A, min_distance_A)
    if len(pairs) == 0:
        return positions_A, 0
    # drop the second atom of every offending pair: the rest keeps every distance >= min
    drop = np.unique(pairs[:, 1])
    kept = np.delete(positions_A, drop, axis=0)
    added = []
    for _ in range(max_tries):
        if len(added) == len(drop):
            break
        trial = rng.random(3) * box_A
        others = np.vstack([kept] + [np.asarray(added).reshape(-1, 3)])
        delta = np.abs(others - trial)
        delta[:, :2] = np.minimum(delta[:, :2], box_A[:2] - delta[:, :2])   # x, y periodic
        if np.min(np.einsum("ij,ij->i", delta, delta)) >= min_distance_A ** 2:
            added.append(trial)
    else:
        raise RuntimeError("could not re-place substrate atoms: density too high for min_distance")
    return np.vstack([kept, np.asarray(added)]), len(drop)


def amorphous_carbon_slab(size_A: tuple[float, float, float], density_per_A3: float,
                          min_distance_A: float, seed: int, rng: np.random.Generator
                          ) -> tuple[np.ndarray, np.ndarray, int]:
    """Random carbon film filling [0, Lx) x [0, Ly) x [0, t), periodic in x and y.

    Returns (positions_A, atomic numbers, number of atoms re-placed by the periodic repair)."""
    box_A = np.asarray(size_A, dtype=float)
    saved_state = np.random.get_state()
    try:
        np.random.seed(seed % 2**32)          # czone draws from the global RNG
        positions_A = gen_p_substrate(box_A, min_dist=min_distance_A, density=density_per_A3)
    finally:
        np.random.set_state(saved_state)
    positions_A, n_repaired = repair_periodic_contacts(positions_A, box_A, min_distance_A, rng)
    return positions_A, np.full(len(positions_A), CARBON), n_repaired
