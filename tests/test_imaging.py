"""Tests for hrtem_wf.imaging: lens phase vs abTEM, focal spread, phonons, dose, labels, draws."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from hrtem_wf.imaging import aberration_phase, draw_images, intensity, particle_mask, wavelength_A
from hrtem_wf.imaging.formation import detector_counts, focal_spread_defoci

ENERGY_EV = 300e3
SAMPLING_A = (0.2, 0.2)
CS_A = -19130.0

# The demo config's image block, copied so other edits of config.yaml cannot change these tests.
BLOCK = {
    "simulations": "au_small_fp",
    "draws_per_structure": 4,
    "defocus_A": {"distribution": "uniform", "low": -100.0, "high": 100.0},
    "spherical_aberration_A": CS_A,
    "focal_spread": {"sigma_A": {"distribution": "fixed", "value": 15.0}, "samples": 9,
                     "extent_sigmas": 3.0},
    "frozen_phonons": "all",
    "dose_e_per_A2": {"distribution": "uniform", "low": 400.0, "high": 1000.0},
    "median_filter_px": 3,
    "detector_pixel_size_A": 0.2,
    "crop_px": [96, 96],
    "label": {"method": "phase", "threshold": 0.2618, "smoothing_sigma_px": 3.0,
              "smoothing_threshold": 0.1},
}

DEG = np.pi / 180
# SI Table S1 (TEAM 0.5, 300 kV) in abTEM's polar symbols, Angstrom and radian.
TABLE_S1 = {
    "C12": 16.02, "phi12": -68.5 * DEG, "C21": 239.0, "phi21": 29.2 * DEG,
    "C23": 179.8, "phi23": -170.7 * DEG, "C30": -19130.0, "C32": 426.4, "phi32": -34.5 * DEG,
    "C34": 1583.0, "phi34": 89.2 * DEG, "C41": 16780.0, "phi41": 104.5 * DEG,
    "C43": 5287.0, "phi43": -12.7 * DEG, "C45": 31170.0, "phi45": -6.3 * DEG,
    "C50": 1.048e7, "C56": 48210.0, "phi56": 60.2 * DEG,
}


def block_with(**changes):
    block = copy.deepcopy(BLOCK)
    block.update(changes)
    return block


def disk(shape, radius_px, center=None):
    ny, nx = shape
    cy, cx = (ny // 2, nx // 2) if center is None else center
    y, x = np.mgrid[:ny, :nx]
    return (y - cy) ** 2 + (x - cx) ** 2 < radius_px**2


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


def weak_phase_object(shape, phonons=1, seed=0, strength_rad=0.05):
    rng = np.random.default_rng(seed)
    return np.exp(1j * strength_rad * rng.standard_normal((phonons, *shape))).astype(np.complex64)


def band_power(image, sampling_A, k_low, k_high):
    """Mean power of the image's Fourier components with k_low <= |k| < k_high [1/A]."""
    ky = np.fft.fftfreq(image.shape[0], sampling_A[0])[:, None]
    kx = np.fft.fftfreq(image.shape[1], sampling_A[1])[None, :]
    k = np.sqrt(kx**2 + ky**2)
    power = np.abs(np.fft.fft2(image - image.mean())) ** 2
    return power[(k >= k_low) & (k < k_high)].mean()


# --- lens phase against abTEM -----------------------------------------------------------------

COEFFICIENT_SETS = [
    {"C10": -50.0, "C30": CS_A},  # defocus (50 A underfocus) + Cs
    {"C10": 120.0, "C12": 20.0, "phi12": 0.7, "C21": 300.0, "phi21": -1.1, "C23": 150.0,
     "phi23": 2.0},
    {"C10": -37.0, **TABLE_S1},
    {"C32": 5000.0, "phi32": 0.4, "C43": 4e4, "phi43": -2.5, "C52": 3e5, "phi52": 1.3,
     "C54": 2e5, "phi54": -0.9},
]


@pytest.mark.parametrize("coefficients", COEFFICIENT_SETS)
@pytest.mark.parametrize("transfer_class", ["CTF", "Aberrations"])
def test_aberration_phase_matches_abtem(coefficients, transfer_class):
    abtem = pytest.importorskip("abtem")
    # Non-square grid with different samplings, so a swapped axis or angle convention shows.
    nx, ny, sx, sy = 48, 40, 0.2, 0.25
    delta = np.zeros((nx, ny), dtype=np.complex128)
    delta[0, 0] = 1.0  # flat spectrum: the lens output's spectrum is abTEM's kernel itself
    with abtem.config.set({"precision": "float64"}):  # abTEM's float32 loses ~1e-3 rad at 1e4 rad
        transfer = getattr(abtem.transfer, transfer_class)(energy=ENERGY_EV, **coefficients)
        waves = abtem.Waves(delta, energy=ENERGY_EV, sampling=(sx, sy))
        kernel = np.fft.fft2(np.asarray(waves.apply_transform(transfer).compute().array))
    # abTEM arrays are (x, y); phi = atan2(ky, kx)
    kx = np.fft.fftfreq(nx, sx)[:, None]
    ky = np.fft.fftfreq(ny, sy)[None, :]
    chi = aberration_phase(kx, ky, wavelength_A(ENERGY_EV), coefficients)
    assert np.abs(chi).max() > 1.0  # the set is not trivially zero on this grid
    assert np.allclose(np.abs(kernel), 1.0, atol=1e-9)
    # abTEM applies exp(-i chi): the residual phase of kernel * exp(+i chi) must vanish.
    assert np.abs(np.angle(kernel * np.exp(1j * chi))).max() < 1e-4


