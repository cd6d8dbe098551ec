"""Tests for hrtem_wf.structures: FCC particle + planar defects on periodic amorphous carbon."""

from __future__ import annotations

import copy

import ase.io
import numpy as np
import pytest
from ase.geometry import get_distances
from ase.neighborlist import neighbor_list

from conftest import build_validated
from hrtem_wf.config import validate_block
from hrtem_wf.structures.particle import (
    NORMAL_111,
    PlanarDefect,
    build_particle,
    choose_defect_planes,
    d111_A,
    defected_volume,
    fcc_generator,
    max_defects_that_fit,
)
from hrtem_wf.structures.substrate import random_film, too_close_pairs

A_AU = 4.07825

# A small scene: 40 A cell, ~9 A particles, 15 A film (about 0.5 s each).
BLOCK = {
    "count": 4,
    "material": "Au",
    "lattice_constant_A": A_AU,
    "radius_A": {"distribution": "normal", "mean": 9.0, "sd": 1.0, "min": 8.0, "max": 10.0},
    "planar_defects": {
        "max_count": 2,
        "kinds": ["twin", "stacking_fault"],
        "min_separation_planes": 3,
    },
    "cell_A": [40.0, 40.0],
    "edge_margin_A": 5.0,
    "embedding_fraction": 0.2,
    "substrate": {
        "material": "amorphous_carbon",
        "thickness_A": {"distribution": "fixed", "value": 15.0},
        "density_per_A3": 0.1103,
        "min_distance_A": 1.4,
    },
    "vacuum_A": 2.0,
}
SEEDS = [1, 2, 3, 12, 5]  # seed 12 draws no defect


@pytest.fixture(scope="module")
def scenes():
    return {seed: build_validated(BLOCK, seed) for seed in SEEDS}


def split(atoms):
    particle = atoms.arrays["particle"].astype(bool)
    return atoms.positions[particle], atoms.positions[~particle]


def on_fcc_lattice(crystal_positions_A, a=A_AU, tol_A=1e-6):
    """True where a crystal-frame position is an FCC lattice site of the origin-centred lattice."""
    half_cells = crystal_positions_A / (a / 2)
    nearest = np.rint(half_cells)
    return (np.abs(half_cells - nearest).max(axis=1) < tol_A) & (nearest.sum(axis=1) % 2 == 0)


# --- composition and geometry -------------------------------------------------------------


def test_composition_and_particle_flag(scenes):
    for atoms in scenes.values():
        symbols = set(atoms.get_chemical_symbols())
        assert symbols == {"Au", "C"}
        flag = atoms.arrays["particle"]
        assert flag.dtype == np.int8
        np.testing.assert_array_equal(flag == 1, atoms.numbers == 79)
        n_au = int((atoms.numbers == 79).sum())
        assert n_au == atoms.info["n_particle_atoms"]
        assert int((atoms.numbers == 6).sum()) == atoms.info["n_substrate_atoms"]
        radius = atoms.info["radius_A"]
        expected = 4.0 / 3.0 * np.pi * radius**3 * 4.0 / A_AU**3  # sphere volume x FCC density
        assert abs(n_au - expected) / expected < 0.15


def test_particle_inside_its_sphere_and_radius_in_bounds(scenes):
    radii = []
    for atoms in scenes.values():
        gold, _ = split(atoms)
        radius = atoms.info["radius_A"]
        distance = np.linalg.norm(gold - atoms.info["center_A"], axis=1)
        assert distance.max() <= radius + 1e-6
        assert distance.max() > radius - A_AU  # the sphere is filled out to its surface
        radii.append(radius)
    assert all(8.0 <= r <= 10.0 for r in radii)
    assert len(set(radii)) == len(radii)  # drawn, not fixed


