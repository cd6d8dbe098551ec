"""Tests for hrtem_wf.images: lens phase vs abTEM, focal spread, phonons, dose, labels, draws."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from conftest import (
    BLOCK,
    CS,
    CS_A,
    ENERGY_EV,
    SAMPLING_A,
    demo_waves,
    disk,
    iou,
    weak_phase_object,
)
from hrtem_wf.config import validate_block
from hrtem_wf.images import (
    PRESETS,
    Lens,
    aberration_phase,
    apply_mtf,
    draw_aberrations,
    draw_images,
    intensity,
    mtf,
    particle_mask,
    plasmon_losses,
    temporal_envelope,
    wave_spectrum,
    wavelength_A,
)
from hrtem_wf.images.formation import detector_counts, median_filter
from hrtem_wf.images.labels import grow_mask
from hrtem_wf.images.lens import focal_spread_defoci

# Every effect on, as the study's Optimal Au images (SI section 1.8).
ALL_EFFECTS = validate_block(
    "images",
    {
        **BLOCK,
        "defocus_A": {"distribution": "uniform", "low": -400.0, "high": 400.0},
        "aberrations": {
            "preset": "team05_table_s1",
            "magnitude_scale": {"distribution": "normal", "mean": 1.0, "sd": 0.25},
            "rotation_shift_rad": {"distribution": "normal", "mean": 0.0, "sd": np.pi / 4},
        },
        "focal_spread": {
            "method": "incoherent",
            "sigma_A": {"distribution": "uniform", "low": 10.0, "high": 25.0},
            "samples": 25,
            "extent_sigmas": 3.0,
        },
        "plasmons": {
            "weight": {"distribution": "uniform", "low": 0.3, "high": 0.85},
            "background": 1.0,
        },
        "dose_e_per_A2": {"distribution": "uniform", "low": 200.0, "high": 700.0},
        "detector": {
            "pixel_size_A": 0.2,
            "mtf": {"c1": 0.1, "c2": 0.5, "c3": 2.5},
            "blur_sigma_px": 0.5,
            "median_filter_px": 3,
        },
    },
)

DEG = np.pi / 180
# SI Table S1 (TEAM 0.5, 300 kV) written out by hand in abTEM's polar symbols, Angstrom and
# radian: C_{n,m} (n = power of the angle) -> C{n-1}{m}, nm x 10, um x 1e4, mm x 1e7, deg -> rad.
TABLE_S1 = {
    "C12": 16.02,
    "phi12": -68.5 * DEG,
    "C21": 239.0,
    "phi21": 29.2 * DEG,
    "C23": 179.8,
    "phi23": -170.7 * DEG,
    "C30": -19130.0,
    "C32": 426.4,
    "phi32": -34.5 * DEG,
    "C34": 1583.0,
    "phi34": 89.2 * DEG,
    "C41": 16780.0,
    "phi41": 104.5 * DEG,
    "C43": 5287.0,
    "phi43": -12.7 * DEG,
    "C45": 31170.0,
    "phi45": -6.3 * DEG,
    "C50": 1.048e7,
    "C56": 48210.0,
    "phi56": 60.2 * DEG,
}


def block_with(base=BLOCK, **changes):
    block = copy.deepcopy(base)
    for key, value in changes.items():
        if key in ("pixel_size_A", "median_filter_px", "mtf", "blur_sigma_px"):
            block["detector"][key] = value
        else:
            block[key] = value
    return block


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
    {
        "C10": 120.0,
        "C12": 20.0,
        "phi12": 0.7,
        "C21": 300.0,
        "phi21": -1.1,
        "C23": 150.0,
        "phi23": 2.0,
    },
    {"C10": -37.0, **PRESETS["team05_table_s1"]},
    {
        "C32": 5000.0,
        "phi32": 0.4,
        "C43": 4e4,
        "phi43": -2.5,
        "C52": 3e5,
        "phi52": 1.3,
        "C54": 2e5,
        "phi54": -0.9,
    },
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
    lens = Lens(ENERGY_EV, defocus_A, {**extra, **CS})
    ours = intensity(wave_spectrum(wave_xy.T), (sy, sx), lens).T
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
    lens = Lens(ENERGY_EV, defocus_A, CS, focal_spread_sigma_A=sigma_A, focal_spread_samples=9)
    image = intensity(wave_spectrum(vacuum), SAMPLING_A, lens)
    assert image.shape == (64, 80)
    assert abs(image.mean() - 1.0) < 1e-5
    assert image.std() / image.mean() < 1e-5


# --- the Lens ---------------------------------------------------------------------------------


def test_lens_is_a_frozen_value():
    import dataclasses

    lens = Lens(ENERGY_EV, 80.0, {"phi12": 0.7, "C30": CS_A, "C12": 20.0}, 15.0, "incoherent", 9)
    with pytest.raises(dataclasses.FrozenInstanceError):
        lens.defocus_A = 0.0
    # the coefficients are stored in abTEM's symbol order, whatever order they came in
    assert lens.aberrations == (("C12", 20.0), ("C30", CS_A), ("phi12", 0.7))
    same = Lens(ENERGY_EV, 80, (("C30", CS_A), ("C12", 20), ("phi12", 0.7)), 15, "incoherent", 9)
    assert same == lens and hash(same) == hash(lens) and len({lens, same}) == 1
    assert lens.coefficients == {"C12": 20.0, "C30": CS_A, "phi12": 0.7}
    assert lens.wavelength_A == wavelength_A(ENERGY_EV)
    assert Lens(ENERGY_EV, aberrations=None) == Lens(ENERGY_EV)
    assert Lens(ENERGY_EV).aberrations == ()
    for bad in (
        dict(aberrations={"C10": -50.0}),  # the defocus has its own field
        dict(aberrations={"C11": 1.0}),
        dict(focal_spread_method="coherent"),
        dict(focal_spread_sigma_A=-1.0),
        dict(focal_spread_samples=0),
        dict(objective_aperture_mrad=0.0),
    ):
        with pytest.raises(ValueError):
            Lens(ENERGY_EV, **bad)


def test_lens_at_defocus_and_coherent_change_only_their_fields():
    lens = Lens(ENERGY_EV, 80.0, CS, 15.0, "incoherent", 9, 2.5, 20.0, 0.4)
    moved = lens.at_defocus(-40.0)
    assert moved.defocus_A == -40.0 and lens.defocus_A == 80.0
    assert moved == Lens(ENERGY_EV, -40.0, CS, 15.0, "incoherent", 9, 2.5, 20.0, 0.4)
    assert lens.at_defocus(80.0) == lens
    coherent = lens.coherent()
    assert coherent == Lens(
        ENERGY_EV, 80.0, CS, objective_aperture_mrad=20.0, focal_spread_extent_sigmas=2.5
    )
    defoci, weights, envelope_sigma_A = coherent.focal_samples()
    assert defoci.tolist() == [80.0] and weights.tolist() == [1.0] and envelope_sigma_A == 0.0
    defoci, weights, envelope_sigma_A = lens.focal_samples()
    assert np.array_equal(defoci, focal_spread_defoci(80.0, 15.0, 9, 2.5)[0])
    assert envelope_sigma_A == 0.0 and weights.sum() == pytest.approx(1.0)
    quasi = Lens(ENERGY_EV, 80.0, CS, 15.0, "quasi_coherent", 9)
    assert [a.tolist() for a in quasi.focal_samples()[:2]] == [[80.0], [1.0]]
    assert quasi.focal_samples()[2] == 15.0


def test_lens_polar_arrays_are_the_nonzero_terms():
    lens = Lens(ENERGY_EV, aberrations={"C12": 20.0, "phi12": 0.7, "C21": 0.0, "phi21": 1.0, **CS})
    magnitudes, powers, folds, angles = lens.polar_arrays()
    assert magnitudes.tolist() == [20.0, CS_A] and angles.tolist() == [0.7, 0.0]
    assert powers.tolist() == [2, 4] and folds.tolist() == [2, 0]
    assert (magnitudes.dtype, powers.dtype, folds.dtype) == (np.float64, np.int64, np.int64)
    empty = Lens(ENERGY_EV).polar_arrays()
    assert [a.shape for a in empty] == [(0,)] * 4 and empty[1].dtype == np.int64


@pytest.mark.parametrize("fused", [True, False])
def test_one_intensity_function_on_waves(fused):
    """Waves go in through their spectrum: vacuum is exactly 1 through any coherent or
    quasi-coherent lens (plasmons keep the mean), and a weak object's image is the textbook
    mean_p |IFFT(FFT(psi_p) exp(-i chi))|^2 with chi of C10 = -defocus."""
    vacuum = wave_spectrum(np.ones((2, 64, 80), dtype=np.complex64))
    lenses = (
        Lens(ENERGY_EV, 73.5, {**CS, "C12": 30.0, "phi12": 0.3}),
        Lens(ENERGY_EV, -250.0, CS, 20.0, "quasi_coherent"),
    )
    for lens in lenses:
        for plasmon in (None, (0.5, 1.0)):
            image = intensity(vacuum, SAMPLING_A, lens, plasmon=plasmon, fused=fused)
            assert np.array_equal(image, np.ones((64, 80)))
    waves = weak_phase_object((64, 80), phonons=2, strength_rad=0.3)
    lens = lenses[0]
    ky = np.fft.fftfreq(64, SAMPLING_A[0])[:, None]
    kx = np.fft.fftfreq(80, SAMPLING_A[1])[None, :]
    chi = aberration_phase(kx, ky, lens.wavelength_A, {**lens.coefficients, "C10": -73.5})
    psi = np.fft.ifft2(np.fft.fft2(waves.astype(np.complex128)) * np.exp(-1j * chi))
    expected = (np.abs(psi) ** 2).mean(axis=0)
    image = intensity(wave_spectrum(waves), SAMPLING_A, lens, fused=fused)
    assert np.abs(image - expected).max() < 1e-5
    single = intensity(wave_spectrum(waves[0]), SAMPLING_A, lens, fused=fused)  # (ny, nx) wave
    assert np.abs(single - np.abs(psi[0]) ** 2).max() < 1e-5


def test_focal_spread_weights():
    defoci, weights = focal_spread_defoci(30.0, 15.0, 9, 3.0)
    assert np.isclose(weights.sum(), 1.0)
    assert np.allclose(defoci[[0, -1]], [30.0 - 45.0, 30.0 + 45.0])
    assert weights.argmax() == 4 and np.allclose(weights, weights[::-1])
    assert np.array_equal(focal_spread_defoci(30.0, 0.0, 9, 3.0)[0], [30.0])


def spread_lens(defocus_A, sigma_A, samples=9, aberrations=CS, **kwargs):
    """The incoherent focal spread of `samples` defoci over +- 3 sigma at ENERGY_EV."""
    return Lens(
        ENERGY_EV,
        defocus_A,
        aberrations,
        focal_spread_sigma_A=sigma_A,
        focal_spread_samples=samples,
        **kwargs,
    )


def test_zero_focal_spread_is_the_coherent_image():
    spectrum = wave_spectrum(weak_phase_object((64, 64), phonons=2))
    coherent = intensity(spectrum, SAMPLING_A, Lens(ENERGY_EV, 60.0, CS))
    assert np.array_equal(intensity(spectrum, SAMPLING_A, spread_lens(60.0, 0.0, 25)), coherent)
    # and continuously so: a vanishing spread, sampled 25 times, converges to it
    for sigma_A in (1e-4, 1e-6):
        tiny = intensity(spectrum, SAMPLING_A, spread_lens(60.0, sigma_A, 25))
        assert np.abs(tiny / coherent - 1).max() < 1e-6
    spread = intensity(spectrum, SAMPLING_A, spread_lens(60.0, 15.0, 25))
    assert np.abs(spread - coherent).max() > 1e-3


def test_focal_spread_damps_high_spatial_frequencies():
    spectrum = wave_spectrum(weak_phase_object((256, 256)))
    coherent = intensity(spectrum, SAMPLING_A, Lens(ENERGY_EV, 50.0, CS))
    spread = intensity(spectrum, SAMPLING_A, spread_lens(50.0, 15.0, 25))
    # temporal envelope exp(-(pi lambda sigma k^2)^2 / 2): ~1 at 0.2 /A, ~0.04 at 1.5 /A
    low = band_power(spread, SAMPLING_A, 0.1, 0.25) / band_power(coherent, SAMPLING_A, 0.1, 0.25)
    high = band_power(spread, SAMPLING_A, 1.3, 1.6) / band_power(coherent, SAMPLING_A, 1.3, 1.6)
    assert low > 0.9
    assert high < 0.2


def test_phonon_average_uses_every_phonon():
    shape = (96, 96)
    phonons = np.stack(
        [np.exp(1j * 0.5 * disk(shape, 10, center)) for center in [(30, 30), (60, 40), (45, 70)]]
    ).astype(np.complex64)
    lens = spread_lens(80.0, 15.0)
    averaged = intensity(wave_spectrum(phonons), SAMPLING_A, lens)
    singles = [intensity(wave_spectrum(p), SAMPLING_A, lens) for p in phonons]
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
    block = block_with(
        draws_per_structure=1,
        dose_e_per_A2=100.0,
        median_filter_px=1,
        pixel_size_A=pixel_size_A,
        crop_px=[128, 128],
    )
    images, masks, records = draw_images(
        vacuum, vacuum, SAMPLING_A, ENERGY_EV, block, np.random.default_rng(0)
    )
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
    particle = wave_spectrum(np.exp(1j * 0.5 * truth)[None].astype(np.complex64))
    lens = Lens(ENERGY_EV, defocus_A, CS)
    mask = particle_mask(particle, SAMPLING_A, lens, "phase", 0.2618, 3.0, 0.5)
    assert iou(mask, truth) >= 0.8
    # the config's low smoothing threshold (0.1) grows the outline by ~1.3 sigma, no more
    grown = particle_mask(particle, SAMPLING_A, lens, "phase", 0.2618, 3.0, 0.1)
    assert (grown & truth).sum() / truth.sum() > 0.99
    assert iou(grown, truth) >= 0.75


def test_phase_label_needs_more_than_half_the_phonons():
    shape = (64, 64)
    inside = np.exp(1j * 0.5 * disk(shape, 15)).astype(np.complex64)
    vacuum = np.ones(shape, dtype=np.complex64)
    two_of_three = np.stack([inside, inside, vacuum])
    two_of_four = np.stack([inside, inside, vacuum, vacuum])
    at_focus = Lens(ENERGY_EV)
    assert particle_mask(wave_spectrum(two_of_three), SAMPLING_A, at_focus, "phase", 0.2618)[32, 32]
    assert not particle_mask(
        wave_spectrum(two_of_four), SAMPLING_A, at_focus, "phase", 0.2618
    ).any()


def test_intensity_label_of_absorbing_disk():
    shape = (128, 128)
    truth = disk(shape, 25)
    particle = (1.0 - 0.5 * truth)[None].astype(np.complex64)  # |I - 1| = 0.75 inside
    lens = Lens(ENERGY_EV, 20.0, CS)
    mask = particle_mask(wave_spectrum(particle), SAMPLING_A, lens, "intensity", 0.1, 3.0, 0.5)
    assert iou(mask, truth) >= 0.8


def test_draw_masks_follow_the_crop():
    shape = (160, 160)
    truth = disk(shape, 30, center=(70, 90))
    particle = np.stack([np.exp(1j * 0.5 * truth)] * 2).astype(np.complex64)
    full = particle * weak_phase_object(shape, phonons=2, seed=5)
    block = block_with(label={**BLOCK["label"], "smoothing_threshold": 0.5})
    images, masks, records = draw_images(
        full, particle, SAMPLING_A, ENERGY_EV, block, np.random.default_rng(11)
    )
    for mask, record in zip(masks, records):
        y0, x0 = record["crop_y0_px"], record["crop_x0_px"]
        window = truth[y0 : y0 + 96, x0 : x0 + 96]
        if window.sum() > 500:  # enough particle in view for a meaningful overlap
            assert iou(mask.astype(bool), window) >= 0.8
        assert np.isclose(record["particle_fraction"], mask.mean())


@pytest.mark.parametrize("grow_A", [1.0, -1.0, 0.3])
def test_grow_mask_moves_the_outline_by_grow_A(grow_A):
    """A disc of radius r becomes a disc of radius r + grow_A (to half a pixel), wherever it
    sits: across the periodic edge it is the same as in the middle."""
    shape, radius_px = (200, 200), 30
    truth = disk(shape, radius_px)
    grown = grow_mask(truth, grow_A, SAMPLING_A)
    radius_A = np.sqrt(grown.sum() / np.pi) * SAMPLING_A[0]
    assert abs(radius_A - (radius_px * SAMPLING_A[0] + grow_A)) < 0.5 * SAMPLING_A[0]
    assert (grown >= truth).all() if grow_A > 0 else (grown <= truth).all()
    at_corner = grow_mask(np.roll(truth, (100, 100), axis=(0, 1)), grow_A, SAMPLING_A)
    assert np.array_equal(np.roll(at_corner, (-100, -100), axis=(0, 1)), grown)
    assert np.array_equal(grow_mask(truth, 0.0, SAMPLING_A), truth)


def test_footprint_label_is_the_same_for_every_lens():
    """label.lens none: every draw's mask is the particle wave's own footprint at focus, whatever
    defocus and Cs the image got; with the image's lens the masks follow the draws."""
    shape = (160, 160)
    truth = disk(shape, 30)
    particle = np.stack([np.exp(1j * 0.8 * truth)] * 2).astype(np.complex64)
    full = particle * weak_phase_object(shape, phonons=2, seed=5)
    label = {**BLOCK["label"], "smoothing_threshold": 0.5}
    lenses = {
        "defocus_A": {"distribution": "uniform", "low": -1500.0, "high": 1500.0},
        "aberrations": {"preset": "none", "coefficients": {"C30": 1.2e7}},
        "crop_px": None,
    }
    masks = {}
    for lens in ("image", "none"):
        block = validate_block("images", block_with(**lenses, label={**label, "lens": lens}))
        _, masks[lens], records = draw_images(
            full, particle, SAMPLING_A, ENERGY_EV, block, np.random.default_rng(3)
        )
        assert {r["label_lens"] for r in records} == {lens}
    at_focus = particle_mask(
        wave_spectrum(particle), SAMPLING_A, Lens(ENERGY_EV), "phase", 0.2618, 3.0, 0.5
    )
    assert all(np.array_equal(m, at_focus) for m in masks["none"])
    assert iou(at_focus, truth) >= 0.9
    assert not all(np.array_equal(m, masks["image"][0]) for m in masks["image"][1:])


