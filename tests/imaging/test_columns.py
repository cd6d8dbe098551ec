"""Atomic columns (hrtem_wf.images.columns): grouping along the beam, classes, the detector
geometry of image formation, and confidence maps that peak where the columns are."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
from ase import Atoms
from ase.build import bulk

from hrtem_wf.images.columns import (
    Columns,
    column_classes,
    confidence_maps,
    pixel_coordinates,
    projected_columns,
)
from hrtem_wf.images.formation import resample_to_pixel_size, resampled_shape


def particle_atoms(symbols, positions, cell=(20.0, 20.0, 20.0), particle=None) -> Atoms:
    atoms = Atoms(symbols, positions=positions, cell=cell, pbc=(True, True, False))
    flags = np.ones(len(atoms), np.int8) if particle is None else np.asarray(particle, np.int8)
    atoms.arrays["particle"] = flags
    return atoms


def test_atoms_along_the_beam_within_the_tolerance_are_one_column():
    atoms = particle_atoms(
        ["Au", "Au", "Au", "Au", "Au", "C"],
        [(5, 5, 0), (5, 5, 2), (5, 5, 4), (5.05, 5, 6), (8, 5, 0), (5, 5, -3)],
        particle=[1, 1, 1, 1, 1, 0],  # the carbon atom is substrate
    )
    columns = projected_columns(atoms, tolerance_A=0.5)
    assert list(columns.heights) == [4, 1]
    assert list(columns.compositions) == ["Au4", "Au1"]
    np.testing.assert_allclose(columns.yx_A, [[5.0, 5.0125], [5.0, 8.0]])


def test_a_column_across_the_periodic_edge_is_one_column_at_the_edge():
    atoms = particle_atoms(["Au", "Au"], [(0.1, 7, 0), (19.9, 7, 2)])
    columns = projected_columns(atoms, tolerance_A=0.5)
    assert list(columns.heights) == [2]
    y, x = columns.yx_A[0]
    assert y == pytest.approx(7.0) and min(x, 20.0 - x) == pytest.approx(0.0, abs=1e-9)


def test_an_fcc_crystal_on_001_has_four_columns_per_cell_of_its_thickness():
    a, cells, layers = 4.07825, 4, 6
    crystal = bulk("Au", "fcc", a=a, cubic=True).repeat((cells, cells, layers))
    atoms = particle_atoms(crystal.get_chemical_symbols(), crystal.positions, crystal.cell)
    columns = projected_columns(atoms, tolerance_A=0.5)
    assert len(columns) == 4 * cells**2
    assert set(columns.heights) == {layers}
    # nearest projected neighbours a / 2 apart
    spacing = np.diff(np.unique(np.round(columns.yx_A[:, 1], 6)))
    np.testing.assert_allclose(spacing, a / 2, atol=1e-9)


def test_classes_by_element_height_and_composition():
    columns = Columns(
        yx_A=np.zeros((4, 2)),
        heights=np.array([1, 2, 5, 9]),
        compositions=np.array(["Mo1", "S2", "Mo1S2", "Au9"]),
    )
    np.testing.assert_array_equal(column_classes(columns, "element", ["Mo", "S"]), [0, 1, 1, -1])
    np.testing.assert_array_equal(column_classes(columns, "height", [1, 2, 5]), [0, 1, 2, 2])
    np.testing.assert_array_equal(
        column_classes(columns, "composition", ["Mo1", "S2", "S1"]), [0, 1, -1, -1]
    )
    with pytest.raises(ValueError, match="kind"):
        column_classes(columns, "colour", [])


def test_pixel_coordinates_follow_the_detector_resampling_of_image_formation():
    """A bump on the exit-wave grid lands, after `resample_to_pixel_size`, where
    `pixel_coordinates` says: both use the same geometry."""
    sampling, pixel = 0.1, 0.37
    n = 400  # 40 A
    centre_A = np.array([13.37, 21.05])
    y, x = (np.mgrid[:n, :n] * sampling)[0], (np.mgrid[:n, :n] * sampling)[1]
    bump = np.exp(-((y - centre_A[0]) ** 2 + (x - centre_A[1]) ** 2) / (2 * 0.8**2))
    image = resample_to_pixel_size(bump, (sampling, sampling), pixel)
    assert image.shape == resampled_shape((n, n), (sampling, sampling), pixel) == (108, 108)
    found = np.array(scipy.ndimage.center_of_mass(image))
    expected = pixel_coordinates(centre_A, sampling, (40.0, 40.0), image.shape)
    np.testing.assert_allclose(found, expected, atol=0.002)  # pixels: < 0.001 A
    origin = (5, 9)  # a crop shifts them by its origin
    np.testing.assert_allclose(
        pixel_coordinates(centre_A, sampling, (40.0, 40.0), image.shape, origin),
        expected - origin,
    )


def refined_peaks(channel: np.ndarray) -> np.ndarray:
    """Local maxima above 0.5, refined by a parabola through each one's neighbours."""
    peaks = (channel == scipy.ndimage.maximum_filter(channel, size=3)) & (channel > 0.5)
    refined = []
    for y, x in np.argwhere(peaks):
        if not (0 < y < channel.shape[0] - 1 and 0 < x < channel.shape[1] - 1):
            continue
        offsets = []
        for before, centre, after in (
            np.log(channel[y - 1 : y + 2, x]),
            np.log(channel[y, x - 1 : x + 2]),
        ):
            offsets.append(0.5 * (before - after) / (before - 2 * centre + after))
        refined.append((y + offsets[0], x + offsets[1]))
    return np.array(refined)


