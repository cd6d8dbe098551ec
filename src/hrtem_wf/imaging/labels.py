"""Particle masks from the particle-only exit waves (DaCosta et al. 2024, methods + SI).

phase:     arg(psi_particle after the lens) > threshold [rad], per phonon; a pixel is particle
           when that holds in more than half of the phonons.
intensity: |<|psi_particle after the lens|^2>_phonons - 1| > threshold (the Baseline datasets).
Both are then smoothed: gaussian_filter(mask, sigma_px) > smoothing_threshold.
The lens here is the image's central defocus and aberrations, without focal spread.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import scipy.ndimage

from .formation import as_wave_stack, lens_transfer, wave_spectrum, waves_after_lens

LABEL_METHODS = ("phase", "intensity")


def mask_from_spectrum(spectrum: np.ndarray, sampling_A: tuple[float, float], energy_eV: float,
                       defocus_A: float, cs_A: float, method: str = "phase",
                       threshold: float = np.pi / 12, smoothing_sigma_px: float = 0.0,
                       smoothing_threshold: float = 0.5,
                       aberrations: Mapping[str, float] | None = None) -> np.ndarray:
    """Boolean particle mask (ny, nx) from particle-only exit-wave spectra (phonon, ny, nx)."""
    if method not in LABEL_METHODS:
        raise ValueError(f"label method must be one of {LABEL_METHODS}, got {method!r}")
    n_phonons, ny, nx = spectrum.shape
    transfer = lens_transfer((ny, nx), sampling_A, energy_eV, [defocus_A], cs_A, aberrations)
    waves = waves_after_lens(spectrum, transfer)[0]  # (phonon, ny, nx)
    if method == "phase":
        # Vacuum has phase 0 (abTEM plane wave 1 + 0j), so the phase is the particle's own shift.
        votes = (np.angle(waves) > threshold).sum(axis=0)
        mask = 2 * votes > n_phonons  # strictly more than half of the phonons
    else:
        mean_intensity = (waves.real**2 + waves.imag**2).mean(axis=0, dtype=np.float64)
        mask = np.abs(mean_intensity - 1.0) > threshold
    return smooth_mask(mask, smoothing_sigma_px, smoothing_threshold)


def smooth_mask(mask: np.ndarray, sigma_px: float, threshold: float) -> np.ndarray:
    """Gaussian-smoothed mask > threshold: fills lattice-fringe holes and rounds the outline."""
    if sigma_px is None or float(sigma_px) <= 0:
        return mask.astype(bool)
    blurred = scipy.ndimage.gaussian_filter(mask.astype(np.float32), float(sigma_px), mode="wrap")
    return blurred > threshold


def particle_mask(particle_waves: np.ndarray, sampling_A: tuple[float, float], energy_eV: float,
                  defocus_A: float, cs_A: float, method: str = "phase",
                  threshold: float = np.pi / 12, smoothing_sigma_px: float = 0.0,
                  smoothing_threshold: float = 0.5,
                  aberrations: Mapping[str, float] | None = None) -> np.ndarray:
    """Boolean particle mask (ny, nx) on the exit-wave grid from particle-only exit waves
    (phonon, ny, nx) or (ny, nx); defocus in abTEM's sign, Cs (C30) in A."""
    return mask_from_spectrum(wave_spectrum(as_wave_stack(particle_waves)), sampling_A, energy_eV,
                              defocus_A, cs_A, method, threshold, smoothing_sigma_px,
                              smoothing_threshold, aberrations)
