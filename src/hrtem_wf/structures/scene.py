"""One HRTEM scene: a randomly oriented FCC nanoparticle half-sunk into an amorphous carbon film.

Geometry (z along the beam; abTEM propagates along +z, the order does not matter physically):

    z = 0 .. vacuum_A                          empty
    z = vacuum_A .. vacuum_A + t               carbon film, periodic in x and y, t = thickness
    particle centre at z = vacuum_A + t + R - embedding_fraction * R
                                               (resting on the film, sunk embedding_fraction * R)
    cell height = particle top (centre + R) + vacuum_A

The cell is orthorhombic [L, L, H] (abTEM needs an orthogonal cell), periodic in x and y.
Carbon inside the particle's sphere, or closer than `PARTICLE_CLEARANCE_A` to a particle atom,
is removed, so no carbon overlaps the metal.

Randomness: `np.random.default_rng(seed)` for every draw of ours, in a fixed order (radius,
defect count, defect planes and kinds, orientation, lateral position, film thickness, film
repair); the film itself comes from czone's generator, which uses the global `np.random`, seeded
from the same seed (and restored afterwards). Same (block, seed) -> identical atoms.
"""

from __future__ import annotations

import math

import numpy as np
from ase import Atoms
from scipy.spatial import cKDTree

from hrtem_wf.sampling import random_rotation, sample, support
from hrtem_wf.structures.particle import DEFECT_KINDS, FCC_METALS, NORMAL_111, build_particle
from hrtem_wf.structures.substrate import SUBSTRATE_MATERIALS, amorphous_carbon_slab

# Bump when a change here changes the structures made from the same (block, seed).
STRUCTURE_CODE_VERSION = 1

# Closest carbon may come to a metal atom: ~ an Au-C bond length (2.0-2.2 A); anything closer
# would be an unphysical overlap. The block may override it with substrate.particle_clearance_A.
PARTICLE_CLEARANCE_A = 2.0


def check_block(block: dict) -> None:
    """Raise ValueError for a structures block that cannot make a valid scene for every seed."""
    if block["material"] not in FCC_METALS:
        raise ValueError(f"structures.material {block['material']!r}: only elemental FCC metals "
                         f"{FCC_METALS} are implemented")
    substrate = block["substrate"]
    if substrate["material"] not in SUBSTRATE_MATERIALS:
        raise ValueError(f"structures.substrate.material {substrate['material']!r}: "
                         f"only {SUBSTRATE_MATERIALS}")
    defects = block["planar_defects"]
    if not defects["kinds"] or set(defects["kinds"]) - set(DEFECT_KINDS):
        raise ValueError(f"structures.planar_defects.kinds {defects['kinds']}: "
                         f"choose from {DEFECT_KINDS}")
    if int(defects["min_separation_planes"]) < 1:
        raise ValueError("structures.planar_defects.min_separation_planes must be >= 1")
    if not 0.0 <= float(block["embedding_fraction"]) <= 1.0:
        raise ValueError("structures.embedding_fraction must lie in [0, 1]")
    r_min, r_max = support(block["radius_A"])
    if r_min <= 0:
        raise ValueError(f"structures.radius_A can be {r_min} A; radii must be positive")
    if math.isfinite(r_max):
        lateral_room(block["cell_A"], r_max, block["edge_margin_A"])


def lateral_room(cell_A, radius_A: float, edge_margin_A: float) -> list[tuple[float, float]]:
    """Allowed range of the particle centre in x and in y (surface >= margin from the edges)."""
    ranges = []
    for axis, length_A in zip("xy", cell_A):
        low, high = radius_A + edge_margin_A, float(length_A) - radius_A - edge_margin_A
        if high < low:
            raise ValueError(
                f"structures.cell_A: the cell is {length_A} A wide in {axis}, too small for a "
                f"particle of radius {radius_A:.2f} A with edge_margin_A {edge_margin_A} A "
                f"on both sides (needs >= {2 * (radius_A + edge_margin_A):.2f} A)")
        ranges.append((low, high))
    return ranges


def remove_overlapping_substrate(substrate_A: np.ndarray, particle_A: np.ndarray,
                                 center_A: np.ndarray, radius_A: float, clearance_A: float,
                                 cell_A: np.ndarray) -> np.ndarray:
    """Mask of substrate atoms to keep: outside the particle sphere and clear of its atoms."""
    outside_sphere = np.linalg.norm(substrate_A - center_A, axis=1) >= radius_A
    # minimum image in x and y, so carbon across the periodic boundary is seen too;
    # z is padded by 2 x clearance so it never wraps
    box = np.array([cell_A[0], cell_A[1], cell_A[2] + 2.0 * clearance_A])

    def wrapped(positions_A):
        inside = positions_A.copy()
        inside[:, :2] %= box[:2]
        return inside

    nearest_A, _ = cKDTree(wrapped(particle_A), boxsize=box).query(wrapped(substrate_A), k=1)
    return outside_sphere & (nearest_A >= clearance_A)


