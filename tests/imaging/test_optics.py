"""Conventional-microscope optics: objective aperture, spatial coherence, image blur.

Each against an independent reference: abTEM 1.0's own Aperture / SpatialEnvelope / CTF objects,
Kirkland's analytic envelope, scipy.ndimage.gaussian_filter."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.ndimage

from conftest import BLOCK, CS, CS_A, ENERGY_EV, SAMPLING_A, demo_waves, weak_phase_object
from hrtem_wf.config import ConfigError, validate_block
from hrtem_wf.images import Lens, draw_images, intensity, particle_mask, wavelength_A
from hrtem_wf.images.formation import (
    objective_aperture,
    spatial_envelope,
    wave_spectrum,
    waves_at_defocus,
)

# Non-square grid with different samplings (abTEM arrays are (x, y)): a swapped axis shows.
NX, NY, SX, SY = 48, 40, 0.2, 0.25
LENS = {"C12": 20.0, "phi12": 0.7, "C21": 300.0, "phi21": -1.1, "C23": 150.0, "phi23": 2.0}


def abtem_kernel(abtem, transfer):
    """abTEM's reciprocal-space kernel of a transfer function, (x, y): its output for a delta."""
    delta = np.zeros((NX, NY), dtype=np.complex128)
    delta[0, 0] = 1.0
    waves = abtem.Waves(delta, energy=ENERGY_EV, sampling=(SX, SY))
    return np.fft.fft2(np.asarray(waves.apply_transform(transfer).compute().array))


def abtem_image(abtem, wave_xy, **ctf):
    waves = abtem.Waves(wave_xy, energy=ENERGY_EV, sampling=(SX, SY))
    return np.asarray(
        waves.apply_transform(abtem.CTF(energy=ENERGY_EV, **ctf)).intensity().compute().array
    )


def angles_mrad(shape_yx, sampling_A):
    ky = np.fft.fftfreq(shape_yx[0], sampling_A[0])[:, None]
    kx = np.fft.fftfreq(shape_yx[1], sampling_A[1])[None, :]
    return 1e3 * wavelength_A(ENERGY_EV) * np.hypot(kx, ky)


# --- objective aperture -----------------------------------------------------------------------


@pytest.mark.parametrize("semiangle_mrad", [7.3, 15.0, 30.0])
def test_aperture_equals_abtem_soft_aperture(semiangle_mrad):
    abtem = pytest.importorskip("abtem")
    with abtem.config.set({"precision": "float64"}):
        kernel = abtem_kernel(
            abtem, abtem.Aperture(semiangle_cutoff=semiangle_mrad, energy=ENERGY_EV)
        )
    ours = objective_aperture((NY, NX), (SY, SX), wavelength_A(ENERGY_EV), semiangle_mrad).T
    edge = (ours > 0) & (ours < 1)
    assert edge.sum() > 10  # the soft edge is on the grid, not only 0 and 1
    assert np.abs(ours - kernel.real).max() < 1e-9 and np.abs(kernel.imag).max() < 1e-9


def test_aperture_image_equals_abtem_ctf_image():
    """Same weak object, defocus, Cs, astigmatism, coma, trefoil and a 12 mrad aperture."""
    abtem = pytest.importorskip("abtem")
    wave_xy = weak_phase_object((NX, NY), strength_rad=0.3)[0].astype(np.complex128)
    with abtem.config.set({"precision": "float64"}):
        reference = abtem_image(
            abtem, wave_xy, defocus=80.0, Cs=CS_A, semiangle_cutoff=12.0, **LENS
        )
        open_lens = abtem_image(abtem, wave_xy, defocus=80.0, Cs=CS_A, **LENS)
    assert np.abs(reference - open_lens).max() > 0.05  # the aperture matters on this object
    lens = Lens(ENERGY_EV, 80.0, {**LENS, **CS}, objective_aperture_mrad=12.0)
    for fused in (True, False):
        ours = intensity(wave_spectrum(wave_xy.T), (SY, SX), lens, fused=fused).T
        assert np.abs(ours - reference).max() < 5e-6


