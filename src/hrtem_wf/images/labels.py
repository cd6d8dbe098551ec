"""Particle masks from the particle-only exit waves (DaCosta et al. 2024, methods + SI).

phase:     arg(psi_particle after the lens) > threshold [rad], per phonon; a pixel is particle
           when that holds in more than half of the phonons.
intensity: |<|psi_particle after the lens|^2>_phonons - 1| > threshold (the Baseline datasets).
Both are then smoothed: gaussian_filter(mask, sigma_px) > smoothing_threshold, and the outline
moved by grow_A (> 0 grows, < 0 shrinks; Euclidean distance, periodic like the exit wave).
The lens here is the image's central defocus, aberrations and objective aperture, without focal
spread or spatial envelope (coherence damps the image, not the particle's own wave); with
defocus 0 and no aberrations or aperture (the images block's `label.lens: none`) the mask is the
particle's projected footprint, the same for every lens. Computed where the spectrum lives
(numpy or CuPy); the mask comes back to the host.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage

from .backend import array_module, to_host
from .formation import _use_kernels, waves_at_defocus
from .lens import Lens

LABEL_METHODS = ("phase", "intensity")


def particle_mask(
    spectrum: np.ndarray,
    sampling_A: tuple[float, float],
    lens: Lens,
    method: str = "phase",
    threshold: float = np.pi / 12,
    smoothing_sigma_px: float = 0.0,
    smoothing_threshold: float = 0.5,
    *,
    grow_A: float = 0.0,
    fused: bool | None = None,
) -> np.ndarray:
    """Boolean particle mask (ny, nx) on the exit-wave grid from particle-only exit-wave spectra
    (phonon, ny, nx): `wave_spectrum(particle_waves)`.

    lens: the image's Lens, of which the label takes the coherent part (defocus, aberrations,
    objective aperture); `Lens(energy_eV)` gives the projected footprint at focus. grow_A: the
    outline's signed margin [A]."""
    if method not in LABEL_METHODS:
        raise ValueError(f"label method must be one of {LABEL_METHODS}, got {method!r}")
    xp = array_module(spectrum)
    n_phonons = spectrum.shape[0]
    waves = waves_at_defocus(spectrum, sampling_A, lens, fused)
    if method == "phase":
        # Vacuum has phase 0 (abTEM plane wave 1 + 0j), so the phase is the particle's own shift.
        if _use_kernels(xp, fused):
            from .kernels import phase_votes

            votes = phase_votes(waves, float(threshold))
        else:
            votes = (xp.angle(waves) > threshold).sum(axis=0)
        mask = 2 * votes > n_phonons  # strictly more than half of the phonons
    else:
        mean_intensity = (waves.real**2 + waves.imag**2).mean(axis=0, dtype=xp.float64)
        mask = xp.abs(mean_intensity - 1.0) > threshold
    mask = smooth_mask(to_host(mask), smoothing_sigma_px, smoothing_threshold)
    return grow_mask(mask, grow_A, sampling_A)


def smooth_mask(mask: np.ndarray, sigma_px: float, threshold: float) -> np.ndarray:
    """Gaussian-smoothed mask > threshold: fills lattice-fringe holes and rounds the outline."""
    if sigma_px is None or float(sigma_px) <= 0:
        return mask.astype(bool)
    blurred = scipy.ndimage.gaussian_filter(mask.astype(np.float32), float(sigma_px), mode="wrap")
    return blurred > threshold


def grow_mask(mask: np.ndarray, grow_A: float, sampling_A: tuple[float, float]) -> np.ndarray:
    """The mask with its outline moved outward by grow_A [A] (inward when negative).

    Growing adds the pixels whose centre lies within grow_A of a mask pixel's centre; shrinking
    keeps the pixels farther than -grow_A from every background pixel. Distances are Euclidean
    in A on the (sy, sx) grid and periodic (the exit wave's cell repeats)."""
    grow_A = float(grow_A)
    mask = np.asarray(mask, dtype=bool)
    if grow_A == 0.0 or not mask.any() or mask.all():
        return mask
    reach_px = [int(np.ceil(abs(grow_A) / s)) + 1 for s in sampling_A]
    pad = [(min(r, n), min(r, n)) for r, n in zip(reach_px, mask.shape, strict=True)]
    padded = np.pad(mask, pad, mode="wrap")
    if grow_A > 0:
        distance_A = scipy.ndimage.distance_transform_edt(~padded, sampling=sampling_A)
        grown = distance_A <= grow_A
    else:
        distance_A = scipy.ndimage.distance_transform_edt(padded, sampling=sampling_A)
        grown = distance_A > -grow_A
    return grown[pad[0][0] : pad[0][0] + mask.shape[0], pad[1][0] : pad[1][0] + mask.shape[1]]