# --- draw_images: contract --------------------------------------------------------------------


def test_draw_images_shapes_records_and_ranges():
    full, particle = demo_waves()
    images, masks, records = draw_images(
        full, particle, SAMPLING_A, ENERGY_EV, BLOCK, np.random.default_rng(7)
    )
    assert images.shape == masks.shape == (4, 96, 96)
    assert images.dtype == np.float32 and masks.dtype == np.uint8
    assert set(np.unique(masks)) <= {0, 1}
    assert len(records) == 4
    json.dumps(records)  # JSON-serializable
    required = {
        "image_index",
        "defocus_A",
        "aberration_C30",
        "focal_spread_sigma_A",
        "focal_spread_samples",
        "dose_e_per_A2",
        "pixel_size_A",
        "crop_y0_px",
        "crop_x0_px",
        "frozen_phonons_used",
        "label_method",
        "label_threshold",
        "mean_counts",
        "particle_fraction",
    }
    for i, (record, image) in enumerate(zip(records, images)):
        assert required <= set(record)
        assert record["image_index"] == i
        assert -100.0 <= record["defocus_A"] <= 100.0
        assert 400.0 <= record["dose_e_per_A2"] <= 1000.0
        assert record["aberration_C30"] == CS_A and record["aberration_C12"] == 0.0
        assert record["focal_spread_sigma_A"] == 15.0 and record["focal_spread_samples"] == 9
        assert record["frozen_phonons_used"] == 3
        assert 0 <= record["crop_y0_px"] <= 128 - 96 and 0 <= record["crop_x0_px"] <= 128 - 96
        assert np.isclose(record["mean_counts"], image.mean())
        # mean counts track dose x pixel area (the weak object and median filter shift it little)
        assert abs(record["mean_counts"] / record["expected_counts_per_px"] - 1) < 0.05
    assert len({r["defocus_A"] for r in records}) == 4  # drawn per image