def test_no_power_beyond_the_aperture():
    waves = weak_phase_object((96, 128), phonons=2, strength_rad=0.3)
    semiangle = 10.0
    alpha = angles_mrad((96, 128), SAMPLING_A)
    step = 1e3 * wavelength_A(ENERGY_EV) / (96 * SAMPLING_A[0])  # the coarser angular step
    lens = Lens(
        ENERGY_EV,
        60.0,
        CS,
        focal_spread_sigma_A=15.0,
        focal_spread_samples=9,
        objective_aperture_mrad=semiangle,
    )
    for fused in (True, False):
        lensed = waves_at_defocus(wave_spectrum(waves), SAMPLING_A, lens, fused)
        power = np.abs(np.fft.fft2(lensed)) ** 2
        outside = alpha > semiangle + step / 2  # beyond the soft edge
        assert outside.sum() > 0.5 * alpha.size
        assert power[:, outside].sum() < 1e-12 * power.sum()
        # the image is the wave's autocorrelation in Fourier space: nothing beyond 2 alpha_c
        image = intensity(wave_spectrum(waves), SAMPLING_A, lens, fused=fused)
        image_power = np.abs(np.fft.fft2(image - image.mean())) ** 2
        # complex64 waves: round-off leaves ~1e-12 of the power there
        assert image_power[alpha > 2 * semiangle + step].sum() < 1e-10 * image_power.sum()


def test_label_wave_passes_the_same_aperture():
    """Our mask with the aperture equals our mask of the waves through abTEM's Aperture."""
    abtem = pytest.importorskip("abtem")
    shape = (NY, NX)
    y, x = np.mgrid[:NY, :NX]
    disk = (y - 20) ** 2 + (x - 24) ** 2 < 10**2
    particle = np.exp(1j * 0.6 * disk).astype(np.complex64)[None].repeat(3, 0)
    particle[1] *= np.exp(-0.2j)
    with abtem.config.set({"precision": "float64"}):
        aperture = abtem.Aperture(semiangle_cutoff=8.0)
        apertured = np.stack(
            [
                np.asarray(
                    abtem.Waves(p.T, energy=ENERGY_EV, sampling=(SX, SY))
                    .apply_transform(aperture)
                    .compute()
                    .array
                ).T
                for p in particle.astype(np.complex128)
            ]
        )
    particle, apertured = wave_spectrum(particle), wave_spectrum(apertured)
    at_focus = Lens(ENERGY_EV)
    for fused in (True, False):
        ours = particle_mask(
            particle,
            (SY, SX),
            Lens(ENERGY_EV, objective_aperture_mrad=8.0),
            "phase",
            0.2618,
            fused=fused,
        )
        reference = particle_mask(apertured, (SY, SX), at_focus, "phase", 0.2618)
        plain = particle_mask(particle, (SY, SX), at_focus, "phase", 0.2618)
        assert np.array_equal(ours, reference) and not np.array_equal(ours, plain)
        assert shape == ours.shape


# --- spatial coherence ------------------------------------------------------------------------


@pytest.mark.parametrize("semiangle_mrad", [0.2, 0.8])
def test_spatial_envelope_equals_abtem(semiangle_mrad):
    abtem = pytest.importorskip("abtem")
    lens = {**LENS, "C30": CS_A, "C32": 5000.0, "phi32": 0.4, "C45": 3e4, "phi45": -0.3}
    with abtem.config.set({"precision": "float64"}):
        envelope = abtem.transfer.SpatialEnvelope(
            angular_spread=semiangle_mrad, energy=ENERGY_EV, C10=-150.0, **lens
        )
        kernel = abtem_kernel(abtem, envelope)
    ours = spatial_envelope(
        (NY, NX), (SY, SX), Lens(ENERGY_EV, 150.0, lens, illumination_semiangle_mrad=semiangle_mrad)
    ).T
    assert ours.min() < (0.99 if semiangle_mrad < 0.5 else 0.5)  # real damping on this grid
    assert np.abs(ours - kernel.real).max() < 1e-9 and np.abs(kernel.imag).max() < 1e-9


def test_spatial_envelope_of_pure_defocus_is_kirklands():
    """Kirkland: E_s = exp(-(pi alpha / lambda)^2 (defocus lambda k)^2) = exp(-(pi alpha d k)^2)."""
    shape, sampling, alpha_mrad, defocus_A = (64, 64), (0.2, 0.2), 0.5, 400.0
    lens = Lens(ENERGY_EV, defocus_A, illumination_semiangle_mrad=alpha_mrad)
    ours = spatial_envelope(shape, sampling, lens)
    for index in (1, 5, 12, 20, 31):  # k = index / (64 x 0.2 A) along x
        k = index / (shape[1] * sampling[1])
        expected = np.exp(-((np.pi * alpha_mrad * 1e-3 * defocus_A * k) ** 2))
        assert ours[0, index] == pytest.approx(expected, rel=1e-12, abs=1e-300)
    assert ours[0, 0] == 1.0 and ours[0, 31] < 0.2


