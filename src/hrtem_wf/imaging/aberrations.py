"""Objective-lens aberration phase chi(k) in abTEM's polar convention.

    chi(k) = 2 pi / lambda * sum_{n,m} 1 / (n + 1) * C_nm * alpha^(n + 1) * cos(m (phi - phi_nm)),
    alpha = lambda |k|,  phi = atan2(k_y, k_x)

Magnitudes C_nm in Angstrom, angles phi_nm in rad; C10 = -defocus (abTEM: positive defocus is
underfocus), C30 = Cs. The wave after the lens is Psi(k) = Psi0(k) exp(-i chi(k)).

Written by hand (not abtem.transfer.Aberrations) so that one call evaluates a whole stack of
defoci on plain numpy arrays without building abTEM ensembles; tests check it against abTEM.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Mapping

import numpy as np

# Every polar coefficient abTEM knows: C{n}{m} with m <= n + 1 and m of the parity of n + 1.
POLAR_MAGNITUDES: tuple[str, ...] = (
    "C10", "C12", "C21", "C23", "C30", "C32", "C34",
    "C41", "C43", "C45", "C50", "C52", "C54", "C56",
)
# Round (m = 0) aberrations have no orientation, so no angle symbol.
POLAR_ANGLES: tuple[str, ...] = tuple(f"phi{s[1:]}" for s in POLAR_MAGNITUDES if s[2] != "0")
POLAR_SYMBOLS: tuple[str, ...] = POLAR_MAGNITUDES + POLAR_ANGLES


@lru_cache(maxsize=8)
def wavelength_A(energy_eV: float) -> float:
    """Relativistic electron wavelength [A] from abTEM, so both stages agree to the last digit."""
    from abtem.core.energy import energy2wavelength  # imported lazily: abtem takes seconds to load

    return float(energy2wavelength(float(energy_eV)))


def lens_coefficients(defocus_A: float, spherical_aberration_A: float = 0.0,
                      extra: Mapping[str, float] | None = None) -> dict[str, float]:
    """Polar coefficients for a defocus (abTEM sign, C10 = -defocus), Cs (C30) and any others."""
    coefficients = {} if extra is None else dict(extra)
    if "C10" in coefficients or "C30" in coefficients:
        raise ValueError("give defocus and Cs as arguments, not again as C10/C30 in `extra`")
    coefficients["C10"] = -float(defocus_A)
    coefficients["C30"] = float(spherical_aberration_A)
    return coefficients


def _check_symbols(coefficients: Mapping[str, float]) -> None:
    unknown = sorted(set(coefficients) - set(POLAR_SYMBOLS))
    if unknown:
        raise ValueError(
            f"unknown aberration coefficient(s) {unknown}; expected abTEM polar symbols "
            f"{list(POLAR_SYMBOLS)} (magnitudes in A, angles in rad)"
        )


def aberration_phase(kx: np.ndarray, ky: np.ndarray, wavelength_A: float,
                     coefficients: Mapping[str, float]) -> np.ndarray:
    """chi(k) [rad] for spatial frequencies kx, ky [1/A] (broadcast against each other).

    `coefficients` maps abTEM polar symbols (C10, C12, phi12, ..., C56, phi56) to values in A / rad;
    missing symbols are zero. Evaluated in float64: chi reaches ~1e4 rad at Nyquist for Cs ~ 2 um,
    where float32 would lose the phase to ~1e-3 rad.
    """
    _check_symbols(coefficients)
    kx = np.asarray(kx, dtype=np.float64)
    ky = np.asarray(ky, dtype=np.float64)
    alpha = wavelength_A * np.sqrt(kx**2 + ky**2)  # scattering angle [rad]
    phi = np.arctan2(ky, kx)  # azimuth measured from the x axis, as abTEM
    chi = np.zeros(np.broadcast_shapes(kx.shape, ky.shape), dtype=np.float64)
    for symbol in POLAR_MAGNITUDES:
        magnitude = float(coefficients.get(symbol, 0.0))
        if magnitude == 0.0:
            continue
        n, m = int(symbol[1]), int(symbol[2])
        angle = float(coefficients.get(f"phi{n}{m}", 0.0))
        azimuthal = 1.0 if m == 0 else np.cos(m * (phi - angle))
        chi += magnitude / (n + 1) * alpha ** (n + 1) * azimuthal
    return 2 * np.pi / wavelength_A * chi


def spatial_frequencies(shape_yx: tuple[int, int], sampling_yx_A: tuple[float, float]
                        ) -> tuple[np.ndarray, np.ndarray]:
    """(ky[:, None], kx[None, :]) in 1/A for an image stored as (ny, nx), in FFT order."""
    ny, nx = shape_yx
    sy, sx = sampling_yx_A
    ky = np.fft.fftfreq(int(ny), float(sy))[:, None]
    kx = np.fft.fftfreq(int(nx), float(sx))[None, :]
    return ky, kx
