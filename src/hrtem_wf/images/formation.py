"""HRTEM image formation from exit waves: lens, focal spread, plasmons, frozen phonons, detector.

Exit waves are complex arrays of shape (frozen_phonon, ny, nx) normalized as abTEM plane waves
(vacuum = 1 + 0j), sampled at (sy, sx) Angstrom. Intensities are then in units of the incident
intensity (vacuum = 1), so mean counts per pixel = I * dose [e/A^2] * pixel area [A^2].

The order follows the microscope (and DaCosta et al. 2024, methods and SI):
  1. lens: Psi(k) = Psi0(k) A(k) E_s(k) exp(-i chi(k)) for each defocus of the focal-spread
     average, A the objective aperture (abTEM's soft edge) and E_s the spatial-coherence
     envelope of the illumination semi-angle (quasi-coherent, per defocus), both optional;
  2. focal spread: intensities summed over the defocus samples with Gaussian weights
     (incoherent), or one wave damped by the temporal envelope (quasi-coherent);
  3. plasmon losses: I' = w I + (1 - w) renorm(I + b) for each phonon, renorm keeping the mean;
  4. frozen phonons: the mean of the phonons' intensities;
  5. image blur (vibration, drift: a Gaussian of blur_A) on the noise-free image resampled to
     the detector pixels, then the detector: Poisson counts, MTF, blur, median filter.
Steps 1-4 run on numpy or CuPy arrays alike (see backend.py); on the CPU the per-pixel work
between the FFTs runs as fused numba kernels (kernels.py). The detector runs on the host.
Steps 1-2 take their optics from one `Lens` (lens.py); `intensity` takes the exit waves' spectra
(`wave_spectrum`: one forward FFT per phonon, shared by every draw of a structure).
"""

from __future__ import annotations

import numpy as np
import scipy.fft
import scipy.ndimage

from .aberrations import aberration_gradient, aberration_phase, spatial_frequencies
from .backend import array_module, fft2, ifft2
from .lens import Lens


def as_wave_stack(waves: np.ndarray) -> np.ndarray:
    """Waves as complex64 (frozen_phonon, ny, nx); a single (ny, nx) wave gets a phonon axis."""
    xp = array_module(waves)
    waves = xp.asarray(waves)
    if waves.ndim == 2:
        waves = waves[None]
    if waves.ndim != 3:
        raise ValueError(f"exit waves must be (frozen_phonon, ny, nx), got shape {waves.shape}")
    if waves.shape[0] == 0:
        raise ValueError("exit waves have no frozen phonon configurations")
    return waves.astype(xp.complex64, copy=False)


def wave_spectrum(waves: np.ndarray) -> np.ndarray:
    """2D FFT of every phonon's exit wave (one forward FFT per phonon, reused for every draw)."""
    return fft2(as_wave_stack(waves))


def temporal_envelope(k2_per_A2, wavelength: float, focal_spread_sigma_A: float):
    """Quasi-coherent temporal envelope E(k) = exp(-(pi lambda sigma k^2)^2 / 2).

    sigma is the standard deviation of the defocus spread; abTEM's `focal_spread` (Kirkland's
    convention) is the 1/e half-width of the same Gaussian, sqrt(2) sigma."""
    xp = array_module(k2_per_A2)
    return xp.exp(-0.5 * (np.pi * wavelength * float(focal_spread_sigma_A) * k2_per_A2) ** 2)