def test_intensity_matches_abtem_ctf_image():
    """Same weak object, same lens: our (ny, nx) image equals abTEM's (x, y) image transposed."""
    abtem = pytest.importorskip("abtem")
    nx, ny, sx, sy = 48, 40, 0.2, 0.25
    wave_xy = weak_phase_object((nx, ny), strength_rad=0.3)[0].astype(np.complex128)
    extra = {k: v for k, v in COEFFICIENT_SETS[1].items() if k != "C10"}
    defocus_A = 80.0
    with abtem.config.set({"precision": "float64"}):
        ctf = abtem.CTF(energy=ENERGY_EV, defocus=defocus_A, Cs=CS_A, **extra)
        waves = abtem.Waves(wave_xy, energy=ENERGY_EV, sampling=(sx, sy))
        reference = np.asarray(waves.apply_transform(ctf).intensity().compute().array)
    ours = intensity(wave_xy.T, (sy, sx), ENERGY_EV, defocus_A, CS_A, aberrations=extra).T
    assert reference.std() > 0.05
    assert np.abs(ours - reference).max() < 1e-4


def test_aberration_phase_rejects_unknown_symbols():
    with pytest.raises(ValueError, match="unknown aberration"):
        aberration_phase(np.zeros(3), np.zeros(3), 0.02, {"C11": 1.0})


# --- noise-free intensity ---------------------------------------------------------------------

@pytest.mark.parametrize("defocus_A", [0.0, 73.5, -250.0])
@pytest.mark.parametrize("sigma_A", [0.0, 15.0])
def test_vacuum_image_is_flat(defocus_A, sigma_A):
    vacuum = np.ones((3, 64, 80), dtype=np.complex64)
    image = intensity(vacuum, SAMPLING_A, ENERGY_EV, defocus_A, CS_A, sigma_A, 9, 3.0)
    assert image.shape == (64, 80)
    assert abs(image.mean() - 1.0) < 1e-5
    assert image.std() / image.mean() < 1e-5


def test_focal_spread_weights():
    defoci, weights = focal_spread_defoci(30.0, 15.0, 9, 3.0)
    assert np.isclose(weights.sum(), 1.0)
    assert np.allclose(defoci[[0, -1]], [30.0 - 45.0, 30.0 + 45.0])
    assert weights.argmax() == 4 and np.allclose(weights, weights[::-1])
    assert np.array_equal(focal_spread_defoci(30.0, 0.0, 9, 3.0)[0], [30.0])


def test_zero_focal_spread_is_the_coherent_image():
    waves = weak_phase_object((64, 64), phonons=2)
    coherent = intensity(waves, SAMPLING_A, ENERGY_EV, 60.0, CS_A)
    assert np.array_equal(intensity(waves, SAMPLING_A, ENERGY_EV, 60.0, CS_A, 0.0, 9, 3.0),
                          coherent)
    # and continuously so: a vanishing spread converges to it
    tiny = intensity(waves, SAMPLING_A, ENERGY_EV, 60.0, CS_A, 1e-3, 9, 3.0)
    assert np.abs(tiny - coherent).max() < 1e-4


def test_focal_spread_damps_high_spatial_frequencies():
    waves = weak_phase_object((256, 256))
    coherent = intensity(waves, SAMPLING_A, ENERGY_EV, 50.0, CS_A)
    spread = intensity(waves, SAMPLING_A, ENERGY_EV, 50.0, CS_A, 15.0, 25, 3.0)
    # temporal envelope exp(-(pi lambda sigma k^2)^2 / 2): ~1 at 0.2 /A, ~0.04 at 1.5 /A
    low = band_power(spread, SAMPLING_A, 0.1, 0.25) / band_power(coherent, SAMPLING_A, 0.1, 0.25)
    high = band_power(spread, SAMPLING_A, 1.3, 1.6) / band_power(coherent, SAMPLING_A, 1.3, 1.6)
    assert low > 0.9
    assert high < 0.2


