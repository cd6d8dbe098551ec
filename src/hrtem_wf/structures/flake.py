"""2D flakes (MoS2 and other 2H MX2), alone or on graphene, as in Larsen et al. (2023).

A flake is a disk cut from a 2H MX2 monolayer (ASE's `mx2` cell), centred on a metal atom, with
`vacancy_fraction` of its atoms removed at random and holes (disks of `hole_radius_A`) cut until
`hole_fraction` of its atoms are gone. It is rotated in-plane by `twist_deg` relative to the
support, tilted by U(0, tilt_max_deg) about a random in-plane axis, and placed with its lowest
atom `distance_A` above the graphene sheet (Larsen: 3.3-7 A; twists 0/15/30 degrees or random).
The graphene sheet is periodic: the cell is rounded to a whole rectangular graphene supercell
(a x a sqrt(3)). The flake's atoms are the label (`arrays["particle"] == 1`).
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.build import mx2

from hrtem_wf.sampling import sample
from hrtem_wf.structures.particle import rotation_about


def monolayer_disk(formula: str, a_A: float, thickness_A: float, radius_A: float) -> Atoms:
    """A disk of a 2H MX2 monolayer in the x-y plane, metal layer at z = 0, a metal at the
    origin."""
    n = int(np.ceil(2 * radius_A / a_A)) + 3
    sheet = mx2(
        formula=formula,
        kind="2H",
        a=a_A,
        thickness=thickness_A,
        size=(2 * n, 2 * n, 1),
        vacuum=None,
    )
    metal = sheet.numbers[0]
    centre = sheet.positions[sheet.numbers == metal]
    centre = centre[np.argmin(np.linalg.norm(centre[:, :2] - centre[:, :2].mean(0), axis=1))]
    sheet.positions -= centre
    keep = np.linalg.norm(sheet.positions[:, :2], axis=1) <= radius_A
    return sheet[keep]


def graphene_sheet(cell_xy_A, a_A: float = 2.46) -> tuple[np.ndarray, tuple[float, float]]:
    """Graphene filling a rectangular cell rounded to whole (a, a sqrt 3) supercells, periodic."""
    nx = max(1, int(round(cell_xy_A[0] / a_A)))
    ny = max(1, int(round(cell_xy_A[1] / (a_A * np.sqrt(3)))))
    size = (nx * a_A, ny * a_A * np.sqrt(3))
    # rectangular 4-atom cell of the honeycomb lattice
    basis = np.array(
        [
            [0.0, 0.0],
            [a_A / 2, a_A * np.sqrt(3) / 6],
            [a_A / 2, a_A * np.sqrt(3) / 2],
            [0.0, a_A * 2 * np.sqrt(3) / 3],
        ]
    )
    i, j = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    origins = np.stack([i.ravel() * a_A, j.ravel() * a_A * np.sqrt(3)], axis=1)
    xy = (origins[:, None] + basis[None]).reshape(-1, 2)
    return np.column_stack([xy, np.zeros(len(xy))]), size


def punch(flake: Atoms, spec: dict, rng: np.random.Generator) -> tuple[Atoms, int, int, int]:
    """Remove vacancies and holes; returns (flake, n vacancies, n holes, atoms in holes)."""
    n_atoms = len(flake)
    keep = np.ones(n_atoms, dtype=bool)
    n_vacancies = int(round(float(spec["vacancy_fraction"]) * n_atoms))
    keep[rng.choice(n_atoms, size=n_vacancies, replace=False)] = False
    target = int(round(float(spec["hole_fraction"]) * n_atoms))
    in_holes = np.zeros(n_atoms, dtype=bool)
    n_holes = 0
    xy = flake.positions[:, :2]
    radius = np.linalg.norm(xy, axis=1).max()
    while in_holes.sum() < target and n_holes < 1000:
        centre = rng.uniform(-radius, radius, 2)
        if np.linalg.norm(centre) > radius:
            continue
        hole_radius = float(sample(spec["hole_radius_A"], rng))
        in_holes |= np.linalg.norm(xy - centre, axis=1) <= hole_radius
        n_holes += 1
    keep &= ~in_holes
    return flake[keep], n_vacancies, n_holes, int(in_holes.sum())


def flake_elements(block: dict) -> set[str]:
    from ase.formula import Formula

    elements = set(Formula(block["material"]).count())
    if block["support"]["material"] == "graphene":
        elements.add("C")
    return elements


def build_flake_scene(block: dict, seed: int) -> Atoms:
    """One scene of a `family: flake` block: the flake (label) on its support, if any."""
    rng = np.random.default_rng(int(seed))
    flake_spec, support = block["flake"], block["support"]
    vacuum_A = float(block["vacuum_A"])
    margin_A = float(block["edge_margin_A"])
    radius_A = float(sample(flake_spec["radius_A"], rng))
    flake = monolayer_disk(
        block["material"],
        float(flake_spec["lattice_constant_A"]),
        float(flake_spec["thickness_A"]),
        radius_A,
    )
    n_intact = len(flake)
    flake, n_vacancies, n_holes, n_hole_atoms = punch(flake, flake_spec, rng)
    twist_deg = float(sample(support["twist_deg"], rng))
    tilt_deg = float(rng.uniform(0.0, float(flake_spec["tilt_max_deg"])))
    tilt_axis = rotation_about(np.array([0.0, 0.0, 1.0]), rng.uniform(0, 2 * np.pi)) @ np.array(
        [1.0, 0, 0]
    )
    rotation = rotation_about(tilt_axis, np.deg2rad(tilt_deg)) @ rotation_about(
        np.array([0.0, 0.0, 1.0]), np.deg2rad(twist_deg)
    )
    flake_A = flake.positions @ rotation.T

    if support["material"] == "graphene":
        support_A, cell_xy = graphene_sheet(block["cell_A"], float(support["lattice_constant_A"]))
        support_A[:, 2] = vacuum_A
        distance_A = float(sample(support["distance_A"], rng))
        bottom_A = vacuum_A + distance_A
        support_numbers = np.full(len(support_A), 6)
    else:
        support_A, cell_xy = np.zeros((0, 3)), tuple(float(c) for c in block["cell_A"])
        distance_A, bottom_A = 0.0, vacuum_A
        support_numbers = np.zeros(0, dtype=int)
    low = [radius_A + margin_A] * 2
    high = [cell_xy[0] - radius_A - margin_A, cell_xy[1] - radius_A - margin_A]
    if min(hi - lo for hi, lo in zip(high, low)) < 0:
        raise ValueError(
            f"structures.cell_A {block['cell_A']} is too small for a flake of radius "
            f"{radius_A:.1f} A with edge_margin_A {margin_A}"
        )
    centre_xy = np.array([rng.uniform(lo, hi) for lo, hi in zip(low, high)])
    flake_A = flake_A + np.array([*centre_xy, bottom_A - flake_A[:, 2].min()])
    cell_A = np.array([*cell_xy, flake_A[:, 2].max() + vacuum_A])
    atoms = Atoms(
        numbers=np.concatenate([flake.numbers, support_numbers]),
        positions=np.vstack([flake_A, support_A]),
        cell=np.diag(cell_A),
        pbc=[True, True, False],
    )
    atoms.arrays["particle"] = np.concatenate(
        [np.ones(len(flake_A), np.int8), np.zeros(len(support_A), np.int8)]
    )
    atoms.info.update(
        {
            "seed": int(seed),
            "family": "flake",
            "material": block["material"],
            "radius_A": radius_A,
            "center_A": np.array([*centre_xy, flake_A[:, 2].mean()]),
            "rotation_matrix": rotation.ravel(),
            "twist_deg": twist_deg,
            "tilt_deg": tilt_deg,
            "n_flake_atoms_intact": n_intact,
            "n_vacancies": n_vacancies,
            "n_holes": n_holes,
            "n_hole_atoms": n_hole_atoms,
            "support": support["material"],
            "support_distance_A": distance_A,
            "cell_A": cell_A,
            "edge_margin_A": margin_A,
            "vacuum_A": vacuum_A,
            "n_particle_atoms": len(flake_A),
            "n_substrate_atoms": len(support_A),
        }
    )
    return atoms
