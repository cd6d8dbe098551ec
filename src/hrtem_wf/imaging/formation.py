"""HRTEM image formation from exit waves: lens, focal spread, frozen phonons, detector, dose.

Exit waves are complex arrays of shape (frozen_phonon, ny, nx) normalized as abTEM plane waves
(vacuum = 1 + 0j), sampled at (sy, sx) Angstrom. Intensities are then in units of the incident
intensity (vacuum = 1), so mean counts per pixel = I * dose [e/A^2] * pixel area [A^2].
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import scipy.fft
import scipy.ndimage

from .aberrations import aberration_phase, spatial_frequencies, wavelength_A

# Upper bound on the complex working array of one batch of (defocus sample, phonon) waves, so
# 640 x 640 x 8 phonons x 25 defoci (~650 MB) runs in slices instead of all at once.
MAX_BATCH_BYTES = 256 * 2**20


def as_wave_stack(waves: np.ndarray) -> np.ndarray:
    """Waves as complex64 (frozen_phonon, ny, nx); a single (ny, nx) wave gets a phonon axis."""
    waves = np.asarray(waves)
    if waves.ndim == 2:
        waves = waves[None]
    if waves.ndim != 3:
        raise ValueError(f"exit waves must be (frozen_phonon, ny, nx), got shape {waves.shape}")
    if waves.shape[0] == 0:
        raise ValueError("exit waves have no frozen phonon configurations")
    return waves.astype(np.complex64, copy=False)


def wave_spectrum(waves: np.ndarray) -> np.ndarray:
    """2D FFT of every phonon's exit wave (one forward FFT per phonon, reused for every draw)."""
    return scipy.fft.fft2(as_wave_stack(waves), axes=(-2, -1), workers=-1)


def focal_spread_defoci(defocus_A: float, focal_spread_sigma_A: float, samples: int,
                        extent_sigmas: float) -> tuple[np.ndarray, np.ndarray]:
    """Defocus values [A] and Gaussian weights (sum 1) for the incoherent focal-spread average.

    `samples` values evenly span defocus +- extent_sigmas * sigma; sigma = 0 (or one sample)
    collapses to the coherent image at the central defocus."""
    sigma = float(focal_spread_sigma_A)
    if sigma < 0:
        raise ValueError(f"focal spread sigma must be >= 0 A, got {sigma}")
    samples = int(samples)
    if samples < 1:
        raise ValueError(f"focal spread needs at least 1 sample, got {samples}")
    if sigma == 0.0 or samples == 1:
        return np.array([float(defocus_A)]), np.array([1.0])
    offsets = np.linspace(-extent_sigmas * sigma, extent_sigmas * sigma, samples)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    return float(defocus_A) + offsets, weights / weights.sum()


def lens_transfer(shape_yx: tuple[int, int], sampling_A: tuple[float, float], energy_eV: float,
                  defoci_A: np.ndarray, spherical_aberration_A: float,
                  aberrations: Mapping[str, float] | None = None) -> np.ndarray:
    """exp(-i chi(k)) for each defocus, complex64 (n_defoci, ny, nx) in FFT order.

    chi is linear in C10, so it is split into a defocus-free part plus -defocus x chi(C10 = 1)
    and evaluated once per call rather than once per defocus sample."""
    wavelength = wavelength_A(energy_eV)
    ky, kx = spatial_frequencies(shape_yx, sampling_A)
    fixed = {} if aberrations is None else dict(aberrations)
    if "C10" in fixed or "C30" in fixed:
        raise ValueError("defocus and Cs are separate arguments; do not repeat them as C10/C30")
    fixed["C30"] = float(spherical_aberration_A)
    chi_fixed = aberration_phase(kx, ky, wavelength, fixed)
    chi_per_C10 = aberration_phase(kx, ky, wavelength, {"C10": 1.0})
    defoci = np.atleast_1d(np.asarray(defoci_A, dtype=np.float64))
    chi = chi_fixed[None] - defoci[:, None, None] * chi_per_C10[None]  # C10 = -defocus
    # Wrap in float64 (chi reaches ~1e4 rad), then float32 cos/sin: 2x faster than complex exp.
    phase = np.remainder(chi, 2 * np.pi).astype(np.float32)
    transfer = np.empty(phase.shape, dtype=np.complex64)
    transfer.real = np.cos(phase)
    transfer.imag = -np.sin(phase)
    return transfer


def waves_after_lens(spectrum: np.ndarray, transfer: np.ndarray) -> np.ndarray:
    """Real-space waves (n_defoci, phonon, ny, nx) = IFFT[Psi0(k) exp(-i chi_d(k))]."""
    return scipy.fft.ifft2(transfer[:, None] * spectrum[None], axes=(-2, -1), workers=-1,
                           overwrite_x=True)