def test_cell_and_embedding(scenes):
    for atoms in scenes.values():
        info = atoms.info
        gold, carbon = split(atoms)
        radius, vacuum, thickness = (
            info["radius_A"],
            info["vacuum_A"],
            info["substrate_thickness_A"],
        )
        top = vacuum + thickness
        assert info["substrate_top_z_A"] == pytest.approx(top)
        assert info["center_A"][2] == pytest.approx(top + radius - 0.2 * radius)
        # the particle rests on the film, sunk 0.2 R into it
        assert gold[:, 2].min() == pytest.approx(top - 0.2 * radius, abs=1.5)
        assert carbon[:, 2].min() >= vacuum - 1e-9
        assert carbon[:, 2].max() <= top + 1e-9
        assert carbon[:, 2].max() > top - 0.5
        # orthorhombic cell, vacuum above the particle top, periodic laterally only
        np.testing.assert_allclose(atoms.cell.array, np.diag(atoms.cell.lengths()))
        assert atoms.cell.lengths()[2] == pytest.approx(info["center_A"][2] + radius + vacuum)
        assert list(atoms.pbc) == [True, True, False]
        assert atoms.positions[:, 2].max() <= atoms.cell.lengths()[2] - vacuum + 1e-9


def test_particle_clear_of_cell_edges(scenes):
    margin = BLOCK["edge_margin_A"]
    centers = []
    for atoms in scenes.values():
        gold, _ = split(atoms)
        center, radius = atoms.info["center_A"], atoms.info["radius_A"]
        for axis in range(2):
            length = atoms.cell.lengths()[axis]
            assert center[axis] - radius >= margin - 1e-9
            assert center[axis] + radius <= length - margin + 1e-9
            assert gold[:, axis].min() >= margin - 1e-9
            assert gold[:, axis].max() <= length - margin + 1e-9
        centers.append(center[:2])
    assert len({tuple(np.round(c, 6)) for c in centers}) == len(centers)


def test_orientation_is_recorded_and_random(scenes):
    normals = []
    for atoms in scenes.values():
        rotation = np.asarray(atoms.info["rotation_matrix"]).reshape(3, 3)
        np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(rotation) == pytest.approx(1.0)
        gold, _ = split(atoms)
        crystal = (gold - atoms.info["center_A"]) @ rotation  # R^T (x - c), row-wise
        if atoms.info["n_defects"] == 0:
            assert on_fcc_lattice(crystal, tol_A=1e-5).all()
        else:  # the crystal above the topmost defect is the untouched lattice
            planes = np.rint(crystal @ NORMAL_111 / d111_A(A_AU))
            top = max(
                atoms.info[f"defect{k}_plane_index"] for k in range(1, atoms.info["n_defects"] + 1)
            )
            assert on_fcc_lattice(crystal[planes > top], tol_A=1e-5).all()
        np.testing.assert_allclose(atoms.info["defect_normal"], rotation @ NORMAL_111)
        normals.append(atoms.info["defect_normal"])
    # different seeds, different orientations
    assert np.ptp(np.array(normals), axis=0).max() > 0.1


# --- substrate ----------------------------------------------------------------------------


def test_substrate_density_away_from_particle(scenes):
    for atoms in scenes.values():
        info = atoms.info
        _, carbon = split(atoms)
        length_x, length_y = atoms.cell.lengths()[:2]
        thickness = info["substrate_thickness_A"]
        # every atom czone placed is either kept or counted as removed for the particle
        assert info["n_substrate_atoms"] + info["n_substrate_removed"] == round(
            length_x * length_y * thickness * 0.1103
        )
        # density in the film outside a cylinder around the particle (lateral minimum image)
        exclusion = info["radius_A"] + info["particle_clearance_A"] + 1.0
        delta = carbon[:, :2] - info["center_A"][:2]
        delta -= np.array([length_x, length_y]) * np.rint(delta / [length_x, length_y])
        outside = np.hypot(delta[:, 0], delta[:, 1]) > exclusion
        volume = (length_x * length_y - np.pi * exclusion**2) * thickness
        assert outside.sum() / volume == pytest.approx(0.1103, rel=0.05)