def test_partial_coherence_image_equals_abtem_ctf_image():
    """Quasi-coherent: spatial and temporal envelopes and the aperture, as abTEM's CTF."""
    abtem = pytest.importorskip("abtem")
    wave_xy = weak_phase_object((NX, NY), strength_rad=0.3)[0].astype(np.complex128)
    sigma_A, alpha_mrad = 20.0, 1.0
    with abtem.config.set({"precision": "float64"}):
        reference = abtem_image(
            abtem,
            wave_xy,
            defocus=80.0,
            Cs=CS_A,
            focal_spread=np.sqrt(2) * sigma_A,
            angular_spread=alpha_mrad,
            semiangle_cutoff=25.0,
            **LENS,
        )
        temporal_only = abtem_image(
            abtem,
            wave_xy,
            defocus=80.0,
            Cs=CS_A,
            focal_spread=np.sqrt(2) * sigma_A,
            semiangle_cutoff=25.0,
            **LENS,
        )
    assert np.abs(reference - temporal_only).max() > 1e-2
    lens = Lens(
        ENERGY_EV,
        80.0,
        {**LENS, **CS},
        sigma_A,
        "quasi_coherent",
        objective_aperture_mrad=25.0,
        illumination_semiangle_mrad=alpha_mrad,
    )
    for fused in (True, False):
        ours = intensity(wave_spectrum(wave_xy.T), (SY, SX), lens, fused=fused).T
        assert np.abs(ours - reference).max() < 5e-6


def test_incoherent_focal_spread_takes_each_defocus_envelope():
    """The incoherent sum equals the weighted sum of abTEM images, each with its own envelope."""
    abtem = pytest.importorskip("abtem")
    from hrtem_wf.images import focal_spread_defoci

    wave_xy = weak_phase_object((NX, NY), strength_rad=0.3)[0].astype(np.complex128)
    defoci, weights = focal_spread_defoci(-60.0, 30.0, 5, 2.0)
    with abtem.config.set({"precision": "float64"}):
        reference = sum(
            w * abtem_image(abtem, wave_xy, defocus=d, Cs=CS_A, angular_spread=0.7, **LENS)
            for d, w in zip(defoci, weights)
        )
    lens = Lens(ENERGY_EV, -60.0, {**LENS, **CS}, 30.0, "incoherent", 5, 2.0, None, 0.7)
    for fused in (True, False):
        ours = intensity(
            wave_spectrum(wave_xy.T), (SY, SX), lens, plasmon=(0.5, 1.0), fused=fused
        ).T
        # the plasmon model is affine with the mean kept: undo it with the image's own mean
        mean = reference.mean()
        expected = (0.5 + 0.5 * mean / (mean + 1.0)) * reference + 0.5 * mean / (mean + 1.0)
        assert np.abs(ours - expected).max() < 5e-6


# --- image blur -------------------------------------------------------------------------------


def _noise_free_draws(monkeypatch, block):
    """draw_images with the Poisson draw replaced by its mean (the image the detector sees)."""
    import hrtem_wf.images.draw as draw

    monkeypatch.setattr(
        draw,
        "detector_counts",
        lambda image, dose, pixel, rng: (image * dose * pixel**2).astype(np.float32),
    )
    full, particle = demo_waves()
    return draw_images(full, particle, SAMPLING_A, ENERGY_EV, block, np.random.default_rng(4))


def test_blur_is_a_gaussian_of_blur_A_over_the_pixel_size(monkeypatch):
    plain = validate_block(
        "images",
        {
            **BLOCK,
            "crop_px": None,
            "draws_per_structure": 1,
            "detector": {**BLOCK["detector"], "median_filter_px": 1},
        },
    )
    for pixel_size_A, blur_A in [(0.2, 0.8), (0.4, 1.3)]:
        sharp = copy.deepcopy(plain)
        sharp["detector"]["pixel_size_A"] = pixel_size_A
        blurred = {**sharp, "blur_A": blur_A}
        reference, _, _ = _noise_free_draws(monkeypatch, sharp)
        images, _, records = _noise_free_draws(monkeypatch, blurred)
        expected = scipy.ndimage.gaussian_filter(
            reference[0].astype(np.float64), blur_A / pixel_size_A, mode="wrap"
        )
        assert records[0]["blur_A"] == blur_A
        assert np.abs(images[0] - expected).max() < 1e-6 * expected.mean()
        assert images[0].sum(dtype=np.float64) == pytest.approx(
            reference[0].sum(dtype=np.float64), rel=1e-6
        )
        assert images[0].std() < 0.9 * reference[0].std()