def test_phonon_average_uses_every_phonon():
    shape = (96, 96)
    phonons = np.stack([np.exp(1j * 0.5 * disk(shape, 10, center)) for center in
                        [(30, 30), (60, 40), (45, 70)]]).astype(np.complex64)
    averaged = intensity(phonons, SAMPLING_A, ENERGY_EV, 80.0, CS_A, 15.0, 9, 3.0)
    singles = [intensity(p, SAMPLING_A, ENERGY_EV, 80.0, CS_A, 15.0, 9, 3.0) for p in phonons]
    assert np.allclose(averaged, np.mean(singles, axis=0), atol=1e-6)
    for single in singles:
        assert np.abs(averaged - single).max() > 0.05


# --- detector ---------------------------------------------------------------------------------

def test_mean_counts_equal_dose_times_pixel_area():
    rng = np.random.default_rng(3)
    counts = detector_counts(np.ones((512, 512)), 100.0, 0.2, rng)
    assert counts.dtype == np.float32
    assert abs(counts.mean() / (100.0 * 0.2**2) - 1.0) < 0.02
    # high doses do not overflow
    assert detector_counts(np.ones((4, 4)), 1e9, 1.0, rng).min() > 0.9e9


@pytest.mark.parametrize("pixel_size_A", [0.2, 0.4])
def test_draw_mean_counts_follow_dose_and_pixel_size(pixel_size_A):
    vacuum = np.ones((2, 512, 512), dtype=np.complex64)
    block = block_with(draws_per_structure=1, dose_e_per_A2=100.0, median_filter_px=1,
                       detector_pixel_size_A=pixel_size_A, crop_px=[128, 128])
    images, masks, records = draw_images(vacuum, vacuum, SAMPLING_A, ENERGY_EV, block,
                                         np.random.default_rng(0))
    expected = 100.0 * pixel_size_A**2
    assert records[0]["detector_height_px"] == round(512 * 0.2 / pixel_size_A)
    assert abs(images.mean() / expected - 1.0) < 0.02
    assert abs(records[0]["mean_counts"] / expected - 1.0) < 0.02
    assert masks.sum() == 0  # vacuum has no particle


# --- labels -----------------------------------------------------------------------------------

@pytest.mark.parametrize("defocus_A", [0.0, 50.0, -100.0])
def test_phase_label_of_weak_phase_disk(defocus_A):
    shape = (256, 256)
    truth = disk(shape, 30)
    particle = np.exp(1j * 0.5 * truth)[None].astype(np.complex64)
    mask = particle_mask(particle, SAMPLING_A, ENERGY_EV, defocus_A, CS_A, "phase", 0.2618,
                         3.0, 0.5)
    assert iou(mask, truth) >= 0.8
    # the config's low smoothing threshold (0.1) grows the outline by ~1.3 sigma, no more
    grown = particle_mask(particle, SAMPLING_A, ENERGY_EV, defocus_A, CS_A, "phase", 0.2618,
                          3.0, 0.1)
    assert (grown & truth).sum() / truth.sum() > 0.99
    assert iou(grown, truth) >= 0.75


def test_phase_label_needs_more_than_half_the_phonons():
    shape = (64, 64)
    inside = np.exp(1j * 0.5 * disk(shape, 15)).astype(np.complex64)
    vacuum = np.ones(shape, dtype=np.complex64)
    two_of_three = np.stack([inside, inside, vacuum])
    two_of_four = np.stack([inside, inside, vacuum, vacuum])
    assert particle_mask(two_of_three, SAMPLING_A, ENERGY_EV, 0.0, 0.0, "phase", 0.2618)[32, 32]
    assert not particle_mask(two_of_four, SAMPLING_A, ENERGY_EV, 0.0, 0.0, "phase", 0.2618).any()


def test_intensity_label_of_absorbing_disk():
    shape = (128, 128)
    truth = disk(shape, 25)
    particle = (1.0 - 0.5 * truth)[None].astype(np.complex64)  # |I - 1| = 0.75 inside
    mask = particle_mask(particle, SAMPLING_A, ENERGY_EV, 20.0, CS_A, "intensity", 0.1, 3.0, 0.5)
    assert iou(mask, truth) >= 0.8


def test_draw_masks_follow_the_crop():
    shape = (160, 160)
    truth = disk(shape, 30, center=(70, 90))
    particle = np.stack([np.exp(1j * 0.5 * truth)] * 2).astype(np.complex64)
    full = particle * weak_phase_object(shape, phonons=2, seed=5)
    block = block_with(label={"method": "phase", "threshold": 0.2618, "smoothing_sigma_px": 3.0,
                              "smoothing_threshold": 0.5})
    images, masks, records = draw_images(full, particle, SAMPLING_A, ENERGY_EV, block,
                                         np.random.default_rng(11))
    for mask, record in zip(masks, records):
        y0, x0 = record["crop_y0_px"], record["crop_x0_px"]
        window = truth[y0:y0 + 96, x0:x0 + 96]
        if window.sum() > 500:  # enough particle in view for a meaningful overlap
            assert iou(mask.astype(bool), window) >= 0.8
        assert np.isclose(record["particle_fraction"], mask.mean())