def test_single_phonon_mode_uses_phonon_zero():
    full, particle = demo_waves()
    block = block_with(frozen_phonons="single", draws_per_structure=1)
    one = draw_images(full, particle, SAMPLING_A, ENERGY_EV, block, np.random.default_rng(2))
    only_first = draw_images(
        full[:1], particle[:1], SAMPLING_A, ENERGY_EV, block, np.random.default_rng(2)
    )
    assert one[2][0]["frozen_phonons_used"] == 1
    assert np.array_equal(one[0], only_first[0]) and np.array_equal(one[1], only_first[1])


def test_draw_images_is_deterministic():
    full, particle = demo_waves()
    a = draw_images(full, particle, SAMPLING_A, ENERGY_EV, BLOCK, np.random.default_rng(5))
    b = draw_images(full, particle, SAMPLING_A, ENERGY_EV, BLOCK, np.random.default_rng(5))
    c = draw_images(full, particle, SAMPLING_A, ENERGY_EV, BLOCK, np.random.default_rng(6))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    assert not np.array_equal(a[0], c[0])


def test_crop_larger_than_image_raises():
    full, particle = demo_waves()
    with pytest.raises(ValueError, match="crop_px"):
        draw_images(
            full,
            particle,
            SAMPLING_A,
            ENERGY_EV,
            block_with(crop_px=[200, 64]),
            np.random.default_rng(0),
        )
    # the crop is checked against the detector image, after resampling to its pixel size
    with pytest.raises(ValueError, match="crop_px"):
        draw_images(
            full,
            particle,
            SAMPLING_A,
            ENERGY_EV,
            block_with(pixel_size_A=0.4, crop_px=[96, 96]),
            np.random.default_rng(0),
        )