def objective_aperture(
    shape_yx: tuple[int, int],
    sampling_A: tuple[float, float],
    wavelength: float,
    semiangle_mrad: float,
    xp=np,
) -> np.ndarray:
    """Objective-aperture transmission A(k) (float64, ny, nx, FFT order), abTEM's soft edge.

    A = clip((alpha_c - alpha) / d_alpha(phi) + 1/2, 0, 1) with alpha = lambda |k| and d_alpha(phi)
    = sqrt((cos phi d_alpha_x)^2 + (sin phi d_alpha_y)^2) the grid's angular step along phi (as
    abTEM 1.0's Aperture(soft=True)): a ramp one pixel wide centred on the cutoff, so the image
    changes smoothly with the semi-angle; A(0) = 1. Zero beyond alpha_c + d_alpha / 2."""
    if not semiangle_mrad > 0:
        raise ValueError(f"objective aperture semi-angle must be > 0 mrad, got {semiangle_mrad}")
    ny, nx = shape_yx
    ky, kx = spatial_frequencies(shape_yx, sampling_A, xp)
    alpha = wavelength * xp.sqrt(kx**2 + ky**2)
    phi = xp.arctan2(ky, kx)
    step_y, step_x = wavelength / (ny * sampling_A[0]), wavelength / (nx * sampling_A[1])
    edge = xp.sqrt((xp.cos(phi) * step_x) ** 2 + (xp.sin(phi) * step_y) ** 2)
    aperture = xp.clip((float(semiangle_mrad) * 1e-3 - alpha) / edge + 0.5, 0.0, 1.0)
    aperture[0, 0] = 1.0  # phi is 0 there, but the direct beam always passes
    return aperture


def spatial_envelopes(
    shape_yx: tuple[int, int], sampling_A: tuple[float, float], lens: Lens, xp=np
):
    """defocus_A -> the lens's quasi-coherent spatial envelope E_s(k) (float64, ny, nx, FFT order).

    E_s = exp(-(alpha_i / 2)^2 |grad_alpha chi|^2), alpha_i the illumination semi-angle [rad]:
    abTEM's SpatialEnvelope with angular_spread = alpha_i, Kirkland's exp(-(pi alpha_i /
    lambda)^2 (Cs lambda^3 k^3 - defocus lambda k)^2); pure defocus: exp(-(pi alpha_i defocus
    k)^2). The gradient is linear in defocus, so the fixed aberrations' part is computed once."""
    ky, kx = spatial_frequencies(shape_yx, sampling_A, xp)
    radial, azimuthal = aberration_gradient(kx, ky, lens.wavelength_A, lens.coefficients)
    # d chi / d alpha of C10 = -defocus: 2 pi / lambda C10 alpha = -2 pi k defocus
    radial_per_defocus = -2 * np.pi * xp.sqrt(kx**2 + ky**2)
    azimuthal2 = azimuthal**2
    factor = -((0.5e-3 * lens.illumination_semiangle_mrad) ** 2)

    def at(defocus_A: float):
        return xp.exp(factor * ((radial + float(defocus_A) * radial_per_defocus) ** 2 + azimuthal2))

    return at


def spatial_envelope(
    shape_yx: tuple[int, int], sampling_A: tuple[float, float], lens: Lens, xp=np
) -> np.ndarray:
    """The lens's spatial envelope E_s(k) at its defocus (see spatial_envelopes)."""
    return spatial_envelopes(shape_yx, sampling_A, lens, xp)(lens.defocus_A)


def _aperture(shape_yx, sampling_A, lens: Lens, xp=np):
    """The lens's objective-aperture transmission A(k), or None without an aperture."""
    if lens.objective_aperture_mrad is None:
        return None
    return objective_aperture(
        shape_yx, sampling_A, lens.wavelength_A, lens.objective_aperture_mrad, xp
    )