# --- draw_images: contract --------------------------------------------------------------------

def _demo_waves(shape=(128, 128), phonons=3):
    particle = np.stack([np.exp(1j * 0.4 * disk(shape, 20, (60 + 3 * p, 64)))
                         for p in range(phonons)]).astype(np.complex64)
    return particle * weak_phase_object(shape, phonons, seed=1), particle


def test_draw_images_shapes_records_and_ranges():
    full, particle = _demo_waves()
    images, masks, records = draw_images(full, particle, SAMPLING_A, ENERGY_EV, BLOCK,
                                         np.random.default_rng(7))
    assert images.shape == masks.shape == (4, 96, 96)
    assert images.dtype == np.float32 and masks.dtype == np.uint8
    assert set(np.unique(masks)) <= {0, 1}
    assert len(records) == 4
    json.dumps(records)  # JSON-serializable
    required = {"image_index", "defocus_A", "spherical_aberration_A", "focal_spread_sigma_A",
                "focal_spread_samples", "dose_e_per_A2", "pixel_size_A", "crop_y0_px",
                "crop_x0_px", "frozen_phonons_used", "label_method", "label_threshold",
                "mean_counts", "particle_fraction"}
    for i, (record, image) in enumerate(zip(records, images)):
        assert required <= set(record)
        assert record["image_index"] == i
        assert -100.0 <= record["defocus_A"] <= 100.0
        assert 400.0 <= record["dose_e_per_A2"] <= 1000.0
        assert record["spherical_aberration_A"] == CS_A
        assert record["focal_spread_sigma_A"] == 15.0 and record["focal_spread_samples"] == 9
        assert record["frozen_phonons_used"] == 3
        assert 0 <= record["crop_y0_px"] <= 128 - 96 and 0 <= record["crop_x0_px"] <= 128 - 96
        assert np.isclose(record["mean_counts"], image.mean())
        # mean counts track dose x pixel area (the weak object and median filter shift it little)
        assert abs(record["mean_counts"] / record["expected_counts_per_px"] - 1) < 0.05
    assert len({r["defocus_A"] for r in records}) == 4  # drawn per image


def test_single_phonon_mode_uses_phonon_zero():
    full, particle = _demo_waves()
    block = block_with(frozen_phonons="single", draws_per_structure=1)
    one = draw_images(full, particle, SAMPLING_A, ENERGY_EV, block, np.random.default_rng(2))
    only_first = draw_images(full[:1], particle[:1], SAMPLING_A, ENERGY_EV, block,
                             np.random.default_rng(2))
    assert one[2][0]["frozen_phonons_used"] == 1
    assert np.array_equal(one[0], only_first[0]) and np.array_equal(one[1], only_first[1])


def test_draw_images_is_deterministic():
    full, particle = _demo_waves()
    a = draw_images(full, particle, SAMPLING_A, ENERGY_EV, BLOCK, np.random.default_rng(5))
    b = draw_images(full, particle, SAMPLING_A, ENERGY_EV, BLOCK, np.random.default_rng(5))
    c = draw_images(full, particle, SAMPLING_A, ENERGY_EV, BLOCK, np.random.default_rng(6))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    assert not np.array_equal(a[0], c[0])


def test_crop_larger_than_image_raises():
    full, particle = _demo_waves()
    with pytest.raises(ValueError, match="crop_px"):
        draw_images(full, particle, SAMPLING_A, ENERGY_EV, block_with(crop_px=[200, 64]),
                    np.random.default_rng(0))
    # the crop is checked against the detector image, after resampling to its pixel size
    with pytest.raises(ValueError, match="crop_px"):
        draw_images(full, particle, SAMPLING_A, ENERGY_EV,
                    block_with(detector_pixel_size_A=0.4, crop_px=[96, 96]),
                    np.random.default_rng(0))


def test_bad_block_values_raise():
    full, particle = _demo_waves()
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="frozen_phonons"):
        draw_images(full, particle, SAMPLING_A, ENERGY_EV, block_with(frozen_phonons="some"), rng)
    with pytest.raises(ValueError, match="label.method"):
        draw_images(full, particle, SAMPLING_A, ENERGY_EV,
                    block_with(label={"method": "edges", "threshold": 0.1}), rng)
    with pytest.raises(ValueError, match="differ in shape"):
        draw_images(full, particle[:2], SAMPLING_A, ENERGY_EV, BLOCK, rng)