def test_bad_block_values_raise():
    full, particle = demo_waves()
    rng = np.random.default_rng(0)
    # block values: one home, config validation (before any job; library callers use it too)
    with pytest.raises(ValueError, match="images.block.frozen_phonons"):
        validate_block("images", block_with(frozen_phonons="some"))
    with pytest.raises(ValueError, match="images.block.label.method"):
        validate_block("images", block_with(label={**BLOCK["label"], "method": "edges"}))
    with pytest.raises(ValueError, match="'plasmons' is a required property"):
        validate_block("images", {k: v for k, v in BLOCK.items() if k != "plasmons"})
    with pytest.raises(ValueError, match="images.block.focal_points: 3 does not divide"):
        validate_block("images", block_with(focal_points=3))
    # invariants of the library's own arguments
    with pytest.raises(ValueError, match="preset"):
        draw_images(
            full, particle, SAMPLING_A, ENERGY_EV, block_with(aberrations={"preset": "team99"}), rng
        )
    with pytest.raises(ValueError, match="unknown symbol"):
        draw_images(
            full,
            particle,
            SAMPLING_A,
            ENERGY_EV,
            block_with(aberrations={"preset": "none", "coefficients": {"C11": 1.0}}),
            rng,
        )
    with pytest.raises(ValueError, match="material"):
        draw_images(
            full,
            particle,
            SAMPLING_A,
            ENERGY_EV,
            block_with(label={**BLOCK["label"], "threshold": {"CdSe": 0.1}}),
            rng,
            material="Au",
        )
    with pytest.raises(ValueError, match="differ in shape"):
        draw_images(full, particle[:2], SAMPLING_A, ENERGY_EV, BLOCK, rng)


# --- residual aberrations: Table S1 preset and per-image randomization -------------------------


def test_table_s1_preset_maps_every_entry():
    """C_{n,m} (n = power of the angle, prefactor 1/n as abTEM's 1/(n'+1)) -> abTEM C{n-1}{m},
    same magnitude in A and angle in rad; round aberrations have no angle."""
    preset = PRESETS["team05_table_s1"]
    assert set(preset) == set(TABLE_S1)
    for symbol, value in TABLE_S1.items():
        assert preset[symbol] == pytest.approx(value, rel=1e-12, abs=1e-12), symbol
    assert PRESETS["none"] == {}


def test_fixed_aberrations_are_the_preset_plus_overrides():
    spec = {
        "preset": "team05_table_s1",
        "coefficients": {"C12": 5.0},
        "magnitude_scale": 1.0,
        "rotation_shift_rad": 0.0,
    }
    drawn = draw_aberrations(spec, np.random.default_rng(0))
    assert "C10" not in drawn  # defocus is drawn on its own
    assert drawn["C12"] == 5.0 and drawn["phi12"] == pytest.approx(TABLE_S1["phi12"])
    assert drawn["C30"] == pytest.approx(CS_A) and drawn["C52"] == 0.0 and drawn["phi52"] == 0.0


def test_randomized_aberrations_follow_their_distributions():
    spec = ALL_EFFECTS["aberrations"]
    rng = np.random.default_rng(1)
    draws = [draw_aberrations(spec, rng) for _ in range(4000)]
    scale = np.array([[d[s] / TABLE_S1[s] for s in ("C12", "C21", "C30", "C50")] for d in draws])
    shift = np.array([[d[s] - TABLE_S1[s] for s in ("phi12", "phi23", "phi56")] for d in draws])
    assert np.allclose(scale.mean(axis=0), 1.0, atol=0.02)
    assert np.allclose(scale.std(axis=0), 0.25, atol=0.015)
    assert np.allclose(shift.mean(axis=0), 0.0, atol=0.05)
    assert np.allclose(shift.std(axis=0), np.pi / 4, atol=0.04)
    # each coefficient gets its own draw
    assert abs(np.corrcoef(scale[:, 0], scale[:, 1])[0, 1]) < 0.05
    assert all(d["C52"] == 0.0 for d in draws[:10])  # absent from the table: stays absent