def test_carbon_min_distance_holds_across_periodic_boundary(scenes):
    for atoms in scenes.values():
        carbon = atoms[atoms.numbers == 6]
        assert list(carbon.pbc) == [True, True, False]
        # ASE's neighbour list uses the minimum image in x and y
        distances = neighbor_list("d", carbon, 1.4 - 1e-6)
        assert len(distances) == 0


def test_no_carbon_overlaps_gold(scenes):
    for atoms in scenes.values():
        gold, carbon = split(atoms)
        _, distances = get_distances(gold, carbon, cell=atoms.cell, pbc=atoms.pbc)
        assert distances.min() >= atoms.info["particle_clearance_A"] - 1e-9
        assert atoms.info["particle_clearance_A"] >= 1.4
        inside = np.linalg.norm(carbon - atoms.info["center_A"], axis=1) < atoms.info["radius_A"]
        assert not inside.any()
        assert atoms.info["n_substrate_removed"] > 0


def test_too_close_pairs_sees_across_the_periodic_boundary():
    box = np.array([10.0, 10.0, 5.0])
    positions = np.array(
        [
            [0.1, 5.0, 2.0],
            [9.8, 5.0, 2.0],  # 0.3 A apart through x = 0
            [5.0, 0.2, 2.0],
            [5.0, 9.9, 2.2],  # close through y = 0
            [5.0, 5.0, 2.0],
        ]
    )
    assert len(too_close_pairs(positions, box, 1.4)) == 2


@pytest.mark.parametrize("size_A", [(51.2, 51.2, 30.0), (20.3, 17.9, 12.0), (128.0, 128.0, 50.0)])
def test_random_film_density_and_min_distance_exact(size_A):
    """Exactly round(density x volume) atoms, inside the box, no pair closer than min distance
    even through the periodic x/y boundary (box widths not multiples of min distance too)."""
    box = np.array(size_A)
    film = random_film(box, 0.1103, 1.4, np.random.default_rng(3))
    assert len(film) == round(0.1103 * box.prod())
    assert ((film >= 0) & (film < box)).all()
    assert len(too_close_pairs(film, box, 1.4)) == 0
    # homogeneous: the density of each half of the film is within 2 % (large films)
    if box.prod() > 1e5:
        for axis in range(3):
            lower = (film[:, axis] < box[axis] / 2).mean()
            assert abs(lower - 0.5) < 0.01


def test_random_film_is_a_function_of_the_seed():
    a = random_film((30.0, 30.0, 10.0), 0.1103, 1.4, np.random.default_rng(1))
    b = random_film((30.0, 30.0, 10.0), 0.1103, 1.4, np.random.default_rng(1))
    c = random_film((30.0, 30.0, 10.0), 0.1103, 1.4, np.random.default_rng(2))
    assert np.array_equal(a, b) and not np.array_equal(a[:10], c[:10])


def test_random_film_too_dense_is_a_clear_error():
    with pytest.raises(RuntimeError, match="too high"):
        random_film((10.0, 10.0, 5.0), 0.6, 1.4, np.random.default_rng(0))


# --- planar defects -----------------------------------------------------------------------


def test_defect_counts_kinds_and_separations():
    rng = np.random.default_rng(7)
    counts, kinds_seen = [], set()
    for _ in range(30):
        n_drawn = int(rng.integers(0, 3))
        # >= 12 A: room for two defects 3 planes apart and from both edges (11 planes)
        particle = build_particle(
            "Au", A_AU, float(rng.uniform(12.0, 14.0)), n_drawn, ["twin", "stacking_fault"], 3, rng
        )
        low, high = particle.occupied_planes
        planes = [d.plane_index for d in particle.defects]
        assert len(planes) <= n_drawn
        assert planes == sorted(planes)
        assert all(j - low >= 3 and high - j >= 3 for j in planes)
        assert all(b - a >= 3 for a, b in zip(planes, planes[1:]))
        for defect in particle.defects:
            assert defect.offset_A == pytest.approx(defect.plane_index * d111_A(A_AU))
        counts.append(len(planes))
        kinds_seen |= {d.kind for d in particle.defects}
    assert set(counts) == {0, 1, 2}
    assert kinds_seen == {"twin", "stacking_fault"}


