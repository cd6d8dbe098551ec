"""Objective-lens aberration phase chi(k) in abTEM's polar convention.

    chi(k) = 2 pi / lambda * sum_{n,m} 1 / (n + 1) * C_nm * alpha^(n + 1) * cos(m (phi - phi_nm)),
    alpha = lambda |k|,  phi = atan2(k_y, k_x)

Magnitudes C_nm in Angstrom, angles phi_nm in rad; C10 = -defocus (abTEM: positive defocus is
underfocus), C30 = Cs. The wave after the lens is Psi(k) = Psi0(k) exp(-i chi(k)).

Written by hand (not abtem.transfer.Aberrations) so that one call evaluates a whole stack of
defoci on plain numpy arrays without building abTEM ensembles; tests check it against abTEM.

Measured aberrations are often quoted in the notation of Prismatic 2.0 / Ophus et al. (2016),
used by the study's SI Table S1:

    chi = 2 pi / lambda * sum 1 / n * C_{n,m} * alpha^n * cos(m (phi - phi_{n,m}))

where n is the power of the aperture angle. The prefactor 1/n equals abTEM's 1/(n' + 1) with
n' = n - 1, so C_{n,m} maps to abTEM's C{n-1}{m} with the same magnitude and angle
(e.g. C_{2,2} -> C12 two-fold astigmatism, C_{4,0} -> C30 = Cs, C_{6,0} -> C50 = C5).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np

from ..sampling import sample
from .backend import array_module

# Every polar coefficient abTEM knows: C{n}{m} with m <= n + 1 and m of the parity of n + 1.
POLAR_MAGNITUDES: tuple[str, ...] = (
    "C10",
    "C12",
    "C21",
    "C23",
    "C30",
    "C32",
    "C34",
    "C41",
    "C43",
    "C45",
    "C50",
    "C52",
    "C54",
    "C56",
)
# Round (m = 0) aberrations have no orientation, so no angle symbol.
POLAR_ANGLES: tuple[str, ...] = tuple(f"phi{s[1:]}" for s in POLAR_MAGNITUDES if s[2] != "0")
POLAR_SYMBOLS: tuple[str, ...] = POLAR_MAGNITUDES + POLAR_ANGLES


# Length units of published aberration tables, in Angstrom.
LENGTH_UNITS_A = {"A": 1.0, "nm": 10.0, "um": 1e4, "mm": 1e7}

# SI Table S1 of DaCosta et al. (2024): residual aberrations of TEAM 0.5 at 300 kV after the
# standard calibration, in the Prismatic / Ophus notation: (C_{n,m}, magnitude, unit, rotation_deg).
TEAM05_TABLE_S1: tuple[tuple[str, float, str, float], ...] = (
    ("C22", 1.602, "nm", -68.5),
    ("C31", 23.9, "nm", 29.2),
    ("C33", 17.98, "nm", -170.7),
    ("C40", -1.913, "um", 0.0),
    ("C42", 42.64, "nm", -34.5),
    ("C44", 158.3, "nm", 89.2),
    ("C51", 1.678, "um", 104.5),
    ("C53", 528.7, "nm", -12.7),
    ("C55", 3.117, "um", -6.3),
    ("C60", 1.048, "mm", 0.0),
    ("C66", 4.821, "um", 60.2),
)


def polar_from_table(table) -> dict[str, float]:
    """abTEM polar coefficients (A, rad) from (C_{n,m} in the power-of-angle notation,
    magnitude, unit, rotation in degrees) rows; see the module docstring for the mapping."""
    coefficients: dict[str, float] = {}
    for symbol, magnitude, unit, rotation_deg in table:
        power, m = int(symbol[1]), int(symbol[2])
        name = f"C{power - 1}{m}"
        if name not in POLAR_MAGNITUDES:
            raise ValueError(f"{symbol} has no abTEM polar equivalent ({name})")
        if unit not in LENGTH_UNITS_A:
            raise ValueError(f"{symbol}: unknown unit {unit!r}; one of {sorted(LENGTH_UNITS_A)}")
        coefficients[name] = float(magnitude) * LENGTH_UNITS_A[unit]
        if m != 0:
            coefficients[f"phi{power - 1}{m}"] = float(np.deg2rad(rotation_deg))
        elif rotation_deg != 0.0:
            raise ValueError(
                f"{symbol} is round (m = 0): its rotation must be 0, got {rotation_deg}"
            )
    return coefficients


# Named residual-aberration sets for `images.<block>.aberrations.preset`.
PRESETS: dict[str, dict[str, float]] = {
    "none": {},
    "team05_table_s1": polar_from_table(TEAM05_TABLE_S1),
}


def draw_aberrations(spec: Mapping[str, Any], rng: np.random.Generator) -> dict[str, float]:
    """One image's residual aberrations (abTEM symbols, A and rad) from an `aberrations` block.

    The preset's coefficients, overridden or extended by `coefficients` (each a number or a
    distribution), then every magnitude scaled by its own draw of `magnitude_scale` and every
    angle shifted by its own draw of `rotation_shift_rad` (the study's Optimal sets: N(1, 0.25)
    and N(0, pi/4)). Draws follow the sorted symbol order, so YAML key order does not matter.
    Every polar symbol except C10 (the image's defocus) is returned, zeros included."""
    preset = spec["preset"]
    if preset not in PRESETS:
        raise ValueError(f"aberrations.preset must be one of {sorted(PRESETS)}, got {preset!r}")
    explicit = dict(spec["coefficients"])
    bad = sorted(set(explicit) - (set(POLAR_SYMBOLS) - {"C10"}))
    if bad:
        raise ValueError(
            f"aberrations.coefficients: unknown symbol(s) {bad}; expected abTEM polar "
            f"symbols other than C10 (defocus has its own key): {list(POLAR_SYMBOLS)}"
        )
    base = {**PRESETS[preset], **{k: float(sample(v, rng)) for k, v in sorted(explicit.items())}}
    scale_spec = spec["magnitude_scale"]
    shift_spec = spec["rotation_shift_rad"]
    drawn: dict[str, float] = {}
    for symbol in POLAR_SYMBOLS:
        if symbol == "C10":
            continue
        value = base.get(symbol, 0.0)
        if symbol.startswith("C"):
            drawn[symbol] = value * float(sample(scale_spec, rng)) if value else 0.0
        else:
            magnitude = base.get("C" + symbol[3:], 0.0)
            drawn[symbol] = value + float(sample(shift_spec, rng)) if magnitude else 0.0
    return drawn


@lru_cache(maxsize=8)
def wavelength_A(energy_eV: float) -> float:
    """Relativistic electron wavelength [A] from abTEM, so both stages agree to the last digit."""
    from abtem.core.energy import energy2wavelength  # imported lazily: abtem takes seconds to load

    return float(energy2wavelength(float(energy_eV)))


def _check_symbols(coefficients: Mapping[str, float]) -> None:
    unknown = sorted(set(coefficients) - set(POLAR_SYMBOLS))
    if unknown:
        raise ValueError(
            f"unknown aberration coefficient(s) {unknown}; expected abTEM polar symbols "
            f"{list(POLAR_SYMBOLS)} (magnitudes in A, angles in rad)"
        )


def polar_terms(coefficients: Mapping[str, float]) -> list[tuple[float, int, int, float]]:
    """The nonzero polar terms (C_nm [A], n, m, phi_nm [rad]) in POLAR_MAGNITUDES order.

    `coefficients` maps abTEM polar symbols to values in A / rad; missing symbols are zero, and a
    term whose magnitude is zero is left out (its angle with it). The one reading of the
    coefficients that chi, its gradient and the fused lens kernel all share."""
    _check_symbols(coefficients)
    terms = []
    for symbol in POLAR_MAGNITUDES:
        magnitude = float(coefficients.get(symbol, 0.0))
        if magnitude != 0.0:
            n, m = int(symbol[1]), int(symbol[2])
            terms.append((magnitude, n, m, float(coefficients.get(f"phi{n}{m}", 0.0))))
    return terms


def _polar_grid(kx: np.ndarray, ky: np.ndarray, wavelength_A: float):
    """(xp, alpha [rad], phi [rad], broadcast shape) of spatial frequencies kx, ky [1/A]."""
    xp = array_module(kx)
    kx = xp.asarray(kx, dtype=xp.float64)
    ky = xp.asarray(ky, dtype=xp.float64)
    alpha = wavelength_A * xp.sqrt(kx**2 + ky**2)  # scattering angle [rad]
    phi = xp.arctan2(ky, kx)  # azimuth measured from the x axis, as abTEM
    return xp, alpha, phi, np.broadcast_shapes(kx.shape, ky.shape)


def aberration_phase(
    kx: np.ndarray, ky: np.ndarray, wavelength_A: float, coefficients: Mapping[str, float]
) -> np.ndarray:
    """chi(k) [rad] for spatial frequencies kx, ky [1/A] (broadcast against each other).

    `coefficients` maps abTEM polar symbols (C10, C12, phi12, ..., C56, phi56) to values in A / rad;
    missing symbols are zero. Evaluated in float64: chi reaches ~1e4 rad at Nyquist for Cs ~ 2 um,
    where float32 would lose the phase to ~1e-3 rad.
    """
    terms = polar_terms(coefficients)
    xp, alpha, phi, shape = _polar_grid(kx, ky, wavelength_A)
    chi = xp.zeros(shape, dtype=xp.float64)
    for magnitude, n, m, angle in terms:
        azimuthal = 1.0 if m == 0 else xp.cos(m * (phi - angle))
        chi += magnitude / (n + 1) * alpha ** (n + 1) * azimuthal
    return 2 * np.pi / wavelength_A * chi


def aberration_gradient(
    kx: np.ndarray, ky: np.ndarray, wavelength_A: float, coefficients: Mapping[str, float]
) -> tuple[np.ndarray, np.ndarray]:
    """grad_alpha chi = (d chi / d alpha, (1 / alpha) d chi / d phi) [rad per rad of angle].

    From the chi above, term by term: 2 pi / lambda C alpha^n (cos, -m / (n + 1) sin) of
    m (phi - phi_nm); the same sums abTEM's SpatialEnvelope evaluates. float64."""
    terms = polar_terms(coefficients)
    xp, alpha, phi, shape = _polar_grid(kx, ky, wavelength_A)
    radial = xp.zeros(shape, dtype=xp.float64)
    azimuthal = xp.zeros(shape, dtype=xp.float64)
    for magnitude, n, m, angle in terms:
        power = magnitude * alpha**n
        radial += power * (1.0 if m == 0 else xp.cos(m * (phi - angle)))
        if m:
            azimuthal -= m / (n + 1) * power * xp.sin(m * (phi - angle))
    scale = 2 * np.pi / wavelength_A
    return scale * radial, scale * azimuthal


def spatial_frequencies(
    shape_yx: tuple[int, int], sampling_yx_A: tuple[float, float], xp=np
) -> tuple[np.ndarray, np.ndarray]:
    """(ky[:, None], kx[None, :]) in 1/A for an image stored as (ny, nx), in FFT order."""
    ny, nx = shape_yx
    sy, sx = sampling_yx_A
    ky = xp.fft.fftfreq(int(ny), float(sy))[:, None]
    kx = xp.fft.fftfreq(int(nx), float(sx))[None, :]
    return ky, kx