def lens_transfer(
    shape_yx: tuple[int, int], sampling_A: tuple[float, float], lens: Lens, xp=np
) -> np.ndarray:
    """A(k) E_s,d(k) E_t(k) exp(-i chi_d(k)) for each defocus d of the lens's focal spread,
    complex64 (n_defoci, ny, nx) in FFT order.

    chi is linear in C10 = -defocus, so exp(-i chi_d) = exp(-i chi_fixed) exp(i d chi_1) with
    chi_1 = pi lambda k^2; for evenly spaced defoci the second factor is a running product (no
    sin/cos per sample). E_t is the quasi-coherent temporal envelope (1 for the incoherent
    average), A the objective aperture and E_s,d the spatial envelope at d, each 1 when the lens
    has none."""
    defoci, _, envelope_sigma_A = lens.focal_samples()
    wavelength = lens.wavelength_A
    ky, kx = spatial_frequencies(shape_yx, sampling_A, xp)
    chi_fixed = aberration_phase(kx, ky, wavelength, lens.coefficients)
    k2 = kx**2 + ky**2
    chi_1 = np.pi * wavelength * k2  # d chi / d defocus (abTEM sign: positive = underfocus)
    base = xp.exp(-1j * (chi_fixed - defoci[0] * chi_1))
    if envelope_sigma_A > 0:
        base = base * temporal_envelope(k2, wavelength, envelope_sigma_A)
    aperture = _aperture(shape_yx, sampling_A, lens, xp)
    if aperture is not None:
        base = base * aperture
    transfer = xp.empty((len(defoci), *base.shape), dtype=xp.complex64)
    transfer[0] = base
    steps = np.diff(defoci)
    if len(steps) and np.allclose(steps, steps[0], rtol=1e-12, atol=0.0):
        step = xp.exp(1j * steps[0] * chi_1)
        for index in range(1, len(defoci)):
            base = base * step  # complex128: the rounding after 25 steps is ~1e-14
            transfer[index] = base
    else:
        for index in range(1, len(defoci)):
            transfer[index] = xp.exp(-1j * (chi_fixed - defoci[index] * chi_1))
            if aperture is not None:  # the temporal envelope has one defocus
                transfer[index] *= aperture
    if lens.illumination_semiangle_mrad:
        envelope_at = spatial_envelopes(shape_yx, sampling_A, lens, xp)
        for index, defocus in enumerate(defoci):
            transfer[index] *= envelope_at(defocus)
    return transfer


def waves_after_lens(spectrum: np.ndarray, transfer: np.ndarray) -> np.ndarray:
    """Real-space waves (n_defoci, phonon, ny, nx) = IFFT[Psi0(k) exp(-i chi_d(k))]."""
    return ifft2(transfer[:, None] * spectrum[None], overwrite=True)


def plasmon_losses(intensity: np.ndarray, weight: float, background: float) -> np.ndarray:
    """I' = w I + (1 - w) renorm(I + b), renorm scaling I + b back to the mean of I.

    Applied to each phonon's image (the leading axis), before the phonon average. Linear in I, so
    the contrast (standard deviation) drops by w + (1 - w) <I> / (<I> + b) and the mean stays."""
    xp = array_module(intensity)
    mean = intensity.mean(axis=(-2, -1), keepdims=True, dtype=xp.float64)
    scale, offset = plasmon_affine(mean, weight, background)
    return scale * intensity + offset