def test_small_particles_hold_fewer_defects():
    # R = 9 A: (111) planes -3..3, only the central one is 3 planes from both edges
    particle = build_particle("Au", A_AU, 9.0, 2, ["twin"], 3, np.random.default_rng(0))
    assert particle.occupied_planes == (-3, 3)
    assert particle.n_defects_drawn == 2
    assert [d.plane_index for d in particle.defects] == [0]


def test_scene_defect_info(scenes):
    for atoms in scenes.values():
        info = atoms.info
        assert 0 <= info["n_defects"] <= info["n_defects_drawn"] <= 2
        kinds = [info[f"defect{k}_kind"] for k in range(1, info["n_defects"] + 1)]
        assert info["defect_kinds"] == (",".join(kinds) if kinds else "none")
        assert set(kinds) <= {"twin", "stacking_fault"}
        assert f"defect{info['n_defects'] + 1}_kind" not in info


def test_defect_plane_choice_is_uniform_and_respects_gaps():
    rng = np.random.default_rng(0)
    occupied = (-6, 6)  # 13 planes: candidates -3..3
    assert max_defects_that_fit(occupied, 3) == 3
    assert max_defects_that_fit((-2, 2), 3) == 0
    draws = [tuple(choose_defect_planes(occupied, 2, 3, rng)) for _ in range(3000)]
    allowed = {(a, b) for a in range(-3, 4) for b in range(-3, 4) if b - a >= 3}
    assert set(draws) == allowed
    frequency = np.array([draws.count(pair) for pair in sorted(allowed)]) / len(draws)
    np.testing.assert_allclose(frequency, 1.0 / len(allowed), atol=0.03)
    assert choose_defect_planes(occupied, 3, 3, rng) == [-3, 0, 3]
    with pytest.raises(ValueError):
        choose_defect_planes(occupied, 4, 3, rng)


def stacking_letters(crystal_positions_A, a=A_AU):
    """A/B/C registry of every (111) layer, bottom to top, from one atom per layer."""
    spacing = d111_A(a)
    layer = np.rint(crystal_positions_A @ NORMAL_111 / spacing).astype(int)
    shift = a / 6 * np.array([1.0, 1.0, -2.0])  # one layer's lateral offset
    in_plane_cell = a / 2 * np.array([[1.0, -1.0, 0.0], [0.0, 1.0, -1.0]]).T
    letters = []
    for j in range(layer.min(), layer.max() + 1):
        atom = crystal_positions_A[layer == j][0]
        lateral = atom - (atom @ NORMAL_111) * NORMAL_111
        for index, letter in enumerate("ABC"):
            coeffs, *_ = np.linalg.lstsq(in_plane_cell, lateral - index * shift, rcond=None)
            if np.allclose(in_plane_cell @ np.rint(coeffs), lateral - index * shift, atol=1e-6):
                letters.append(letter)
                break
    return "".join(letters)


