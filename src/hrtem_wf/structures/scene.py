"""One HRTEM scene: randomly oriented nanoparticles (FCC or wurtzite) half-sunk into an amorphous
carbon film.

Geometry (z along the beam; abTEM propagates along +z, the order does not matter physically):

    z = 0 .. vacuum_A                          empty
    z = vacuum_A .. vacuum_A + t               carbon film, periodic in x and y, t = thickness
    particle centres at z = vacuum_A + t + R - embedding_fraction * R
                                               (resting on the film, sunk embedding_fraction * R)
    cell height = highest particle top (centre + R) + vacuum_A
Several particles (`particles.count`) are placed by rejection sampling, their surfaces at least
`particles.min_separation_A` apart and `edge_margin_A` from the cell edges.

The cell is orthorhombic [L, L, H] (abTEM needs an orthogonal cell), periodic in x and y.
Carbon inside the particle's sphere, or closer than `substrate.particle_clearance_A` to a particle
atom,
is removed, so no carbon overlaps the metal.

Randomness: `np.random.default_rng(seed)` for every draw, in a fixed order (number of particles,
radii, positions, film thickness, then per particle: kind, defects or grain boundary,
orientation; then the film). Same (block, seed) -> identical atoms.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from scipy.spatial import cKDTree

from hrtem_wf.sampling import random_rotation, sample
from hrtem_wf.structures.cif import build_cif_particle, elements_of
from hrtem_wf.structures.flake import build_flake_scene
from hrtem_wf.structures.layered import build_layered_particle, zone_axis_rotation
from hrtem_wf.structures.particle import (
    NORMAL_111,
    build_grain_boundary_particle,
    build_particle,
)
from hrtem_wf.structures.substrate import amorphous_carbon_slab
from hrtem_wf.structures.wurtzite import (
    build_wurtzite_particle,
    max_faults_for_radius,
)


def particle_spec(block: dict) -> dict:
    """The particle settings of a validated block (hrtem_wf.config fills the defaults)."""
    lattice = block["lattice"]
    if lattice == "cif":
        elements = elements_of(block["cif"])
    else:
        elements = list(block["elements"])
    particles = block["particles"]
    boundaries = block["grain_boundaries"]
    return {
        "lattice": lattice,
        "elements": elements,
        "a_A": float(block.get("lattice_constant_A", 0.0)),  # absent for a CIF crystal
        "cif": block.get("cif"),
        "c_A": float(block.get("c_A", 0.0)),  # wurtzite only
        "u": float(block["u"]),
        "count": particles["count"],
        "min_separation_A": float(particles["min_separation_A"]),
        "max_attempts": int(particles["max_attempts"]),
        "gb_fraction": float(boundaries["fraction"]),
        "gb_kinds": list(boundaries["kinds"]),
        "gb_min_distance_A": float(boundaries["min_distance_A"]),
        "max_count_by_radius": block["planar_defects"].get("max_count_by_radius"),
        "shape": block["shape"],
        "layered": block.get("layered"),
        "zone_axis": block.get("zone_axis"),
    }


def lateral_room(cell_A, radius_A: float, edge_margin_A: float) -> list[tuple[float, float]]:
    """Allowed range of the particle centre in x and in y (surface >= margin from the edges)."""
    ranges = []
    for axis, length_A in zip("xy", cell_A):
        low, high = radius_A + edge_margin_A, float(length_A) - radius_A - edge_margin_A
        if high < low:
            raise ValueError(
                f"structures.cell_A: the cell is {length_A} A wide in {axis}, too small for a "
                f"particle of radius {radius_A:.2f} A with edge_margin_A {edge_margin_A} A "
                f"on both sides (needs >= {2 * (radius_A + edge_margin_A):.2f} A)"
            )
        ranges.append((low, high))
    return ranges


def place_particles(
    radii_A: list[float],
    cell_A,
    edge_margin_A: float,
    min_separation_A: float,
    max_attempts: int,
    rng: np.random.Generator,
) -> tuple[list[np.ndarray], int]:
    """Lateral centres by rejection sampling: each particle uniform in the region that keeps its
    surface edge_margin_A from the cell edges, redrawn while its surface is closer than
    min_separation_A to an already placed one (up to max_attempts draws per particle; a
    particle that does not fit is dropped, and so are the ones after it). Returns (centres
    (x, y) of the placed particles, total draws)."""
    centres: list[np.ndarray] = []
    attempts = 0
    for radius in radii_A:
        ranges = lateral_room(cell_A, radius, edge_margin_A)
        for _ in range(max_attempts):
            attempts += 1
            trial = np.array([rng.uniform(low, high) for low, high in ranges])
            if all(
                np.linalg.norm(trial - c) >= radius + radii_A[j] + min_separation_A
                for j, c in enumerate(centres)
            ):
                centres.append(trial)
                break
        else:
            break
    return centres, attempts


def remove_overlapping_substrate(
    substrate_A: np.ndarray,
    particle_A: np.ndarray,
    centers_A: np.ndarray,
    radii_A: np.ndarray,
    clearance_A: float,
    cell_A: np.ndarray,
) -> np.ndarray:
    """Mask of substrate atoms to keep: outside every particle sphere and clear of their atoms."""
    outside_spheres = np.ones(len(substrate_A), dtype=bool)
    for center, radius in zip(np.atleast_2d(centers_A), np.atleast_1d(radii_A)):
        outside_spheres &= np.linalg.norm(substrate_A - center, axis=1) >= radius
    # minimum image in x and y, so carbon across the periodic boundary is seen too;
    # z is padded by 2 x clearance so it never wraps
    box = np.array([cell_A[0], cell_A[1], cell_A[2] + 2.0 * clearance_A])

    def wrapped(positions_A):
        inside = positions_A.copy()
        inside[:, :2] %= box[:2]
        return inside

    # only carbon within clearance of a sphere can be near a particle atom (atoms lie inside it)
    near = np.zeros(len(substrate_A), dtype=bool)
    for center, radius in zip(np.atleast_2d(centers_A), np.atleast_1d(radii_A)):
        delta = np.abs(substrate_A - center)
        delta[:, :2] = np.minimum(delta[:, :2], box[:2] - delta[:, :2])
        near |= np.einsum("ij,ij->i", delta, delta) < (radius + clearance_A) ** 2
    clear = np.ones(len(substrate_A), dtype=bool)
    if near.any():
        nearest_A, _ = cKDTree(wrapped(particle_A), boxsize=box).query(
            wrapped(substrate_A[near]), k=1
        )
        clear[near] = nearest_A >= clearance_A
    return outside_spheres & clear


def _one_particle(block: dict, spec: dict, radius_A: float, rng: np.random.Generator):
    """A particle in its crystal frame: planar defects, or (with probability gb_fraction, FCC
    only) a grain boundary. Returns (Particle, number of defects drawn, defect-plane normal in
    the crystal frame)."""
    defects_spec = block["planar_defects"]
    min_sep = int(defects_spec["min_separation_planes"])
    if spec["lattice"] == "cif":
        return build_cif_particle(spec["cif"], radius_A), 0, np.array([0.0, 0.0, 1.0])
    if spec["shape"] == "layered":
        return (
            build_layered_particle(block["material"], spec["a_A"], spec["layered"], rng),
            0,
            NORMAL_111,
        )
    if spec["lattice"] == "wurtzite":
        cap = max_faults_for_radius(
            radius_A, spec["max_count_by_radius"], int(defects_spec["max_count"])
        )
        n_drawn = int(rng.integers(0, cap + 1))
        particle = build_wurtzite_particle(
            spec["elements"], spec["a_A"], spec["c_A"], spec["u"], radius_A, n_drawn, min_sep, rng
        )
        return particle, n_drawn, np.array([0.0, 0.0, 1.0])
    if spec["gb_fraction"] > 0 and rng.random() < spec["gb_fraction"]:
        kind = spec["gb_kinds"][int(rng.integers(len(spec["gb_kinds"])))]
        particle = build_grain_boundary_particle(
            block["material"], spec["a_A"], radius_A, kind, min_sep, spec["gb_min_distance_A"], rng
        )
        return particle, 0, NORMAL_111
    n_drawn = int(rng.integers(0, int(defects_spec["max_count"]) + 1))
    particle = build_particle(
        block["material"], spec["a_A"], radius_A, n_drawn, list(defects_spec["kinds"]), min_sep, rng
    )
    return particle, n_drawn, NORMAL_111


def build_structure(block: dict, seed: int) -> Atoms:
    """Build one scene from a `structures` config block and a per-structure seed.

    Returns ASE Atoms (particle atoms first), with `arrays["particle"]` (int8, 1 = particle,
    0 = substrate) and every sampled parameter in `info` (keys listed in the package docstring,
    `hrtem_wf.structures`)."""
    if block["family"] == "flake":
        return build_flake_scene(block, seed)
    spec = particle_spec(block)
    seed = int(seed)
    rng = np.random.default_rng(seed)
    cell_xy_A = [float(v) for v in block["cell_A"]]
    edge_margin_A = float(block["edge_margin_A"])
    embedding_fraction = float(block["embedding_fraction"])
    vacuum_A = float(block["vacuum_A"])
    substrate_spec = block["substrate"]
    clearance_A = float(substrate_spec["particle_clearance_A"])

    # how many particles; each built in its crystal frame and oriented; then where they go
    n_requested = int(round(sample(spec["count"], rng)))
    particles, rotations, drawn, normals, zone_axes = [], [], [], [], []
    for _ in range(n_requested):
        radius_A = float(sample(block["radius_A"], rng)) if spec["shape"] == "sphere" else 0.0
        particle, n_drawn, normal = _one_particle(block, spec, radius_A, rng)
        if spec["zone_axis"]:
            rotation, axis, tilt_deg = zone_axis_rotation(spec["zone_axis"], rng)
            zone_axes.append((f"<{axis}>", tilt_deg))
        else:
            rotation = random_rotation(rng)  # uniform on SO(3), about the particle's centre
        particles.append(particle)
        rotations.append(rotation)
        drawn.append(n_drawn)
        normals.append(rotation @ normal)
    radii_A = [p.radius_A for p in particles]
    lateral_room(cell_xy_A, radii_A[0], edge_margin_A)  # the first must always fit
    centres_xy, attempts = place_particles(
        radii_A, cell_xy_A, edge_margin_A, spec["min_separation_A"], spec["max_attempts"], rng
    )
    placed = len(centres_xy)
    particles, rotations, drawn, normals, radii_A = (
        particles[:placed],
        rotations[:placed],
        drawn[:placed],
        normals[:placed],
        radii_A[:placed],
    )
    thickness_A = float(sample(substrate_spec["thickness_A"], rng))
    if thickness_A <= 0:
        raise ValueError(f"structures.substrate.thickness_A drew {thickness_A} A; must be > 0")
    substrate_top_z_A = vacuum_A + thickness_A
    for radius_A in radii_A:
        if embedding_fraction * radius_A > thickness_A:
            raise ValueError(
                f"particle sunk {embedding_fraction * radius_A:.2f} A into a "
                f"{thickness_A:.2f} A film would poke through it; lower "
                "embedding_fraction or thicken it"
            )
    positions, numbers, centers = [], [], []
    for particle, rotation, radius_A, centre_xy in zip(particles, rotations, radii_A, centres_xy):
        center_A = np.array(
            [*centre_xy, substrate_top_z_A + radius_A - embedding_fraction * radius_A]
        )
        positions.append(particle.positions_A @ rotation.T + center_A)
        numbers.append(particle.numbers)
        centers.append(center_A)
    particle_A = np.vstack(positions)
    centers_A = np.array(centers)
    top_A = max(c[2] + r for c, r in zip(centers, radii_A))
    cell_A = np.array([*cell_xy_A, top_A + vacuum_A])

    # carbon film over the whole cell, then cleared where the particles sit
    film_A, film_numbers = amorphous_carbon_slab(
        (cell_xy_A[0], cell_xy_A[1], thickness_A),
        float(substrate_spec["density_per_A3"]),
        float(substrate_spec["min_distance_A"]),
        rng,
    )
    film_A = film_A + np.array([0.0, 0.0, vacuum_A])
    keep = remove_overlapping_substrate(
        film_A, particle_A, centers_A, np.array(radii_A), clearance_A, cell_A
    )
    film_A, film_numbers = film_A[keep], film_numbers[keep]

    atoms = Atoms(
        numbers=np.concatenate(numbers + [film_numbers]),
        positions=np.vstack([particle_A, film_A]),
        cell=np.diag(cell_A),
        pbc=[True, True, False],
    )
    atoms.arrays["particle"] = np.concatenate(
        [np.ones(len(particle_A), np.int8), np.zeros(len(film_A), np.int8)]
    )

    first = particles[0]
    kinds = [d.kind for d in first.defects]
    boundary = first.grain_boundary or {}
    info = {
        "seed": seed,
        "material": block["material"],
        "lattice": spec["lattice"],
        "elements": ",".join(spec["elements"]),
        "lattice_constant_A": spec["a_A"],
        # the first particle (the only one unless `particles.count` > 1)
        "radius_A": radii_A[0],
        "center_A": centers_A[0],
        "rotation_matrix": rotations[0].ravel(),  # row-major; lab = R @ crystal + centre
        "n_defects_drawn": drawn[0],
        "n_defects": len(first.defects),
        "defect_kinds": ",".join(kinds) if kinds else "none",
        "defect_normal": normals[0],  # crystal [111] (FCC) or c (wurtzite) in the lab
        "occupied_plane_range": np.array(first.occupied_planes),
        "grain_boundary": boundary.get("kind", "none"),
        "grain_boundary_plane_index": boundary.get("plane_index", 0),
        "grain_boundary_angle_rad": boundary.get("angle_rad", float("nan")) if boundary else 0.0,
        "grain_boundary_atoms_removed": boundary.get("n_removed", 0),
        "min_separation_planes": int(block["planar_defects"]["min_separation_planes"]),
        # every particle
        "n_particles": len(particles),
        "n_particles_requested": n_requested,
        "placement_attempts": attempts,
        "edge_margin_A": edge_margin_A,
        "embedding_fraction": embedding_fraction,
        "embedding_depth_A": embedding_fraction * radii_A[0],
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
    }
    if spec["lattice"] == "wurtzite":
        info.update({"c_A": spec["c_A"], "u": spec["u"]})
    if spec["lattice"] == "cif":
        info["cif"] = str(spec["cif"])
    if spec["shape"] == "layered":
        info["shape"] = "layered"
        info["layers_100_110_111"] = first.extra["layers_100_110_111"]
        info["added_atoms"] = first.extra["added_atoms"]
    if zone_axes:
        info["zone_axis"], info["zone_axis_tilt_deg"] = zone_axes[0]
    # one scalar key per particle and per defect of the first (extxyz cannot hold ragged lists)
    for k, (particle, radius_A, center_A) in enumerate(zip(particles, radii_A, centers_A), start=1):
        info[f"particle{k}_radius_A"] = radius_A
        info[f"particle{k}_center_A"] = center_A
        info[f"particle{k}_n_defects"] = len(particle.defects)
        info[f"particle{k}_grain_boundary"] = (particle.grain_boundary or {}).get("kind", "none")
    for k, defect in enumerate(first.defects, start=1):
        info[f"defect{k}_kind"] = defect.kind
        info[f"defect{k}_plane_index"] = defect.plane_index
        info[f"defect{k}_offset_A"] = defect.offset_A  # plane's signed distance from the centre
    atoms.info.update(info)
    return atoms