def plasmon_affine(mean_intensity, weight: float, background: float):
    """(scale, offset) with I' = scale I + offset: the plasmon model for an image of that mean."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"plasmon weight must be in [0, 1], got {weight}")
    if background < 0:
        raise ValueError(f"plasmon background must be >= 0, got {background}")
    renorm = mean_intensity / (mean_intensity + background)
    return weight + (1.0 - weight) * renorm, (1.0 - weight) * background * renorm


def _fused_lens_phase(
    shape_yx, sampling_A, lens: Lens, defocus_A, step_A, envelope_sigma_A, aperture
):
    """The fused kernels' lens (complex128 phase x temporal envelope x aperture at defocus_A, and
    the phase step to defocus_A + step_A), on the host."""
    from . import kernels

    ky, kx = (f.ravel() for f in spatial_frequencies(shape_yx, sampling_A))
    phase, step = kernels.lens_phase_and_step(
        ky,
        kx,
        lens.wavelength_A,
        *lens.polar_arrays(),
        float(defocus_A),
        step_A,
        float(envelope_sigma_A),
    )
    if aperture is not None:
        phase *= aperture  # the running product by the defocus step keeps it
    return phase, step


def _use_kernels(xp, fused: bool | None) -> bool:
    return xp is np if fused is None else bool(fused)


def _mean_intensities(spectrum, sampling_A, wavelength, envelope_sigma_A, transmission=None):
    """Each phonon's mean image intensity, from its spectrum (Parseval): the lens is unitary,
    so every defocus sample has this mean; the quasi-coherent envelope damps it by E(k)^2, and
    the aperture and spatial envelope by `transmission` = sum_d w_d (A E_s,d)^2."""
    xp = array_module(spectrum)
    n_pixels = spectrum.shape[-2] * spectrum.shape[-1]
    if xp is np and envelope_sigma_A == 0 and transmission is None:  # a BLAS dot per phonon
        return np.array([np.vdot(s, s).real for s in spectrum], dtype=np.float64) / n_pixels**2
    power = spectrum.real.astype(xp.float64) ** 2 + spectrum.imag.astype(xp.float64) ** 2
    if envelope_sigma_A > 0:
        ky, kx = spatial_frequencies(spectrum.shape[-2:], sampling_A, xp)
        power = power * temporal_envelope(kx**2 + ky**2, wavelength, envelope_sigma_A) ** 2
    if transmission is not None:
        power = power * transmission
    return power.sum(axis=(-2, -1)) / n_pixels**2


def intensity(
    spectrum: np.ndarray,
    sampling_A: tuple[float, float],
    lens: Lens,
    *,
    plasmon: tuple[float, float] | None = None,
    fused: bool | None = None,
) -> np.ndarray:
    """Noise-free HRTEM image (float64, ny, nx) from exit-wave spectra (phonon, ny, nx).

    spectrum: `wave_spectrum(waves)` of exit waves normalized as abTEM plane waves (vacuum =
    1 + 0j), sampled at sampling_A = (sy, sx) [A]; lens: the optics (Lens: defocus in abTEM's
    sign, aberrations, focal spread, aperture, spatial coherence); plasmon: (weight, background)
    or None. Computes mean_p [ scale_p sum_d w_d |IFFT(T_d Psi_p)|^2 + offset_p ]: the
    focal-spread sum with Gaussian weights w_d, the plasmon model per phonon (an affine map whose
    coefficients depend only on the phonon's mean intensity, known from its spectrum), then the
    phonon mean. Every lens T_d carries the aperture A(k) and the spatial envelope at its own
    defocus d. Vacuum gives exactly 1 (without an aperture or spatial envelope). The result lives
    where `spectrum` lives. fused: the numba kernels (default for numpy arrays) or the array
    expressions (CuPy, and the reference the tests compare to)."""
    xp = array_module(spectrum)
    n_phonons, ny, nx = spectrum.shape
    defoci, weights, envelope_sigma = lens.focal_samples()
    aperture = _aperture((ny, nx), sampling_A, lens, xp)
    envelope_at = None
    if lens.illumination_semiangle_mrad:
        envelope_at = spatial_envelopes((ny, nx), sampling_A, lens, xp)
    scale = xp.ones(n_phonons, dtype=xp.float64)
    offset = 0.0
    if plasmon is not None:
        transmission = None
        if envelope_at is not None:
            transmission = sum(w * envelope_at(d) ** 2 for w, d in zip(weights, defoci))
        if aperture is not None:
            transmission = aperture**2 if transmission is None else transmission * aperture**2
        means = _mean_intensities(
            spectrum, sampling_A, lens.wavelength_A, envelope_sigma, transmission
        )
        scale, offsets = plasmon_affine(means, *plasmon)
        offset = float(offsets.sum())
    if _use_kernels(xp, fused):
        from . import kernels

        step = float(defoci[1] - defoci[0]) if len(defoci) > 1 else 0.0
        phase, step_phase = _fused_lens_phase(
            (ny, nx), sampling_A, lens, defoci[0], step, envelope_sigma, aperture
        )
        scale = np.asarray(scale, dtype=np.float64)
        buffer = np.empty_like(spectrum)
        acc = np.zeros((ny, nx), dtype=np.float64)

        def envelope(index):  # the spatial envelope changes with defocus: one per sample
            return None if envelope_at is None else envelope_at(defoci[index])

        # sqrt(w_d) goes into the lens, so |psi|^2 comes out weighted
        kernels.apply_lens(spectrum, phase, step_phase, np.sqrt(weights[0]), buffer, envelope(0))
        for index in range(len(weights)):
            buffer = ifft2(buffer, overwrite=True)  # in place
            if index + 1 < len(weights):
                kernels.accumulate_and_apply(
                    buffer,
                    scale,
                    acc,
                    spectrum,
                    phase,
                    step_phase,
                    np.sqrt(weights[index + 1]),
                    envelope(index + 1),
                )
            else:
                kernels.accumulate_intensity(buffer, scale, acc)
    else:
        transfer = lens_transfer((ny, nx), sampling_A, lens, xp=xp)
        acc = xp.zeros((ny, nx), dtype=xp.float64)
        for weight, lens_d in zip(weights, transfer):
            waves = ifft2(spectrum * lens_d[None], overwrite=True)
            acc += weight * xp.tensordot(scale, waves.real**2 + waves.imag**2, axes=1)
    return (acc + offset) / n_phonons


def waves_at_defocus(
    spectrum: np.ndarray, sampling_A: tuple[float, float], lens: Lens, fused: bool | None = None
) -> np.ndarray:
    """Real-space waves (phonon, ny, nx) after the lens's coherent part (`Lens.coherent`: its
    defocus, aberrations and objective aperture; no focal spread, no spatial envelope)."""
    xp = array_module(spectrum)
    shape = spectrum.shape[-2:]
    if _use_kernels(xp, fused):
        from . import kernels

        aperture = _aperture(shape, sampling_A, lens)
        phase, step = _fused_lens_phase(shape, sampling_A, lens, lens.defocus_A, 0.0, 0.0, aperture)
        buffer = np.empty_like(spectrum)
        kernels.apply_lens(spectrum, phase, step, 1.0, buffer)
        return ifft2(buffer, overwrite=True)
    return waves_after_lens(spectrum, lens_transfer(shape, sampling_A, lens.coherent(), xp=xp))[0]


def resampled_shape(
    shape_yx: tuple[int, int], sampling_A: tuple[float, float], pixel_size_A: float
) -> tuple[int, int]:
    """Shape after resampling to the detector pixel size (what scipy.ndimage.zoom produces)."""
    if _same_sampling(sampling_A, pixel_size_A):
        return int(shape_yx[0]), int(shape_yx[1])
    return tuple(int(round(n * s / pixel_size_A)) for n, s in zip(shape_yx, sampling_A))


def _same_sampling(sampling_A: tuple[float, float], pixel_size_A: float) -> bool:
    return bool(np.allclose(sampling_A, pixel_size_A, rtol=1e-9, atol=0.0))


def resample_to_pixel_size(
    image: np.ndarray, sampling_A: tuple[float, float], pixel_size_A: float, order: int = 1
) -> np.ndarray:
    """Image on detector pixels of pixel_size_A; the identity when the sampling already matches.

    grid-wrap keeps the periodic cell's extent and edges (the simulation cell is periodic)."""
    if _same_sampling(sampling_A, pixel_size_A):
        return image
    zoom = [s / pixel_size_A for s in sampling_A]
    out = scipy.ndimage.zoom(image, zoom, order=order, mode="grid-wrap", grid_mode=True)
    assert out.shape == resampled_shape(image.shape, sampling_A, pixel_size_A)
    return out