def test_confidence_maps_peak_at_the_columns_within_a_tenth_of_an_angstrom():
    rng = np.random.default_rng(3)
    sampling, pixel, sigma_A = 0.2, 0.25, 0.4
    yx_A = np.array([[4 + 4 * i + rng.uniform(0, 1), 4 + 4 * j + rng.uniform(0, 1)]
                     for i in range(4) for j in range(4)])  # fmt: skip
    classes = rng.integers(0, 3, len(yx_A))
    yx_px = pixel_coordinates(yx_A, sampling, (24.0, 24.0), (96, 96))  # 0.25 A pixels
    maps = confidence_maps(yx_px, classes, 3, (96, 96), sigma_A / pixel)
    assert maps.shape == (4, 96, 96)
    np.testing.assert_allclose(maps[-1], 1 - maps[:-1].max(axis=0))
    for label in range(3):
        peaks_px = refined_peaks(maps[label])
        truth_px = yx_px[classes == label]
        assert len(peaks_px) == len(truth_px)  # each column in its class's channel, once
        distance_A = np.linalg.norm(peaks_px[:, None] - truth_px[None], axis=-1).min(0) * pixel
        assert distance_A.max() < 0.1


def test_a_column_beyond_the_cell_edge_shows_at_the_other_side():
    maps = confidence_maps(np.array([[10.0, -0.4]]), np.array([0]), 1, (20, 40), 1.5, (20, 40))
    assert maps[0, 10, 39] > 0.9 and maps[0, 10, 0] > 0.9
    without = confidence_maps(np.array([[10.0, -0.4]]), np.array([0]), 1, (20, 40), 1.5)
    assert without[0, 10, 39] < 1e-6


# --- targets of an images block (hrtem_wf.images.targets) ---------------------------------------


def _record(pixel_size_A, detector_shape, origin, crop_px, phonons=2):
    return {
        "pixel_size_A": pixel_size_A,
        "detector_height_px": detector_shape[0],
        "detector_width_px": detector_shape[1],
        "crop_y0_px": origin[0],
        "crop_x0_px": origin[1],
        "crop_height_px": crop_px[0],
        "crop_width_px": crop_px[1],
        "frozen_phonons_used": phonons,
    }


def test_exit_wave_target_is_the_phonon_mean_low_passed_resampled_and_cropped():
    """Against an independent computation: scipy's real-space Gaussian (wrapping) on the mean
    of the phonons, then image formation's resampling and the record's crop."""
    from hrtem_wf.images.targets import exit_wave_targets

    rng = np.random.default_rng(0)
    sampling, shape = (0.1, 0.1), (200, 160)
    waves = np.exp(1j * rng.normal(0, 0.3, (3, *shape))).astype(np.complex64)
    pixel_size_A, crop_px = 0.16, (64, 48)
    detector = resampled_shape(shape, sampling, pixel_size_A)
    records = [
        _record(pixel_size_A, detector, (10, 20), crop_px),
        _record(pixel_size_A, detector, (0, 3), crop_px),
    ]
    targets = exit_wave_targets(waves, {"low_pass_sigma_A": 0.15}, records, sampling)
    assert targets.shape == (2, 2, *crop_px) and targets.dtype == np.float32

    mean = waves[:2].astype(np.complex128).mean(axis=0)  # the phonons the images used
    for record, target in zip(records, targets):
        y0, x0 = record["crop_y0_px"], record["crop_x0_px"]
        for part, values in zip(target, (mean.real, mean.imag)):
            smooth = scipy.ndimage.gaussian_filter(values, 1.5, mode="wrap", truncate=8.0)
            expected = resample_to_pixel_size(smooth, sampling, pixel_size_A)
            expected = expected[y0 : y0 + crop_px[0], x0 : x0 + crop_px[1]]
            np.testing.assert_allclose(part, expected, atol=2e-5)
    # without a low pass: the mean wave itself on the image grid
    sharp = exit_wave_targets(waves, {"low_pass_sigma_A": 0.0}, records[:1], sampling)
    expected = resample_to_pixel_size(mean.real, sampling, pixel_size_A)[10:74, 20:68]
    np.testing.assert_allclose(sharp[0, 0], expected, atol=1e-5)