def build_structure(block: dict, seed: int) -> Atoms:
    """Build one scene from a `structures` config block and a per-structure seed.

    Returns ASE Atoms (particle atoms first), with `arrays["particle"]` (int8, 1 = particle,
    0 = substrate) and every sampled parameter in `info` (keys listed in the package docstring,
    `hrtem_wf.structures`)."""
    check_block(block)
    seed = int(seed)
    rng = np.random.default_rng(seed)
    cell_xy_A = [float(v) for v in block["cell_A"]]
    edge_margin_A = float(block["edge_margin_A"])
    embedding_fraction = float(block["embedding_fraction"])
    vacuum_A = float(block["vacuum_A"])
    defects_spec = block["planar_defects"]
    substrate_spec = block["substrate"]
    clearance_A = float(substrate_spec.get("particle_clearance_A", PARTICLE_CLEARANCE_A))

    # particle: size, defects, built in its crystal frame around the origin
    radius_A = float(sample(block["radius_A"], rng))
    lateral_ranges = lateral_room(cell_xy_A, radius_A, edge_margin_A)
    n_defects_drawn = int(rng.integers(0, int(defects_spec["max_count"]) + 1))
    particle = build_particle(block["material"], float(block["lattice_constant_A"]), radius_A,
                              n_defects_drawn, list(defects_spec["kinds"]),
                              int(defects_spec["min_separation_planes"]), rng)

    # orientation uniform on SO(3), about the particle centre; lab = R @ crystal + centre
    rotation = random_rotation(rng)
    center_xy_A = [float(rng.uniform(low, high)) for low, high in lateral_ranges]
    thickness_A = float(sample(substrate_spec["thickness_A"], rng))
    if thickness_A <= 0:
        raise ValueError(f"structures.substrate.thickness_A drew {thickness_A} A; must be > 0")
    embedding_depth_A = embedding_fraction * radius_A
    if embedding_depth_A > thickness_A:
        raise ValueError(f"particle sunk {embedding_depth_A:.2f} A into a {thickness_A:.2f} A "
                         f"film would poke through it; lower embedding_fraction or thicken it")
    substrate_top_z_A = vacuum_A + thickness_A
    center_A = np.array([*center_xy_A, substrate_top_z_A + radius_A - embedding_depth_A])
    particle_A = particle.positions_A @ rotation.T + center_A
    cell_A = np.array([*cell_xy_A, center_A[2] + radius_A + vacuum_A])

    # carbon film over the whole cell, then cleared where the particle sits
    film_A, film_numbers, n_repaired = amorphous_carbon_slab(
        (cell_xy_A[0], cell_xy_A[1], thickness_A), float(substrate_spec["density_per_A3"]),
        float(substrate_spec["min_distance_A"]), seed, rng)
    film_A = film_A + np.array([0.0, 0.0, vacuum_A])
    keep = remove_overlapping_substrate(film_A, particle_A, center_A, radius_A, clearance_A,
                                        cell_A)
    film_A, film_numbers = film_A[keep], film_numbers[keep]

    atoms = Atoms(numbers=np.concatenate([particle.numbers, film_numbers]),
                  positions=np.vstack([particle_A, film_A]), cell=np.diag(cell_A),
                  pbc=[True, True, False])
    atoms.arrays["particle"] = np.concatenate(
        [np.ones(len(particle_A), np.int8), np.zeros(len(film_A), np.int8)])

    kinds = [d.kind for d in particle.defects]
    info = {
        "seed": seed,
        "structure_code_version": STRUCTURE_CODE_VERSION,
        "material": block["material"],
        "lattice_constant_A": float(block["lattice_constant_A"]),
        "radius_A": radius_A,
        "center_A": center_A,
        "rotation_matrix": rotation.ravel(),            # row-major; lab = R @ crystal + centre
        "n_defects_drawn": n_defects_drawn,
        "n_defects": len(particle.defects),
        "defect_kinds": ",".join(kinds) if kinds else "none",
        "defect_normal": rotation @ NORMAL_111,         # crystal [111] in the lab frame
        "occupied_plane_range": np.array(particle.occupied_planes),
        "min_separation_planes": int(defects_spec["min_separation_planes"]),
        "edge_margin_A": edge_margin_A,
        "embedding_fraction": embedding_fraction,
        "embedding_depth_A": embedding_depth_A,
        "substrate_material": substrate_spec["material"],
        "substrate_thickness_A": thickness_A,
        "substrate_top_z_A": substrate_top_z_A,
        "substrate_density_per_A3": float(substrate_spec["density_per_A3"]),
        "substrate_min_distance_A": float(substrate_spec["min_distance_A"]),
        "particle_clearance_A": clearance_A,
        "vacuum_A": vacuum_A,
        "cell_A": cell_A,
        "n_particle_atoms": len(particle_A),
        "n_substrate_atoms": len(film_A),
        "n_substrate_removed": int((~keep).sum()),
        "n_substrate_repaired": n_repaired,
    }
    # one scalar key per defect (extxyz cannot hold empty or ragged lists), ordered along [111]
    for k, defect in enumerate(particle.defects, start=1):
        info[f"defect{k}_kind"] = defect.kind
        info[f"defect{k}_plane_index"] = defect.plane_index
        info[f"defect{k}_offset_A"] = defect.offset_A  # plane's signed distance from the centre
    atoms.info.update(info)
    return atoms