@pytest.mark.parametrize(
    "kinds, hcp_layers",
    [
        (["twin"], 1),
        (["stacking_fault"], 2),
        (["twin", "stacking_fault"], 3),
        (["stacking_fault", "twin"], 3),
        (["twin", "twin"], 2),
        (["stacking_fault", "stacking_fault"], 4),
    ],
)
def test_defects_are_coherent_twins_and_intrinsic_faults(kinds, hcp_layers):
    """A twin puts one layer in hcp stacking (ABC|B|AC..), an intrinsic fault two (ABC|BC|A..)."""
    generator = fcc_generator("Au", A_AU)
    defects = [PlanarDefect(kind, j, j * d111_A(A_AU)) for kind, j in zip(kinds, [3, 0])]
    volume = defected_volume(generator, 15.0, defects)
    volume.populate_atoms()
    positions = volume.atoms
    # no atoms pushed onto each other: nearest neighbours stay at a / sqrt(2)
    _, distances = get_distances(positions)
    np.fill_diagonal(distances, np.inf)
    assert distances.min() == pytest.approx(A_AU / np.sqrt(2), abs=1e-6)
    letters = stacking_letters(positions)
    assert len(letters) == 13
    assert all(x != y for x, y in zip(letters, letters[1:]))  # never A on A
    hcp = sum(letters[i - 1] == letters[i + 1] for i in range(1, len(letters) - 1))
    assert hcp == hcp_layers
    # above the top defect: the perfect lattice; below it: not (for a single defect)
    layer = np.rint(positions @ NORMAL_111 / d111_A(A_AU))
    assert on_fcc_lattice(positions[layer > 3]).all()
    if len(kinds) == 1:
        assert not on_fcc_lattice(positions[layer < 3]).all()


# --- reproducibility, file format, errors -------------------------------------------------


def test_deterministic_and_seed_dependent(scenes):
    again = build_validated(BLOCK, SEEDS[0])
    first = scenes[SEEDS[0]]
    np.testing.assert_array_equal(again.positions, first.positions)
    np.testing.assert_array_equal(again.numbers, first.numbers)
    assert again.info.keys() == first.info.keys()
    other = scenes[SEEDS[1]]
    assert len(other) != len(first) or not np.allclose(other.positions, first.positions)


def test_global_numpy_random_state_is_left_alone():
    np.random.seed(123)
    expected = np.random.random(3)
    np.random.seed(123)
    build_validated(BLOCK, 11)
    np.testing.assert_array_equal(np.random.random(3), expected)


def test_extxyz_round_trip(scenes, tmp_path):
    with_defects = [a for a in scenes.values() if a.info["n_defects"] > 0]
    without = [a for a in scenes.values() if a.info["n_defects"] == 0]
    assert with_defects and without, "pick SEEDS so both cases are covered"
    for number, atoms in enumerate([with_defects[0], without[0]]):
        path = tmp_path / f"scene{number}.extxyz"
        ase.io.write(path, atoms, format="extxyz")
        back = ase.io.read(path)
        np.testing.assert_allclose(back.positions, atoms.positions, atol=1e-7)
        np.testing.assert_array_equal(back.numbers, atoms.numbers)
        np.testing.assert_array_equal(back.arrays["particle"], atoms.arrays["particle"])
        np.testing.assert_allclose(back.cell.array, atoms.cell.array)
        assert list(back.pbc) == list(atoms.pbc)
        assert back.info.keys() == atoms.info.keys()
        for key, value in atoms.info.items():
            if isinstance(value, str):
                assert back.info[key] == value, key
            else:
                np.testing.assert_allclose(back.info[key], value, rtol=1e-12, err_msg=key)
                assert np.ndim(back.info[key]) == np.ndim(value), key


def test_too_small_cell_is_a_clear_error():
    block = copy.deepcopy(BLOCK)
    block["cell_A"] = [25.0, 40.0]  # needs 2 x (10 + 5) = 30 A for the largest radius
    with pytest.raises(ValueError, match="too small"):
        validate_block("structures", block)
    with pytest.raises(ValueError, match="too small"):
        build_validated(block, 1)
    block["radius_A"] = {"distribution": "fixed", "value": 7.0}  # 2 x (7 + 5) = 24 A fits
    assert build_validated(block, 1).info["radius_A"] == 7.0


def test_bad_block_values_are_rejected():
    for key, value in [("material", "CdSe"), ("embedding_fraction", 1.5)]:
        block = copy.deepcopy(BLOCK)
        block[key] = value
        with pytest.raises(ValueError):
            validate_block("structures", block)
    block = copy.deepcopy(BLOCK)
    block["planar_defects"]["kinds"] = ["grain_boundary"]
    with pytest.raises(ValueError, match="kinds"):
        validate_block("structures", block)
