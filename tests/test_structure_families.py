"""Structure families and samplers: size mixtures, orientations, positions, grain boundaries,
wurtzite CdSe with I1 stacking faults, several particles per scene."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from scipy import stats
from scipy.spatial import cKDTree

from conftest import build_validated
from hrtem_wf.config import validate_block
from hrtem_wf.sampling import random_rotation, sample
from hrtem_wf.structures.particle import NORMAL_111, build_grain_boundary_particle
from hrtem_wf.structures.scene import _one_particle, particle_spec, place_particles
from hrtem_wf.structures.wurtzite import (
    SITES,
    _site_index,
    build_wurtzite_particle,
    max_faults_for_radius,
    wurtzite_lattice,
)

CDSE = {
    "count": 2,
    "material": "CdSe",
    "lattice": "wurtzite",
    "elements": ["Cd", "Se"],
    "lattice_constant_A": 4.39,
    "c_A": 7.17,
    "radius_A": {"distribution": "normal", "mean": 17.5, "sd": 30.0, "min": 10.0, "max": 25.0},
    "particles": {
        "count": {"distribution": "choice", "values": [1, 2, 3, 4, 5]},
        "min_separation_A": 10.0,
        "max_attempts": 50,
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
    "substrate": {
        "material": "amorphous_carbon",
        "thickness_A": 20.0,
        "density_per_A3": 0.1103,
        "min_distance_A": 1.4,
    },
    "vacuum_A": 2.0,
}

AU_GB = {
    "count": 2,
    "material": "Au",
    "lattice_constant_A": 4.07825,
    "radius_A": 12.0,
    "planar_defects": {
        "max_count": 3,
        "kinds": ["twin", "stacking_fault"],
        "min_separation_planes": 3,
    },
    "grain_boundaries": {"fraction": 0.25, "kinds": ["rotation_about_111", "random_rotation"]},
    "cell_A": [40.0, 40.0],
    "edge_margin_A": 5.0,
    "embedding_fraction": 0.2,
    "substrate": {
        "material": "amorphous_carbon",
        "thickness_A": 10.0,
        "density_per_A3": 0.1103,
        "min_distance_A": 1.4,
    },
    "vacuum_A": 2.0,
}


# --- samplers ---------------------------------------------------------------------------------


def test_mixture_of_size_groups():
    """Smaller NPs (SI 1.6): two groups, N(10, 2.5) in [7.5, 12.5] and N(25, 7.5) in [15, 35] A."""
    spec = {
        "distribution": "mixture",
        "weights": [1, 1],
        "components": [
            {"distribution": "normal", "mean": 10.0, "sd": 2.5, "min": 7.5, "max": 12.5},
            {"distribution": "normal", "mean": 25.0, "sd": 7.5, "min": 15.0, "max": 35.0},
        ],
    }
    rng = np.random.default_rng(0)
    radii = np.array([sample(spec, rng) for _ in range(4000)])
    small, large = radii[radii < 14], radii[radii >= 14]
    assert len(small) / len(radii) == pytest.approx(0.5, abs=0.03)
    assert small.min() >= 7.5 and small.max() <= 12.5 and large.min() >= 15 and large.max() <= 35
    assert small.mean() == pytest.approx(10.0, abs=0.15)
    assert large.mean() == pytest.approx(25.0, abs=0.5)


def test_orientations_are_uniform_on_so3():
    """Any fixed crystal axis ends up uniform on the sphere: cos(polar) ~ U(-1, 1), azimuth
    ~ U(0, 2 pi), for the beam axis and for the in-plane angle alike."""
    rng = np.random.default_rng(1)
    axes = np.array([random_rotation(rng) @ NORMAL_111 for _ in range(3000)])
    assert stats.kstest(axes[:, 2], stats.uniform(-1, 2).cdf).pvalue > 0.01
    azimuth = np.arctan2(axes[:, 1], axes[:, 0])
    assert stats.kstest(azimuth, stats.uniform(-np.pi, 2 * np.pi).cdf).pvalue > 0.01
    # the rotation about the beam is random too (the original code left it fixed)
    x_axes = np.array([random_rotation(rng)[:, 0] for _ in range(3000)])
    in_plane = np.arctan2(x_axes[:, 1], x_axes[:, 0])
    assert stats.kstest(in_plane, stats.uniform(-np.pi, 2 * np.pi).cdf).pvalue > 0.01


def test_positions_have_no_quadrant_bias():
    rng = np.random.default_rng(2)
    cell, margin, radius = (128.0, 128.0), 10.0, 25.0
    centres = np.array(
        [place_particles([radius], cell, margin, 10.0, 10, rng)[0][0] for _ in range(4000)]
    )
    low, high = radius + margin, cell[0] - radius - margin
    assert centres.min() >= low and centres.max() <= high
    quadrant = (centres[:, 0] > 64).astype(int) * 2 + (centres[:, 1] > 64)
    counts = np.bincount(quadrant, minlength=4)
    assert stats.chisquare(counts).pvalue > 0.01
    assert stats.kstest(centres[:, 0], stats.uniform(low, high - low).cdf).pvalue > 0.01


def test_several_particles_keep_their_distances():
    rng = np.random.default_rng(3)
    for _ in range(200):
        radii = [float(r) for r in rng.uniform(10, 25, 5)]
        centres, attempts = place_particles(radii, (128.0, 128.0), 10.0, 10.0, 50, rng)
        assert 1 <= len(centres) <= 5 and attempts >= len(centres)
        for i in range(len(centres)):
            assert all(
                10.0 + radii[i] - 1e-9 <= c <= 128.0 - 10.0 - radii[i] + 1e-9 for c in centres[i]
            )
            for j in range(i):
                gap = np.linalg.norm(centres[i] - centres[j]) - radii[i] - radii[j]
                assert gap >= 10.0


def test_a_crowded_cell_stops_after_max_attempts():
    radii = [20.0] * 10
    centres, attempts = place_particles(radii, (80.0, 80.0), 0.0, 5.0, 20, np.random.default_rng(0))
    assert len(centres) < 10
    assert attempts <= 20 * (len(centres) + 1)


# --- Au grain boundaries ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rotation_about_111", "random_rotation"])
def test_grain_boundary_particle(kind):
    particle = build_grain_boundary_particle(
        "Au", 4.07825, 20.0, kind, 3, 2.0, np.random.default_rng(4)
    )
    boundary = particle.grain_boundary
    assert boundary["kind"] == kind
    low, high = particle.occupied_planes
    assert low + 3 <= boundary["plane_index"] <= high - 3
    positions = particle.positions_A
    assert np.linalg.norm(positions, axis=1).max() <= 20.0 + 1e-9
    nearest, _ = cKDTree(positions).query(positions, k=2)
    assert nearest[:, 1].min() >= 2.0 - 1e-9  # no overlapping atoms at the boundary
    # the upper grain is the perfect crystal: its atoms sit on the FCC lattice
    upper = positions[positions @ NORMAL_111 >= boundary["offset_A"]]
    assert np.abs(((upper / (4.07825 / 2)) + 0.5) % 1 - 0.5).max() < 1e-6
    lower = positions[positions @ NORMAL_111 < boundary["offset_A"]]
    off_lattice = np.abs(((lower / (4.07825 / 2)) + 0.5) % 1 - 0.5).max(axis=1) > 1e-3
    assert off_lattice.mean() > 0.5  # the lower grain is rotated away from it
    if kind == "rotation_about_111":
        # a rotation about [111] keeps the (111) plane spacing of the lower grain
        d111 = 4.07825 / np.sqrt(3)
        heights = (lower @ NORMAL_111 - boundary["offset_A"]) / d111
        assert np.allclose(heights, np.round(heights), atol=1e-6)
    # densities close to bulk FCC: atoms removed at the boundary are a few percent
    expected = 4 / 3 * np.pi * 20.0**3 * 4 / 4.07825**3
    assert len(positions) == pytest.approx(expected, rel=0.08)


def test_grain_boundary_fraction_follows_the_config():
    spec = particle_spec(validate_block("structures", AU_GB))
    rng = np.random.default_rng(5)
    kinds = []
    for _ in range(400):
        particle, _, _ = _one_particle(validate_block("structures", AU_GB), spec, 8.0, rng)
        kinds.append("none" if particle.grain_boundary is None else particle.grain_boundary["kind"])
    kinds = np.array(kinds)
    assert (kinds != "none").mean() == pytest.approx(0.25, abs=0.05)
    assert (kinds == "rotation_about_111").sum() == pytest.approx(
        (kinds == "random_rotation").sum(), rel=0.35
    )


def test_grain_boundary_scene_records_the_boundary():
    block = copy.deepcopy(AU_GB)
    block["grain_boundaries"]["fraction"] = 1.0
    atoms = build_validated(block, 9)
    assert atoms.info["grain_boundary"] in ("rotation_about_111", "random_rotation")
    assert atoms.info["n_defects"] == 0 and atoms.info["particle1_grain_boundary"] != "none"


# --- CdSe wurtzite ----------------------------------------------------------------------------


def _stacking(particle):
    lattice = wurtzite_lattice(4.39, 7.17)[:2, :2]
    cations = particle.positions_A[particle.numbers == 48]
    layers = np.rint(cations[:, 2] / (7.17 / 2)).astype(int)
    sequence = []
    for j in range(layers.min(), layers.max() + 1):
        fractional = cations[layers == j][:, :2] @ np.linalg.inv(lattice)
        sites = {_site_index(f) for f in fractional}
        assert len(sites) == 1, f"layer {j} mixes sites {sites}"
        sequence.append("ABC"[sites.pop()])
    return "".join(sequence), int(layers.min())


def test_wurtzite_lattice_and_bonds():
    particle = build_wurtzite_particle(
        ["Cd", "Se"], 4.39, 7.17, 0.375, 15.0, 0, 4, np.random.default_rng(0)
    )
    cd = particle.positions_A[particle.numbers == 48]
    nearest, _ = cKDTree(cd).query(cd, k=2)
    assert nearest[:, 1].min() == pytest.approx(4.39, abs=1e-6)  # a, in the basal plane
    everything, _ = cKDTree(particle.positions_A).query(particle.positions_A, k=2)
    assert everything[:, 1].min() == pytest.approx(0.375 * 7.17, abs=1e-3)  # Cd-Se bond along c
    sequence, _ = _stacking(particle)
    assert set(sequence[::2]) == {sequence[0]} and set(sequence[1::2]) == {sequence[1]}
    # stoichiometric up to the surface (a 1.5 nm sphere has ~40 % of its atoms there)
    assert (particle.numbers == 48).sum() == pytest.approx((particle.numbers == 34).sum(), rel=0.15)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_wurtzite_faults_are_type_i1_and_separated(seed):
    particle = build_wurtzite_particle(
        ["Cd", "Se"], 4.39, 7.17, 0.375, 25.0, 2, 4, np.random.default_rng(seed)
    )
    sequence, first_layer = _stacking(particle)
    planes = [d.plane_index for d in particle.defects]
    assert len(planes) == 2 and planes[1] - planes[0] >= 4
    low, high = particle.occupied_planes
    assert planes[0] - low >= 4 and high - planes[-1] >= 4
    for j in range(2, len(sequence)):
        x, y, z = sequence[j - 2], sequence[j - 1], sequence[j]
        if j + first_layer in planes:  # ...XY|ZX...: a new site, then back to X
            assert z not in (x, y) and sequence[j + 1] == x
        else:
            assert z == x or (j - 1 + first_layer) in planes
    nearest, _ = cKDTree(particle.positions_A).query(particle.positions_A, k=2)
    assert nearest[:, 1].min() >= 0.375 * 7.17 - 1e-3  # no overlaps across the faults
    assert np.linalg.norm(particle.positions_A, axis=1).max() <= 25.0 + 1e-9


def test_cdse_fault_count_depends_on_radius():
    rules = CDSE["planar_defects"]["max_count_by_radius"]
    assert max_faults_for_radius(24.0, rules, 2) == 2
    assert max_faults_for_radius(20.0, rules, 2) == 1
    assert max_faults_for_radius(14.0, rules, 2) == 0
    spec = particle_spec(validate_block("structures", CDSE))
    rng = np.random.default_rng(6)
    for radius, cap in [(12.0, 0), (18.0, 1), (24.0, 2)]:
        counts = [
            len(_one_particle(validate_block("structures", CDSE), spec, radius, rng)[0].defects)
            for _ in range(30)
        ]
        assert max(counts) == cap


def test_cdse_scene_with_several_particles():
    atoms = build_validated(CDSE, 11)
    info = atoms.info
    n = info["n_particles"]
    assert 1 <= n <= info["n_particles_requested"] <= 5 and info["placement_attempts"] >= n
    assert set(atoms[atoms.arrays["particle"] == 1].get_chemical_symbols()) == {"Cd", "Se"}
    centres = np.array([info[f"particle{k}_center_A"] for k in range(1, n + 1)])
    radii = np.array([info[f"particle{k}_radius_A"] for k in range(1, n + 1)])
    assert radii.min() >= 10.0 and radii.max() <= 25.0
    for i in range(n):
        for j in range(i):
            assert np.linalg.norm(centres[i, :2] - centres[j, :2]) - radii[i] - radii[j] >= 10.0
    assert info["lattice"] == "wurtzite" and info["elements"] == "Cd,Se"
    # several particles per scene across seeds, as the block asks
    counts = [build_validated(CDSE, seed).info["n_particles"] for seed in (1, 2, 3, 4)]
    assert max(counts) > 1


def test_structure_samplers_are_deterministic_and_seeded():
    a, b = build_validated(CDSE, 5), build_validated(CDSE, 5)
    assert np.array_equal(a.positions, b.positions) and a.info["radius_A"] == b.info["radius_A"]
    assert not np.array_equal(build_validated(CDSE, 6).positions[:20], a.positions[:20])


def test_sites_table_is_the_triangular_lattice():
    # A -> B -> C -> A is one in-plane translation: the I1 shift is always a lattice site step
    step = (SITES[1] - SITES[0]) % 1
    assert np.allclose((SITES[2] - SITES[1]) % 1, step) and np.allclose(
        (SITES[0] - SITES[2]) % 1, step
    )


# --- crystals from a CIF ----------------------------------------------------------------------


def test_cif_particle_equals_the_wurtzite_builder():
    """config/materials/CdSe_wurtzite.cif (P6_3mc, a 4.39, c 7.17) through pymatgen gives the
    same crystal as the wurtzite builder (up to a mirror: the CIF's setting may stack the
    other way round): the same atoms at the same distances from the centre Cd site."""
    from conftest import ROOT
    from hrtem_wf.structures.cif import build_cif_particle, elements_of

    path = str(ROOT / "config/materials/CdSe_wurtzite.cif")
    assert elements_of(path) == ["Cd", "Se"]
    cif = build_cif_particle(path, 14.0)
    ours = build_wurtzite_particle(
        ["Cd", "Se"], 4.39, 7.17, 0.375, 14.0, 0, 4, np.random.default_rng(0)
    )
    assert len(cif.positions_A) == len(ours.positions_A)
    assert sorted(cif.numbers) == sorted(ours.numbers)
    for z in (48, 34):
        radial_cif = np.sort(np.linalg.norm(cif.positions_A[cif.numbers == z], axis=1))
        radial_ours = np.sort(np.linalg.norm(ours.positions_A[ours.numbers == z], axis=1))
        assert np.allclose(radial_cif, radial_ours, atol=1e-6)
    nearest_cif, _ = cKDTree(cif.positions_A).query(cif.positions_A, k=5)
    nearest_ours, _ = cKDTree(ours.positions_A).query(ours.positions_A, k=5)
    assert np.allclose(
        np.sort(nearest_cif[:, 1:].ravel()), np.sort(nearest_ours[:, 1:].ravel()), atol=1e-6
    )


def test_cif_scene(tmp_path):
    from conftest import ROOT

    block = {
        **CDSE,
        "lattice": "cif",
        "cif": str(ROOT / "config/materials/CdSe_wurtzite.cif"),
        "planar_defects": {"max_count": 0, "kinds": ["stacking_fault"], "min_separation_planes": 4},
    }
    for key in ("elements", "lattice_constant_A", "c_A"):
        block.pop(key)
    atoms = build_validated(block, 3)
    assert set(atoms[atoms.arrays["particle"] == 1].get_chemical_symbols()) == {"Cd", "Se"}
    assert atoms.info["elements"] == "Cd,Se" and atoms.info["cif"].endswith(".cif")
    with pytest.raises(ValueError, match="no planar defects"):
        build_validated({**block, "planar_defects": CDSE["planar_defects"]}, 3)


# --- Madsen-style faceted particles on a zone axis ---------------------------------------------

LAYERED = {
    **AU_GB,
    "shape": "layered",
    "grain_boundaries": {"fraction": 0.0},
    "layered": {
        "layers": {"distribution": "uniform", "low": 3, "high": 6},
        "added_atoms": {"distribution": "uniform", "low": 5, "high": 20},
        "temperature": 0.5,
    },
    "zone_axis": {"axes": ["110", "111"], "tilt_max_deg": 5.0},
}
LAYERED.pop("radius_A")


def test_roughening_prefers_highly_coordinated_sites():
    from ase.cluster import FaceCenteredCubic

    from hrtem_wf.structures.layered import roughen

    cluster = FaceCenteredCubic(
        "Au", [(1, 0, 0), (1, 1, 0), (1, 1, 1)], [3, 3, 3], latticeconstant=4.07825
    )
    base = cluster.get_positions()
    rough = roughen(base, 4.07825, 20, 0.5, np.random.default_rng(0))
    assert len(rough) == len(base) + 20
    added = rough[cKDTree(base).query(rough)[0] > 1e-6]
    bond = 4.07825 / np.sqrt(2)
    neighbours = cKDTree(rough).query_ball_point(added, bond * 1.05)
    coordination = np.array([len(n) - 1 for n in neighbours])
    assert coordination.min() >= 1 and coordination.mean() >= 4  # hollow sites, not adatoms on tops
    assert cKDTree(rough).query(rough, k=2)[0][:, 1].min() == pytest.approx(bond, abs=1e-6)


def test_layered_particles_on_zone_axis():
    atoms = build_validated(LAYERED, 4)
    info = atoms.info
    assert info["shape"] == "layered" and info["zone_axis"] in ("<110>", "<111>")
    assert 0.0 <= info["zone_axis_tilt_deg"] <= 5.0
    assert all(3 <= n <= 6 for n in info["layers_100_110_111"]) and 5 <= info["added_atoms"] <= 20
    # the zone axis is within the tilt of the beam direction
    rotation = info["rotation_matrix"].reshape(3, 3)
    axis = {"<110>": np.array([1, 1, 0]) / np.sqrt(2), "<111>": np.ones(3) / np.sqrt(3)}[
        info["zone_axis"]
    ]
    angle = np.degrees(np.arccos(abs(rotation @ axis)[2]))
    assert angle == pytest.approx(info["zone_axis_tilt_deg"], abs=1e-6)
    gold = atoms.positions[atoms.arrays["particle"] == 1]
    assert np.linalg.norm(gold - info["center_A"], axis=1).max() == pytest.approx(
        info["radius_A"], abs=1e-6
    )


# --- MoS2 flakes, alone or on graphene (Larsen et al. 2023) ------------------------------------

FLAKE = {
    "count": 2,
    "family": "flake",
    "material": "MoS2",
    "flake": {
        "lattice_constant_A": 3.19,
        "thickness_A": 3.19,
        "radius_A": {"distribution": "uniform", "low": 15.0, "high": 25.0},
        "vacancy_fraction": 0.05,
        "hole_fraction": 0.05,
        "hole_radius_A": {"distribution": "uniform", "low": 3.0, "high": 6.0},
        "tilt_max_deg": 10.0,
    },
    "support": {
        "material": "graphene",
        "distance_A": {"distribution": "uniform", "low": 3.3, "high": 7.0},
        "twist_deg": {"distribution": "choice", "values": [0, 15, 30]},
    },
    "cell_A": [64.0, 64.0],
    "edge_margin_A": 5.0,
    "vacuum_A": 2.0,
}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_mos2_flake_on_graphene(seed):
    atoms = build_validated(FLAKE, seed)
    info = atoms.info
    flake = atoms[atoms.arrays["particle"] == 1]
    support = atoms[atoms.arrays["particle"] == 0]
    assert set(flake.get_chemical_symbols()) == {"Mo", "S"} and set(
        support.get_chemical_symbols()
    ) == {"C"}
    # graphene: periodic honeycomb, every atom with 3 neighbours at 1.42 A
    box = np.array([atoms.cell[0, 0], atoms.cell[1, 1], 1000.0])
    distance, _ = cKDTree(support.positions % box, boxsize=box).query(support.positions % box, k=4)
    assert np.allclose(distance[:, 1:], 2.46 / np.sqrt(3), atol=1e-6)
    # the flake sits distance_A above the sheet, tilted at most 10 degrees, twist from the list
    gap = flake.positions[:, 2].min() - support.positions[:, 2].max()
    assert gap == pytest.approx(info["support_distance_A"], abs=1e-9) and 3.3 <= gap <= 7.0
    assert 0 <= info["tilt_deg"] <= 10 and info["twist_deg"] in (0, 15, 30)
    # vacancies and holes: about 5 % each of the intact flake
    assert info["n_vacancies"] == round(0.05 * info["n_flake_atoms_intact"])
    assert info["n_hole_atoms"] >= 0.05 * info["n_flake_atoms_intact"]
    assert len(flake) <= info["n_flake_atoms_intact"] - info["n_hole_atoms"]
    # clear of the cell edges
    xy = flake.positions[:, :2]
    assert (
        xy.min() >= 5.0 - 1e-6
        and (atoms.cell.array.diagonal()[:2] - xy.max(axis=0)).min() >= 5.0 - 1e-6
    )


def test_mos2_flake_alone_and_stoichiometry():
    block = {
        **FLAKE,
        "support": {"material": "none"},
        "flake": {
            **FLAKE["flake"],
            "vacancy_fraction": 0.0,
            "hole_fraction": 0.0,
            "tilt_max_deg": 0.0,
        },
    }
    atoms = build_validated(block, 4)
    assert (atoms.arrays["particle"] == 1).all()
    symbols = np.array(atoms.get_chemical_symbols())
    assert (symbols == "S").sum() == pytest.approx(2 * (symbols == "Mo").sum(), rel=0.1)
    mo = atoms.positions[symbols == "Mo"]
    assert cKDTree(mo).query(mo, k=2)[0][:, 1].min() == pytest.approx(3.19, abs=1e-6)
    assert np.ptp(mo[:, 2]) < 1e-6  # untilted: the Mo layer is flat
    # the flake area matches its radius: 3 atoms per sqrt(3)/2 a^2
    expected = np.pi * atoms.info["radius_A"] ** 2 / (np.sqrt(3) / 2 * 3.19**2) * 3
    assert len(atoms) == pytest.approx(expected, rel=0.1)


def test_flake_block_errors():
    with pytest.raises(ValueError, match="2H"):
        build_validated({**FLAKE, "material": "Graphite"}, 1)
    with pytest.raises(ValueError, match="distance_A"):
        build_validated({**FLAKE, "support": {"material": "graphene"}}, 1)