@pytest.mark.parametrize("coefficients", [PRESETS["team05_table_s1"], COEFFICIENT_SETS[3]])
def test_fused_lens_kernel_matches_the_aberration_phase(coefficients):
    from hrtem_wf.images.kernels import lens_phase_and_step

    ny, nx, sampling = 40, 48, (0.25, 0.2)
    ky = np.fft.fftfreq(ny, sampling[0])
    kx = np.fft.fftfreq(nx, sampling[1])
    wavelength = wavelength_A(ENERGY_EV)
    terms = Lens(ENERGY_EV, aberrations=coefficients).polar_arrays()
    phase, step = lens_phase_and_step(ky, kx, wavelength, *terms, 70.0, 5.0, 0.0)
    chi = aberration_phase(kx[None, :], ky[:, None], wavelength, {**coefficients, "C10": -70.0})
    assert np.abs(np.angle(phase * np.exp(1j * chi))).max() < 1e-8
    chi_next = aberration_phase(
        kx[None, :], ky[:, None], wavelength, {**coefficients, "C10": -75.0}
    )
    assert np.abs(np.angle(phase * step * np.exp(1j * chi_next))).max() < 1e-8


# --- focal spread: temporal envelope ----------------------------------------------------------


def test_focal_spread_damps_a_weak_phase_object_as_the_temporal_envelope():
    """Linear image of a weak phase object: FT(I - 1)(k) ~ 2 Phi(k) sin chi(k). Averaging over a
    Gaussian defocus spread multiplies it by E(k) = exp(-(pi lambda sigma k^2)^2 / 2)."""
    shape, sigma_A = (256, 256), 20.0
    wave = wave_spectrum(weak_phase_object(shape, strength_rad=0.01, seed=4))
    coherent = np.fft.fft2(intensity(wave, SAMPLING_A, Lens(ENERGY_EV, 200.0, CS)) - 1)
    spread = np.fft.fft2(intensity(wave, SAMPLING_A, spread_lens(200.0, sigma_A, 25)) - 1)
    ky = np.fft.fftfreq(shape[0], SAMPLING_A[0])[:, None]
    kx = np.fft.fftfreq(shape[1], SAMPLING_A[1])[None, :]
    k = np.hypot(kx, ky)
    envelope = temporal_envelope(k**2, wavelength_A(ENERGY_EV), sigma_A)
    power = np.abs(coherent) ** 2
    checked = 0
    for low in np.arange(0.2, 2.2, 0.1):
        band = (k >= low) & (k < low + 0.1)
        predicted = (envelope[band] * power[band]).sum() / power[band].sum()
        if predicted < 0.1:
            continue  # too damped to measure against the second-order terms
        measured = (spread[band] * coherent[band].conj()).real.sum() / power[band].sum()
        assert measured == pytest.approx(predicted, rel=0.05), (
            f"|k| in [{low:.1f}, {low + 0.1:.1f})"
        )
        checked += 1
    assert checked >= 8
    assert envelope[k > 1.0].min() < 0.5  # the test covers real damping, not just E ~ 1


def test_quasi_coherent_focal_spread_matches_abtem():
    """abTEM's focal_spread is the 1/e width: sqrt(2) x our sigma."""
    abtem = pytest.importorskip("abtem")
    nx, ny, sx, sy, sigma_A = 48, 40, 0.2, 0.25, 20.0
    wave_xy = weak_phase_object((nx, ny), strength_rad=0.3)[0].astype(np.complex128)
    with abtem.config.set({"precision": "float64"}):
        ctf = abtem.CTF(energy=ENERGY_EV, defocus=80.0, Cs=CS_A, focal_spread=np.sqrt(2) * sigma_A)
        waves = abtem.Waves(wave_xy, energy=ENERGY_EV, sampling=(sx, sy))
        reference = np.asarray(waves.apply_transform(ctf).intensity().compute().array)
    spectrum = wave_spectrum(wave_xy.T)
    lens = Lens(ENERGY_EV, 80.0, CS, sigma_A, "quasi_coherent")
    for fused in (True, False):
        ours = intensity(spectrum, (sy, sx), lens, fused=fused).T
        assert np.abs(ours - reference).max() < 1e-4
    coherent = intensity(spectrum, (sy, sx), lens.coherent()).T
    assert np.abs(coherent - reference).max() > 1e-2


# --- plasmon losses ---------------------------------------------------------------------------


def test_plasmon_losses_keep_the_mean_and_reduce_contrast():
    rng = np.random.default_rng(2)
    images = 1.0 + 0.3 * rng.standard_normal((3, 64, 64))
    images[1] *= 1.2  # phonons with different means get their own renorm
    for weight, background in [(0.5, 1.0), (0.3, 1.0), (0.85, 2.0), (1.0, 1.0)]:
        out = plasmon_losses(images, weight, background)
        for before, after in zip(images, out):
            m = before.mean()
            assert after.mean() == pytest.approx(m, rel=1e-12)
            expected = weight + (1 - weight) * m / (m + background)
            assert after.std() / before.std() == pytest.approx(expected, rel=1e-12)


def test_plasmons_in_image_formation():
    """Through the whole formation: the mean stays 1, the contrast drops by 0.5 + 0.5/2."""
    spectrum = wave_spectrum(weak_phase_object((96, 96), phonons=2, strength_rad=0.2))
    plain = intensity(spectrum, SAMPLING_A, spread_lens(60.0, 15.0))
    lossy = intensity(spectrum, SAMPLING_A, spread_lens(60.0, 15.0), plasmon=(0.5, 1.0))
    assert lossy.mean() == pytest.approx(plain.mean(), abs=1e-6)
    assert lossy.std() / plain.std() == pytest.approx(0.75, rel=1e-4)


# --- detector: dose, MTF, median --------------------------------------------------------------


def test_poisson_counts_mean_and_variance_equal_dose_times_pixel_area():
    rng = np.random.default_rng(3)
    image = np.ones((512, 512))
    image[:, 256:] = 0.4  # two intensity levels
    dose, pixel_A = 300.0, 0.2
    counts = detector_counts(image, dose, pixel_A, rng)
    for level, region in [(1.0, counts[:, :256]), (0.4, counts[:, 256:])]:
        expected = level * dose * pixel_A**2
        assert region.mean() == pytest.approx(expected, rel=0.02)
        assert region.var() == pytest.approx(expected, rel=0.02)  # shot noise: variance = mean


