"""Wurtzite nanoparticles (CdSe, ZnO, GaN, ...) with Type I1 basal stacking faults.

The crystal is the 4-atom hexagonal cell (cation at (1/3, 2/3, 0) and (2/3, 1/3, 1/2), anion u c
above each) repeated and cut by a sphere. Not czone's `Generator`: czone 2022.9.20 applies a
non-orthogonal cell's lattice matrix transposed (its hexagonal CdSe comes out with Cd-Cd 3.80 A
in the basal plane instead of a = 4.39 A; a test pins ours). Basal layers (a cation and
the anion u c above it) sit at z = j c / 2 and alternate between two of the three close-packed
sites: ...BCBC... in the A/B/C notation of (0, 0), (1/3, 2/3), (2/3, 1/3).

A Type I1 intrinsic fault between layers j and j + 1 turns ...XY|XY... into ...XY|ZX...: the
crystal above the cut is translated in-plane by site(X) - site(Y), the translation that takes
Y to X and X to the third site Z. Faults are applied from the bottom up on a sphere larger than
the particle by the largest shift, then the particle's sphere is cut, so it stays a sphere. The
study (SI 1.7, CdSe): faults at least 4 basal planes apart and from the surface, and up to 2 of
them for r > 2.2 nm, up to 1 for r > 1.5 nm, none below.
"""

from __future__ import annotations

import numpy as np
from ase.data import atomic_numbers

from hrtem_wf.structures.cif import crystal_sphere
from hrtem_wf.structures.particle import (
    Particle,
    PlanarDefect,
    choose_defect_planes,
    max_defects_that_fit,
)

# fractional in-plane positions of the close-packed sites A, B, C
SITES = np.array([[0.0, 0.0], [1 / 3, 2 / 3], [2 / 3, 1 / 3]])


def wurtzite_lattice(a_A: float, c_A: float) -> np.ndarray:
    """Lattice vectors as rows: a1 along x, a2 at 120 degrees, c along z."""
    return np.array([[a_A, 0.0, 0.0], [-a_A / 2, a_A * np.sqrt(3.0) / 2, 0.0], [0.0, 0.0, c_A]])


def wurtzite_sphere(
    elements: list[str], a_A: float, c_A: float, u: float, radius_A: float
) -> tuple[np.ndarray, np.ndarray]:
    """(positions, atomic numbers) of the wurtzite crystal within radius_A of the origin (a
    cation site)."""
    cation, anion = (atomic_numbers[e] for e in elements)
    basis = np.array(
        [[1 / 3, 2 / 3, 0.0], [2 / 3, 1 / 3, 0.5], [1 / 3, 2 / 3, u], [2 / 3, 1 / 3, 0.5 + u]]
    )
    return crystal_sphere(
        wurtzite_lattice(a_A, c_A), basis, np.array([cation, cation, anion, anion]), radius_A
    )


def _site_index(fractional_xy: np.ndarray) -> int:
    """Which of A, B, C a fractional in-plane position is (modulo the lattice)."""
    distance = np.abs(((SITES - fractional_xy) + 0.5) % 1.0 - 0.5).sum(axis=1)
    return int(distance.argmin())


def max_faults_for_radius(radius_A: float, rules: list[list[float]] | None, max_count: int) -> int:
    """The count cap: rules [[min_radius_A, max_count], ...] (first rule whose radius is exceeded
    wins, sorted largest radius first); no rules: max_count."""
    if not rules:
        return int(max_count)
    for min_radius_A, count in sorted(rules, key=lambda r: -r[0]):
        if radius_A > min_radius_A:
            return int(count)
    return 0


def build_wurtzite_particle(
    elements: list[str],
    a_A: float,
    c_A: float,
    u: float,
    radius_A: float,
    n_faults: int,
    min_separation_planes: int,
    rng: np.random.Generator,
) -> Particle:
    """A wurtzite sphere (c along z of its crystal frame) with up to n_faults I1 basal faults."""
    half_c = c_A / 2.0
    positions, numbers = wurtzite_sphere(elements, a_A, c_A, u, radius_A)
    cation = numbers == atomic_numbers[elements[0]]
    layers = np.rint(positions[cation, 2] / half_c).astype(int)
    occupied = (int(layers.min()), int(layers.max()))
    # a cut "at plane j" lies between layers j - 1 and j; keep min_sep layers on each side
    n_placed = min(n_faults, max_defects_that_fit(occupied, min_separation_planes))
    planes = choose_defect_planes(occupied, n_placed, min_separation_planes, rng)
    faults = [
        PlanarDefect(
            kind="stacking_fault", plane_index=j, offset_A=(j - 0.5) * half_c + u * c_A / 2
        )
        for j in planes
    ]
    if faults:
        lattice = wurtzite_lattice(a_A, c_A)
        shift_max = a_A * len(faults)
        positions, numbers = wurtzite_sphere(elements, a_A, c_A, u, radius_A + shift_max)
        layer_of_atom = np.rint(
            (positions[:, 2] - np.where(numbers == atomic_numbers[elements[0]], 0.0, u * c_A))
            / half_c
        ).astype(int)
        # cation sites relative to the origin cation: layer 0 at A, layer 1 at (1/3, -1/3) = C
        site_of_layer = {0: 0, 1: _site_index(np.array([1 / 3, -1 / 3]))}
        total = np.zeros(2)  # cumulative in-plane shift, fractional
        for j in planes:
            below = (site_of_layer[(j - 1) % 2], site_of_layer[(j - 2) % 2])  # Y, X
            y_site = _site_index(SITES[below[0]] + total)
            x_site = _site_index(SITES[below[1]] + total)
            step = SITES[x_site] - SITES[y_site]  # takes Y to X and X to Z
            total = total + step
            above = layer_of_atom >= j
            positions[above, :2] += step @ lattice[:2, :2]
        keep = np.linalg.norm(positions, axis=1) <= radius_A
        positions, numbers = positions[keep], numbers[keep]
    return Particle(
        positions_A=positions,
        numbers=numbers,
        radius_A=radius_A,
        lattice_constant_A=a_A,
        occupied_planes=occupied,
        defects=faults,
        n_defects_drawn=n_faults,
    )