def test_column_targets_peak_at_the_columns_in_each_crop_with_their_class():
    """An fcc [001] slab: each column's Gaussian peaks within 0.1 A of its projected position
    in every image's crop, in its class's channel; columns cut by the cell edge show through the
    periodic copies, and the positions table lists the columns inside each crop."""
    from hrtem_wf.images.targets import column_targets

    a = 4.07825
    crystal = bulk("Au", "fcc", a=a, cubic=True).repeat((5, 5, 3))
    atoms = particle_atoms(crystal.get_chemical_symbols(), crystal.positions, crystal.cell)
    columns = projected_columns(atoms, tolerance_A=0.5)
    sampling, wave_shape = (0.1, 0.1), (204, 204)  # the 20.39 A cell on the exit-wave grid
    pixel_size_A = 0.1
    detector = resampled_shape(wave_shape, sampling, pixel_size_A)
    records = [
        _record(pixel_size_A, detector, (0, 0), (96, 96)),
        _record(pixel_size_A, detector, (150, 170), (96, 96)),  # crosses the cell's edge
    ]
    spec = {"sigma_A": 0.3, "classes": {"kind": "height", "names": [1, 3]}}
    maps, positions = column_targets(columns, spec, records, sampling, wave_shape)
    assert maps.shape == (2, 3, 96, 96) and maps.dtype == np.float32
    for index, record in enumerate(records):
        rows = positions[positions[:, 0] == index]
        assert len(rows) > 0 and set(rows[:, 3]) == {1.0}  # height 3: class "3"
        pixel_A = wave_shape[0] * sampling[0] / detector[0]
        inner = rows[
            (rows[:, 1] > 3)
            & (rows[:, 2] > 3)
            & (rows[:, 1] < record["crop_height_px"] - 4)
            & (rows[:, 2] < record["crop_width_px"] - 4)
        ]
        assert len(inner) > 0
        channel = maps[index][1]
        for _, y, x, _ in inner:
            iy, ix = int(round(y)), int(round(x))
            window = channel[iy - 2 : iy + 3, ix - 2 : ix + 3]
            assert window.max() == channel[iy - 2 : iy + 3, ix - 2 : ix + 3].max() > 0.5
            cy, cx = scipy.ndimage.center_of_mass(window**4)
            assert np.hypot(cy - 2 + iy - y, cx - 2 + ix - x) * pixel_A < 0.1
        assert maps[index][0].max() == 0.0  # no column of height 1
        np.testing.assert_allclose(maps[index][2], 1 - maps[index][1], atol=1e-6)
    # the crop across the edge sees as many columns as one inside the cell: 4 per a^2
    for index in range(2):
        assert len(positions[positions[:, 0] == index]) == pytest.approx(
            4 * (96 * pixel_size_A) ** 2 / a**2, rel=0.15
        )


def test_a_tilted_crystal_keeps_its_columns_along_its_own_direction():
    """An fcc crystal on [111] (a column repeats every 3 layers, 7.06 A) tilted 4.5 deg: seen
    along the beam its atoms of one column drift 0.56 A apart, beyond the 0.5 A tolerance;
    grouped along the crystal's own direction (found from the atoms) they stay columns of 3, at
    the mean of their positions along the beam."""
    from ase.build import fcc111

    from hrtem_wf.images.columns import column_direction

    slab = fcc111("Au", size=(6, 6, 9), a=4.07825, orthogonal=True)
    slab.positions += (10.0, 10.0, 10.0)
    slab.rotate(4.5, "x", center="COP")
    atoms = particle_atoms(slab.get_chemical_symbols(), slab.positions, cell=(60.0, 60.0, 60.0))
    direction = column_direction(atoms.positions)
    assert np.degrees(np.arccos(direction[2])) == pytest.approx(4.5, abs=0.01)
    along_beam = projected_columns(atoms, tolerance_A=0.5, along_crystal=False)
    columns = projected_columns(atoms, tolerance_A=0.5)
    assert max(along_beam.heights) < 3 and len(along_beam) > len(atoms) // 2  # fallen apart
    assert set(columns.heights) == {3} and len(columns) == len(atoms) // 3
    # a column sits at the mean (beam) projection of its atoms, in the crystal's footprint
    low, high = atoms.positions[:, :2].min(axis=0), atoms.positions[:, :2].max(axis=0)
    assert np.all((columns.yx_A[:, ::-1] >= low) & (columns.yx_A[:, ::-1] <= high))