def test_mtf_shapes_white_noise_as_mtf_squared():
    rng = np.random.default_rng(8)
    n = 1024
    noise = rng.standard_normal((n, n))
    c1, c2, c3 = 0.1, 0.5, 2.5
    blurred = apply_mtf(noise, c1, c2, c3)
    assert blurred.mean() == pytest.approx(noise.mean(), abs=1e-6)  # MTF(0) = 1
    q = np.hypot(np.fft.fftfreq(n)[:, None], np.fft.fftfreq(n)[None, :])  # cycles per pixel
    power = np.abs(np.fft.fft2(blurred)) ** 2 / n**2  # white noise of unit variance: 1
    expected = mtf(q, c1, c2, c3) ** 2
    assert mtf(0.5, c1, c2, c3) == pytest.approx((1 - c1) / 2 + c1)  # half-way at q = c2 q_N x 2
    for low in np.arange(0.02, 0.5, 0.04):
        band = (q >= low) & (q < low + 0.04)
        assert power[band].mean() == pytest.approx(expected[band].mean(), rel=0.05), low


def test_median_kernel_equals_scipy():
    import scipy.ndimage

    rng = np.random.default_rng(0)
    for shape in [(5, 7), (64, 80), (257, 256)]:
        counts = rng.poisson(20, shape).astype(np.float32)
        assert np.array_equal(
            median_filter(counts, 3), scipy.ndimage.median_filter(counts, 3, mode="wrap")
        )
    counts = rng.standard_normal((64, 64)).astype(np.float32)
    assert np.array_equal(
        median_filter(counts, 5), scipy.ndimage.median_filter(counts, 5, mode="wrap")
    )


# --- fused CPU kernels against the array expressions (the code CuPy runs) ---------------------


def test_fused_kernels_equal_the_generic_path():
    waves = weak_phase_object((80, 96), phonons=3, strength_rad=0.3, seed=9)
    waves[1] *= 0.9  # phonons with different means
    spectrum = wave_spectrum(waves)
    for method in ("incoherent", "quasi_coherent"):
        lens = spread_lens(-120.0, 18.0, 25, PRESETS["team05_table_s1"], focal_spread_method=method)
        fused = intensity(spectrum, SAMPLING_A, lens, plasmon=(0.4, 1.0), fused=True)
        generic = intensity(spectrum, SAMPLING_A, lens, plasmon=(0.4, 1.0), fused=False)
        assert np.abs(fused / generic - 1).max() < 1e-5
    particle = np.exp(1j * 0.6 * disk((80, 96), 20)).astype(np.complex64)[None].repeat(3, 0)
    particle[1] *= np.exp(-0.3j)
    particle, lens = wave_spectrum(particle), Lens(ENERGY_EV, 40.0, CS)
    for method, threshold in [("phase", 0.2618), ("phase", -0.5), ("intensity", 0.05)]:
        masks = [
            particle_mask(particle, SAMPLING_A, lens, method, threshold, fused=f)
            for f in (True, False)
        ]
        assert masks[0].any() and np.array_equal(*masks)


# --- all effects in one draw ------------------------------------------------------------------


def test_all_effects_draw_records_every_parameter():
    full, particle = demo_waves()
    block = block_with(
        ALL_EFFECTS,
        crop_px=[96, 96],
        draws_per_structure=6,
        label={**BLOCK["label"], "threshold": {"Au": 0.2618, "CdSe": 0.1}},
    )
    images, masks, records = draw_images(
        full, particle, SAMPLING_A, ENERGY_EV, block, np.random.default_rng(3), material="Au"
    )
    json.dumps(records)
    for record in records:
        assert record["aberration_preset"] == "team05_table_s1"
        assert record["aberration_C12"] != TABLE_S1["C12"]  # randomized
        assert record["aberration_C52"] == 0.0
        assert 10.0 <= record["focal_spread_sigma_A"] <= 25.0
        assert record["focal_spread_samples"] == 25
        assert record["plasmons"] and 0.3 <= record["plasmon_weight"] <= 0.85
        assert record["plasmon_background"] == 1.0
        assert 200.0 <= record["dose_e_per_A2"] <= 700.0
        assert -400.0 <= record["defocus_A"] <= 400.0
        assert record["detector_mtf"] and record["mtf_c3"] == 2.5
        assert record["blur_sigma_px"] == 0.5 and record["median_filter_px"] == 3
        assert record["material"] == "Au" and record["label_threshold"] == 0.2618
        assert abs(record["mean_counts"] / record["expected_counts_per_px"] - 1) < 0.05
    assert len({r["plasmon_weight"] for r in records}) == 6


def test_effects_switched_off_record_neutral_values():
    full, particle = demo_waves()
    _, _, records = draw_images(
        full, particle, SAMPLING_A, ENERGY_EV, BLOCK, np.random.default_rng(3)
    )
    record = records[0]
    assert not record["plasmons"] and record["plasmon_weight"] == 1.0
    assert not record["detector_mtf"] and record["mtf_c1"] is None
    assert record["aberration_preset"] == "none" and record["aberration_C12"] == 0.0


def test_gpu_device_without_a_gpu_is_a_clear_error():
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            pytest.skip("a GPU is visible")
    except Exception:
        pass
    full, particle = demo_waves()
    with pytest.raises(RuntimeError, match="gpu"):
        draw_images(
            full,
            particle,
            SAMPLING_A,
            ENERGY_EV,
            block_with(device="gpu"),
            np.random.default_rng(0),
        )