def detector_counts(
    image: np.ndarray, dose_e_per_A2: float, pixel_size_A: float, rng: np.random.Generator
) -> np.ndarray:
    """Poisson electron counts (float32) with mean image x dose x pixel area.

    Drawn as int64 so high doses cannot overflow, returned as float32 for filtering and storage."""
    if dose_e_per_A2 <= 0:
        raise ValueError(f"dose must be > 0 e/A^2, got {dose_e_per_A2}")
    expected = np.clip(image, 0.0, None) * (float(dose_e_per_A2) * float(pixel_size_A) ** 2)
    counts = rng.poisson(expected).astype(np.int64, copy=False)
    return counts.astype(np.float32)


def mtf(q_per_px: np.ndarray, c1: float, c2: float, c3: float) -> np.ndarray:
    """Detector MTF(q) = (1 - c1) / (1 + (q / (2 c2 q_N))^c3) + c1 (Madsen et al. 2018, eq. 5).

    q in cycles per pixel, so the Nyquist frequency q_N is 0.5; MTF(0) = 1 keeps the mean."""
    return (1.0 - c1) / (1.0 + (np.asarray(q_per_px) / (2.0 * c2 * 0.5)) ** c3) + c1


def apply_mtf(image: np.ndarray, c1: float, c2: float, c3: float) -> np.ndarray:
    """The detector's blur of a (noisy) image: its spectrum times MTF(q). Periodic, as the cell."""
    ny, nx = image.shape
    q = np.sqrt(np.fft.fftfreq(ny)[:, None] ** 2 + np.fft.rfftfreq(nx)[None, :] ** 2)
    spectrum = scipy.fft.rfft2(image.astype(np.float64), workers=-1)
    out = scipy.fft.irfft2(spectrum * mtf(q, c1, c2, c3), s=(ny, nx), workers=-1)
    return out.astype(np.float32)