def test_blur_is_drawn_per_image(monkeypatch):
    block = {**BLOCK, "blur_A": {"distribution": "uniform", "low": 0.5, "high": 1.5}}
    _, _, records = _noise_free_draws(monkeypatch, validate_block("images", block))
    blurs = [r["blur_A"] for r in records]
    assert len(set(blurs)) == 4 and all(0.5 <= b <= 1.5 for b in blurs)


# --- in draws, records and config -------------------------------------------------------------


def test_defaults_are_bit_identical():
    """The demo block with the new keys absent or at their defaults: the same images and masks."""
    absent = {
        k: v
        for k, v in BLOCK.items()
        if k not in ("objective_aperture_mrad", "illumination_semiangle_mrad", "blur_A")
    }
    explicit = {
        **absent,
        "objective_aperture_mrad": None,
        "illumination_semiangle_mrad": 0.0,
        "blur_A": 0.0,
    }
    coherent = {**explicit, "illumination_semiangle_mrad": None}
    full, particle = demo_waves()
    draws = [
        draw_images(
            full,
            particle,
            SAMPLING_A,
            ENERGY_EV,
            validate_block("images", b),
            np.random.default_rng(11),
        )
        for b in (absent, explicit, coherent)
    ]
    for images, masks, records in draws[1:]:
        assert np.array_equal(images, draws[0][0]) and np.array_equal(masks, draws[0][1])
        assert records == draws[0][2]
    record = draws[0][2][0]
    assert record["objective_aperture_mrad"] is None
    assert record["illumination_semiangle_mrad"] == 0.0 and record["blur_A"] == 0.0


def test_drawn_optics_are_recorded_and_change_the_image():
    block = validate_block(
        "images",
        {
            **BLOCK,
            "objective_aperture_mrad": {"distribution": "uniform", "low": 8.0, "high": 12.0},
            "illumination_semiangle_mrad": {"distribution": "uniform", "low": 0.1, "high": 0.5},
            "blur_A": 0.5,
        },
    )
    full, particle = demo_waves()
    images, masks, records = draw_images(
        full, particle, SAMPLING_A, ENERGY_EV, block, np.random.default_rng(11)
    )
    plain, plain_masks, _ = draw_images(
        full, particle, SAMPLING_A, ENERGY_EV, BLOCK, np.random.default_rng(11)
    )
    for record in records:
        assert 8.0 <= record["objective_aperture_mrad"] <= 12.0
        assert 0.1 <= record["illumination_semiangle_mrad"] <= 0.5
        assert record["blur_A"] == 0.5
    assert len({r["objective_aperture_mrad"] for r in records}) == 4  # one per lens
    assert not np.array_equal(images, plain) and masks.any()


def test_optics_keys_validate_and_bad_values_name_the_key():
    good = validate_block(
        "images",
        {
            **BLOCK,
            "objective_aperture_mrad": 10.0,
            "illumination_semiangle_mrad": {"distribution": "loguniform", "low": 0.05, "high": 0.5},
            "blur_A": {"distribution": "uniform", "low": 0.5, "high": 1.5},
        },
    )
    assert good["objective_aperture_mrad"] == 10.0
    defaults = validate_block("images", {k: v for k, v in BLOCK.items() if k != "blur_A"})
    assert defaults["blur_A"] == 0.0 and defaults["objective_aperture_mrad"] is None
    bad = [
        ("objective_aperture_mrad", -5.0),
        ("objective_aperture_mrad", 0.0),
        ("objective_aperture_mrad", {"distribution": "uniform", "low": -1.0, "high": 10.0}),
        ("objective_aperture_mrad", "wide"),
        ("illumination_semiangle_mrad", -0.1),
        ("illumination_semiangle_mrad", {"distribution": "normal", "mean": 0.2, "sd": 0.1}),
        ("blur_A", -0.5),
        ("blur_A", None),
    ]
    for key, value in bad:
        with pytest.raises(ConfigError, match=f"images.block.{key}"):
            validate_block("images", {**BLOCK, key: value})