def test_focal_points_share_the_lens_and_doses_form_a_grid():
    """The study's Baseline: 4 defoci per structure, each imaged at the 5 doses."""
    full, particle = demo_waves()
    block = block_with(
        draws_per_structure=20,
        focal_points=4,
        defocus_A={"distribution": "normal", "mean": 30.0, "sd": 20.0},
        dose_e_per_A2={"distribution": "sequence", "values": [100, 300, 600, 900, 1200]},
    )
    images, masks, records = draw_images(
        full, particle, SAMPLING_A, ENERGY_EV, block, np.random.default_rng(1)
    )
    assert [r["focal_point"] for r in records] == [i // 5 for i in range(20)]
    assert [r["dose_e_per_A2"] for r in records] == [100, 300, 600, 900, 1200] * 4
    defoci = [r["defocus_A"] for r in records]
    assert len(set(defoci)) == 4 and all(len(set(defoci[i : i + 5])) == 1 for i in range(0, 20, 5))
    # one noise-free image per focal point: the doses only scale it (before the Poisson noise)
    a, b = images[0].astype(float), images[4].astype(float)
    assert b.mean() / a.mean() == pytest.approx(1200 / 100, rel=0.05)


def test_focal_series_with_jitter():
    """Varying Substrate: 11 focal points -50..+50 nm in 10 nm steps, each +- N(0, 2 nm)."""
    full, particle = demo_waves()
    grid = list(np.arange(-500.0, 501.0, 100.0))
    block = block_with(
        draws_per_structure=22,
        focal_points=11,
        defocus_A={"distribution": "sequence", "values": grid, "jitter_sd": 20.0},
    )
    _, _, records = draw_images(
        full, particle, SAMPLING_A, ENERGY_EV, block, np.random.default_rng(2)
    )
    defoci = np.array([r["defocus_A"] for r in records[::2]])
    offsets = defoci - np.array(grid)
    assert np.abs(offsets).max() < 100 and 0 < np.abs(offsets).mean() < 40
    with pytest.raises(ValueError, match="divide"):
        validate_block("images", block_with(draws_per_structure=5, focal_points=2))


def test_repeats_of_a_focal_point_share_the_noise_free_image(monkeypatch):
    """Fixed plasmons: one image formation per focal point; drawn plasmons: one per image."""
    import hrtem_wf.images.draw as draw

    calls = []
    real = draw.intensity
    monkeypatch.setattr(
        draw, "intensity", lambda *args, **kwargs: calls.append(1) or real(*args, **kwargs)
    )
    full, particle = demo_waves()
    fixed = block_with(
        draws_per_structure=6, focal_points=2, plasmons={"weight": 0.5, "background": 1.0}
    )
    draw_images(full, particle, SAMPLING_A, ENERGY_EV, fixed, np.random.default_rng(0))
    assert len(calls) == 2
    drawn = block_with(draws_per_structure=6, focal_points=2, plasmons=ALL_EFFECTS["plasmons"])
    calls.clear()
    draw_images(full, particle, SAMPLING_A, ENERGY_EV, drawn, np.random.default_rng(0))
    assert len(calls) == 6


# --- the detector as distributions (Madsen 2018: the sampling jittered per image) -------------

# BLOCK drawn from demo_waves with seed 7 by the code before the detector could be drawn
# (commit 390fe0f): a detector of fixed numbers draws nothing, so the stream and the images
# stay what they were. (defocus_A, dose_e_per_A2, crop_y0_px, crop_x0_px, mean_counts)
BEFORE_DETECTOR_DRAWS = [
    (25.019093320933393, 938.3282805817453, 26, 11, 37.46733940972222),
    (81.77370291296455, 489.1204035267687, 23, 28, 19.39008246527778),
    (-80.1367213010965, 582.7092645286994, 0, 5, 23.19184027777778),
    (-54.76413261399007, 788.5316278493207, 15, 22, 31.3876953125),
]

JITTERED_DETECTOR = {
    "pixel_size_A": {"distribution": "uniform", "low": 0.2, "high": 0.3},
    "mtf": {
        "c1": {"distribution": "uniform", "low": 0.05, "high": 0.2},
        "c2": {"distribution": "choice", "values": [0.4, 0.6]},
        "c3": {"distribution": "normal", "mean": 2.5, "sd": 0.3, "min": 2.0, "max": 3.0},
    },
    "blur_sigma_px": {"distribution": "uniform", "low": 0.0, "high": 1.0},
    "median_filter_px": 3,
}


def test_fixed_detector_keeps_the_random_stream_and_the_images():
    full, particle = demo_waves()
    _, _, records = draw_images(
        full, particle, SAMPLING_A, ENERGY_EV, BLOCK, np.random.default_rng(7)
    )
    for record, (defocus, dose, y0, x0, mean_counts) in zip(records, BEFORE_DETECTOR_DRAWS):
        assert (record["defocus_A"], record["dose_e_per_A2"]) == (defocus, dose)
        assert (record["crop_y0_px"], record["crop_x0_px"]) == (y0, x0)
        assert record["mean_counts"] == pytest.approx(mean_counts, rel=1e-6)
        assert record["pixel_size_A"] == record["nominal_pixel_size_A"] == 0.2
    # every detector value as a number or as {distribution: fixed}: the same bytes and stream
    numbers = block_with(
        pixel_size_A=0.3, crop_px=[64, 64], blur_sigma_px=0.7, mtf={"c1": 0.2, "c2": 0.4, "c3": 2.0}
    )
    fixed = copy.deepcopy(numbers)
    for values in (fixed["detector"], fixed["detector"]["mtf"]):
        for key in ("pixel_size_A", "blur_sigma_px", "c1", "c2", "c3"):
            if key in values:
                values[key] = {"distribution": "fixed", "value": values[key]}
    rngs = np.random.default_rng(11), np.random.default_rng(11)
    a = draw_images(full, particle, SAMPLING_A, ENERGY_EV, numbers, rngs[0])
    b = draw_images(full, particle, SAMPLING_A, ENERGY_EV, validate_block("images", fixed), rngs[1])
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes() and a[2] == b[2]
    assert rngs[0].random() == rngs[1].random()
    assert a[2][0]["pixel_size_A"] == 0.3 and a[2][0]["mtf_c1"] == 0.2


def test_drawn_detector_values_lie_in_their_support_are_used_and_recorded(monkeypatch):
    import hrtem_wf.images.draw as draw

    used = {"mtf": [], "blur": [], "resampled_to": []}
    real_mtf, real_blur, real_resample = (
        draw.apply_mtf,
        draw.gaussian_blur,
        draw.resample_to_pixel_size,
    )
    monkeypatch.setattr(
        draw, "apply_mtf", lambda image, *c: used["mtf"].append(c) or real_mtf(image, *c)
    )
    monkeypatch.setattr(
        draw, "gaussian_blur", lambda image, s: used["blur"].append(s) or real_blur(image, s)
    )
    monkeypatch.setattr(
        draw,
        "resample_to_pixel_size",
        lambda image, sampling, size: (
            used["resampled_to"].append(size) or real_resample(image, sampling, size)
        ),
    )
    full, particle = demo_waves()  # 128 x 128 px at 0.2 A: 85 px at the largest pixel size
    block = validate_block(
        "images", block_with(draws_per_structure=8, detector=JITTERED_DETECTOR, crop_px=[80, 80])
    )
    images, masks, records = draw_images(
        full, particle, SAMPLING_A, ENERGY_EV, block, np.random.default_rng(4)
    )
    assert images.shape == masks.shape == (8, 80, 80)
    json.dumps(records)
    for key in ("pixel_size_A", "mtf_c1", "mtf_c2", "mtf_c3", "blur_sigma_px"):
        assert len({r[key] for r in records}) > 1, f"{key} is drawn per image"
    for record in records:
        pixel_size_A = record["pixel_size_A"]
        assert 0.2 <= pixel_size_A <= 0.3 and record["nominal_pixel_size_A"] == 0.25
        assert record["detector_height_px"] == round(128 * 0.2 / pixel_size_A)
        assert record["expected_counts_per_px"] == record["dose_e_per_A2"] * pixel_size_A**2
        assert abs(record["mean_counts"] / record["expected_counts_per_px"] - 1) < 0.05
        assert 0.05 <= record["mtf_c1"] <= 0.2 and record["mtf_c2"] in (0.4, 0.6)
        assert 2.0 <= record["mtf_c3"] <= 3.0 and 0.0 <= record["blur_sigma_px"] <= 1.0
    # the values recorded are the values used
    assert used["mtf"] == [(r["mtf_c1"], r["mtf_c2"], r["mtf_c3"]) for r in records]
    assert used["blur"] == [r["blur_sigma_px"] for r in records]
    # each image: the noise-free image and the label mask resampled to its own pixel size
    assert used["resampled_to"] == [r["pixel_size_A"] for r in records for _ in range(2)]


def _absorbing_disk_waves(shape=(160, 160), radius_px=25):
    """A centred disk that absorbs (|I - 1| = 0.75 inside) on vacuum, two phonons."""
    particle = np.stack([1.0 - 0.5 * disk(shape, radius_px)] * 2).astype(np.complex64)
    return particle.copy(), particle


def test_drawn_pixel_size_resamples_image_and_mask_alike():
    """The particle (radius 25 px x 0.2 A = 5 A) keeps its area in A^2 at every drawn pixel size,
    and its mask covers its dark pixels in the image."""
    full, particle = _absorbing_disk_waves()  # 32 A: 80 px at 0.4 A, the crop always holds it
    block = validate_block(
        "images",
        block_with(
            draws_per_structure=10,
            defocus_A=0.0,
            aberrations={"preset": "none"},
            dose_e_per_A2=5000.0,
            detector={
                **BLOCK["detector"],
                "pixel_size_A": {"distribution": "uniform", "low": 0.25, "high": 0.4},
            },
            crop_px=[80, 80],
            label={
                "method": "intensity",
                "threshold": 0.3,
                "smoothing_sigma_px": 1.0,
                "smoothing_threshold": 0.5,
            },
        ),
    )
    images, masks, records = draw_images(
        full, particle, SAMPLING_A, ENERGY_EV, block, np.random.default_rng(2)
    )
    pixel_sizes = np.array([r["pixel_size_A"] for r in records])
    assert pixel_sizes.min() < 0.3 and pixel_sizes.max() > 0.35  # the draws span the range
    areas_A2 = masks.reshape(len(masks), -1).sum(axis=1) * pixel_sizes**2
    assert np.allclose(areas_A2, np.pi * 5.0**2, rtol=0.05)
    assert areas_A2.max() / areas_A2.min() < 1.06
    for image, mask in zip(images, masks):
        dark = image < 0.5 * np.median(image)  # 1/4 of the vacuum counts inside the disk
        assert iou(dark, mask.astype(bool)) > 0.9


def test_drawn_pixel_size_needs_a_crop_that_fits_the_largest():
    full, particle = demo_waves()  # 128 px at 0.2 A: 64 px at 0.4 A
    drawn = {"distribution": "uniform", "low": 0.2, "high": 0.4}
    too_large = block_with(pixel_size_A=drawn, crop_px=[72, 72])  # fits at 0.2 A to 0.35 A
    with pytest.raises(ValueError, match=r"crop_px \[72, 72\] is larger than the detector image"):
        draw_images(full, particle, SAMPLING_A, ENERGY_EV, too_large, np.random.default_rng(0))
    with pytest.raises(ValueError, match="images.block.detector.pixel_size_A: a drawn pixel size"):
        validate_block("images", block_with(pixel_size_A=drawn, crop_px=None))
    with pytest.raises(ValueError, match="images.block.detector.pixel_size_A: needs a largest"):
        validate_block(
            "images",
            block_with(
                pixel_size_A={"distribution": "normal", "mean": 0.3, "sd": 0.01, "min": 0.2}
            ),
        )
    images, _, _ = draw_images(
        full,
        particle,
        SAMPLING_A,
        ENERGY_EV,
        block_with(pixel_size_A=drawn, crop_px=[64, 64]),
        np.random.default_rng(0),
    )
    assert images.shape == (4, 64, 64)


# --- focal series (Madsen 2018 section 4.3, Larsen 2023) ---------------------------------------


def test_a_focal_series_of_one_offset_zero_is_the_single_image_draw():
    """One channel at offset 0 draws the same random stream and images as no series."""
    full, particle = demo_waves()
    single = draw_images(full, particle, SAMPLING_A, ENERGY_EV, BLOCK, np.random.default_rng(4))
    block = block_with(focal_series={"offsets_A": [0.0]})
    series = draw_images(full, particle, SAMPLING_A, ENERGY_EV, block, np.random.default_rng(4))
    assert series[0].shape == (4, 1, 96, 96) and series[1].shape == (4, 96, 96)
    assert np.array_equal(series[0][:, 0], single[0]) and np.array_equal(series[1], single[1])
    assert [r["focal_series_offsets_A"] for r in series[2]] == [[0.0]] * 4


def test_focal_series_images_are_at_the_drawn_defocus_plus_each_offset(monkeypatch):
    """Each channel is the image at defocus + offset (the lens otherwise shared), with its own
    noise; the label is the drawn defocus's."""
    import hrtem_wf.images.draw as draw

    full, particle = demo_waves()
    seen = []
    real = draw.intensity

    def recording(spectrum, sampling, lens, **kwargs):
        seen.append(lens.defocus_A)
        return real(spectrum, sampling, lens, **kwargs)

    monkeypatch.setattr(draw, "intensity", recording)
    offsets = [-170.0, -40.0, 90.0]
    block = block_with(draws_per_structure=2, focal_series={"offsets_A": offsets})
    images, masks, records = draw_images(
        full, particle, SAMPLING_A, ENERGY_EV, block, np.random.default_rng(9)
    )
    assert images.shape == (2, 3, 96, 96) and masks.shape == (2, 96, 96)
    expected = [r["defocus_A"] + o for r in records for o in offsets]
    np.testing.assert_allclose(seen, expected)
    # the channels differ by their lens, not only by their noise: correlate the noise-free images
    # of the draw with the channels
    noise_free = [
        real(draw.wave_spectrum(full), SAMPLING_A, spread_lens(d, 15.0)) for d in expected[:3]
    ]
    y0, x0 = records[0]["crop_y0_px"], records[0]["crop_x0_px"]
    for channel in range(3):
        correlations = [
            np.corrcoef(images[0, channel].ravel(), nf[y0 : y0 + 96, x0 : x0 + 96].ravel())[0, 1]
            for nf in noise_free
        ]
        assert int(np.argmax(correlations)) == channel