def intensity_from_spectrum(spectrum: np.ndarray, sampling_A: tuple[float, float],
                            energy_eV: float, defocus_A: float, cs_A: float,
                            focal_spread_sigma_A: float = 0.0, samples: int = 1,
                            extent_sigmas: float = 3.0,
                            aberrations: Mapping[str, float] | None = None) -> np.ndarray:
    """Noise-free image (float64, ny, nx) from exit-wave spectra (phonon, ny, nx).

    Incoherent sum over focal-spread defoci with Gaussian weights, then the mean over all
    phonons given; vacuum gives exactly 1."""
    n_phonons, ny, nx = spectrum.shape
    defoci, weights = focal_spread_defoci(defocus_A, focal_spread_sigma_A, samples, extent_sigmas)
    transfer = lens_transfer((ny, nx), sampling_A, energy_eV, defoci, cs_A, aberrations)
    batch = max(1, MAX_BATCH_BYTES // (n_phonons * ny * nx * np.dtype(np.complex64).itemsize))
    image = np.zeros((ny, nx), dtype=np.float64)
    for start in range(0, len(defoci), batch):
        waves = waves_after_lens(spectrum, transfer[start:start + batch])
        # |psi|^2 without a complex temporary; phonon mean in float64 so averages do not drift.
        per_defocus = (waves.real**2 + waves.imag**2).mean(axis=1, dtype=np.float64)
        image += np.tensordot(weights[start:start + batch], per_defocus, axes=1)
    return image


def intensity(waves: np.ndarray, sampling_A: tuple[float, float], energy_eV: float,
              defocus_A: float, cs_A: float, focal_spread_sigma_A: float = 0.0,
              samples: int = 1, extent_sigmas: float = 3.0,
              aberrations: Mapping[str, float] | None = None) -> np.ndarray:
    """Noise-free HRTEM intensity (float64, ny, nx) of exit waves (phonon, ny, nx) or (ny, nx).

    defocus_A: abTEM sign (positive = underfocus, C10 = -defocus); cs_A: C30 in A;
    aberrations: further abTEM polar coefficients (C12, phi12, ...) in A / rad."""
    return intensity_from_spectrum(wave_spectrum(waves), sampling_A, energy_eV, defocus_A, cs_A,
                                   focal_spread_sigma_A, samples, extent_sigmas, aberrations)


def resampled_shape(shape_yx: tuple[int, int], sampling_A: tuple[float, float],
                    pixel_size_A: float) -> tuple[int, int]:
    """Shape after resampling to the detector pixel size (what scipy.ndimage.zoom produces)."""
    if _same_sampling(sampling_A, pixel_size_A):
        return int(shape_yx[0]), int(shape_yx[1])
    return tuple(int(round(n * s / pixel_size_A)) for n, s in zip(shape_yx, sampling_A))


def _same_sampling(sampling_A: tuple[float, float], pixel_size_A: float) -> bool:
    return bool(np.allclose(sampling_A, pixel_size_A, rtol=1e-9, atol=0.0))


def resample_to_pixel_size(image: np.ndarray, sampling_A: tuple[float, float],
                           pixel_size_A: float, order: int = 1) -> np.ndarray:
    """Image on detector pixels of pixel_size_A; the identity when the sampling already matches.

    grid-wrap keeps the periodic cell's extent and edges (the simulation cell is periodic)."""
    if _same_sampling(sampling_A, pixel_size_A):
        return image
    zoom = [s / pixel_size_A for s in sampling_A]
    out = scipy.ndimage.zoom(image, zoom, order=order, mode="grid-wrap", grid_mode=True)
    assert out.shape == resampled_shape(image.shape, sampling_A, pixel_size_A)
    return out


def detector_counts(image: np.ndarray, dose_e_per_A2: float, pixel_size_A: float,
                    rng: np.random.Generator) -> np.ndarray:
    """Poisson electron counts (float32) with mean image x dose x pixel area.

    Drawn as int64 so high doses cannot overflow, returned as float32 for filtering and storage."""
    if dose_e_per_A2 <= 0:
        raise ValueError(f"dose must be > 0 e/A^2, got {dose_e_per_A2}")
    expected = np.clip(image, 0.0, None) * (float(dose_e_per_A2) * float(pixel_size_A) ** 2)
    counts = rng.poisson(expected).astype(np.int64, copy=False)
    return counts.astype(np.float32)


def median_filter(counts: np.ndarray, size_px: int | None) -> np.ndarray:
    """size x size median filter (as applied to the experimental images); 0, 1 or None: none."""
    if size_px is None or int(size_px) <= 1:
        return counts
    return scipy.ndimage.median_filter(counts, size=int(size_px), mode="wrap")


def crop_origin(shape_yx: tuple[int, int], crop_px: tuple[int, int] | None,
                rng: np.random.Generator) -> tuple[int, int]:
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


def crop(array: np.ndarray, origin_yx: tuple[int, int], crop_px: tuple[int, int] | None
         ) -> np.ndarray:
    if crop_px is None:
        return array
    y0, x0 = origin_yx
    return array[y0:y0 + int(crop_px[0]), x0:x0 + int(crop_px[1])]