def image_blur(image: np.ndarray, blur_A: float, pixel_size_A: float) -> np.ndarray:
    """The image's isotropic Gaussian blur of standard deviation blur_A [A] (vibration, drift),
    on the noise-free image in detector pixels; periodic, as the cell. 0: none."""
    if blur_A < 0:
        raise ValueError(f"image blur must be >= 0 A, got {blur_A}")
    return gaussian_blur(image, float(blur_A) / float(pixel_size_A))


def gaussian_blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    if not sigma_px:
        return image
    return scipy.ndimage.gaussian_filter(image, float(sigma_px), mode="wrap")


def median_filter(counts: np.ndarray, size_px: int | None) -> np.ndarray:
    """size x size median filter (as applied to the experimental images) with periodic edges;
    0, 1 or None: none. 3 x 3 (the study's) runs as a numba kernel, ~15x faster than scipy."""
    if size_px is None or int(size_px) <= 1:
        return counts
    if int(size_px) == 3 and counts.ndim == 2:
        from .kernels import median3x3_wrap

        return median3x3_wrap(np.ascontiguousarray(counts))
    return scipy.ndimage.median_filter(counts, size=int(size_px), mode="wrap")


def crop_origin(
    shape_yx: tuple[int, int], crop_px: tuple[int, int] | None, rng: np.random.Generator
) -> tuple[int, int]:
    """Random top-left corner (y0, x0) of a crop_px window inside shape_yx."""
    if crop_px is None:
        return 0, 0
    check_crop(shape_yx, crop_px)
    y0 = int(rng.integers(0, shape_yx[0] - int(crop_px[0]) + 1))
    x0 = int(rng.integers(0, shape_yx[1] - int(crop_px[1]) + 1))
    return y0, x0


def check_crop(shape_yx: tuple[int, int], crop_px: tuple[int, int] | None) -> None:
    if crop_px is None:
        return
    if len(crop_px) != 2 or min(int(c) for c in crop_px) < 1:
        raise ValueError(f"crop_px must be two positive integers [height, width], got {crop_px}")
    if int(crop_px[0]) > shape_yx[0] or int(crop_px[1]) > shape_yx[1]:
        raise ValueError(
            f"crop_px {list(crop_px)} is larger than the detector image "
            f"{list(shape_yx)} px (exit wave resampled to the detector pixel size)"
        )


def crop(
    array: np.ndarray, origin_yx: tuple[int, int], crop_px: tuple[int, int] | None
) -> np.ndarray:
    if crop_px is None:
        return array
    y0, x0 = origin_yx
    return array[y0 : y0 + int(crop_px[0]), x0 : x0 + int(crop_px[1])]
