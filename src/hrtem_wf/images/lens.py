"""The objective lens of one image: what an images block draws once per focal point.

Image formation (formation.py) and the particle labels (labels.py) take a `Lens` whole instead of
its dozen optics arguments, as abTEM keeps its CTF, Aperture and envelopes in objects.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from .aberrations import POLAR_SYMBOLS, _check_symbols, polar_terms
from .aberrations import wavelength_A as electron_wavelength_A

FOCAL_SPREAD_METHODS = ("incoherent", "quasi_coherent")


def focal_spread_defoci(
    defocus_A: float, focal_spread_sigma_A: float, samples: int, extent_sigmas: float
) -> tuple[np.ndarray, np.ndarray]:
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


@dataclass(frozen=True)
class Lens:
    r"""The objective lens and illumination of one focal point (immutable, hashable).

    The wave after the lens, for each defocus d of the focal-spread average, is

        Psi_d(k) = Psi_0(k) A(k) E_s,d(k) exp(-i chi_d(k)),
        chi_d(k) = 2 pi / lambda sum_{n,m} C_nm alpha^(n+1) / (n + 1) cos(m (phi - phi_nm)),

    alpha = lambda |k|, phi = atan2(k_y, k_x), in abTEM's polar convention and sign: C10 = -d, so
    a positive defocus is underfocus, and C30 = Cs.

    Parameters
    ----------
    energy_eV : float
        Beam energy; the relativistic wavelength is `wavelength_A`.
    defocus_A : float
        The (central) defocus d [A], abTEM sign: positive = underfocus, C10 = -defocus_A.
    aberrations : mapping or iterable of (symbol, value) pairs
        The further abTEM polar coefficients (C12, phi12, C21, ..., C30 = Cs, ..., C56, phi56),
        magnitudes in A and angles in rad; missing symbols are zero; C10 is `defocus_A`, not
        here. Stored as (symbol, float) pairs in POLAR_SYMBOLS order, so lenses hash and compare
        by value; `coefficients` gives them back as a dict.
    focal_spread_sigma_A : float
        Standard deviation sigma of the Gaussian defocus spread (chromatic aberration x energy
        spread) [A]; 0: coherent. abTEM's `focal_spread` is the 1/e half-width, sqrt(2) sigma.
    focal_spread_method : {"incoherent", "quasi_coherent"}
        incoherent: the intensities of `focal_spread_samples` defoci spanning +- extent_sigmas x
        sigma, summed with Gaussian weights; quasi_coherent: one wave damped by the temporal
        envelope E_t(k) = exp(-(pi lambda sigma k^2)^2 / 2).
    focal_spread_samples, focal_spread_extent_sigmas : int, float
        The incoherent average's sampling.
    objective_aperture_mrad : float or None
        The objective aperture's semi-angle alpha_c (abTEM's soft edge, one pixel wide); None:
        no aperture.
    illumination_semiangle_mrad : float
        The illumination semi-angle alpha_i of the quasi-coherent spatial envelope
        E_s,d = exp(-(alpha_i / 2)^2 |grad_alpha chi_d|^2) (abTEM's angular_spread), evaluated
        at each defocus sample; 0: coherent.

    The image blur, plasmons, dose and detector are drawn per image and are not the lens's.
    """

    energy_eV: float
    defocus_A: float = 0.0
    aberrations: tuple[tuple[str, float], ...] = ()
    focal_spread_sigma_A: float = 0.0
    focal_spread_method: str = "incoherent"
    focal_spread_samples: int = 1
    focal_spread_extent_sigmas: float = 3.0
    objective_aperture_mrad: float | None = None
    illumination_semiangle_mrad: float = 0.0

    def __post_init__(self):
        given = self.aberrations
        pairs: Iterable = given.items() if isinstance(given, Mapping) else (given or ())
        coefficients = {str(symbol): float(value) for symbol, value in pairs}
        _check_symbols(coefficients)
        if "C10" in coefficients:
            raise ValueError("defocus is a separate argument; do not repeat it as C10")
        if self.focal_spread_method not in FOCAL_SPREAD_METHODS:
            raise ValueError(
                f"focal spread method must be one of {FOCAL_SPREAD_METHODS}, "
                f"got {self.focal_spread_method!r}"
            )
        aperture = self.objective_aperture_mrad
        normalized = {
            "energy_eV": float(self.energy_eV),
            "defocus_A": float(self.defocus_A),
            "aberrations": tuple((s, coefficients[s]) for s in POLAR_SYMBOLS if s in coefficients),
            "focal_spread_sigma_A": float(self.focal_spread_sigma_A),
            "focal_spread_samples": int(self.focal_spread_samples),
            "focal_spread_extent_sigmas": float(self.focal_spread_extent_sigmas),
            "objective_aperture_mrad": None if aperture is None else float(aperture),
            "illumination_semiangle_mrad": float(self.illumination_semiangle_mrad),
        }
        for name, value in normalized.items():
            object.__setattr__(self, name, value)
        if self.focal_spread_sigma_A < 0:
            raise ValueError(f"focal spread sigma must be >= 0 A, got {self.focal_spread_sigma_A}")
        if self.focal_spread_samples < 1:
            raise ValueError(
                f"focal spread needs at least 1 sample, got {self.focal_spread_samples}"
            )
        if aperture is not None and not self.objective_aperture_mrad > 0:
            raise ValueError(f"objective aperture semi-angle must be > 0 mrad, got {aperture}")
        if self.illumination_semiangle_mrad < 0:
            raise ValueError(
                f"illumination semi-angle must be >= 0 mrad, got {self.illumination_semiangle_mrad}"
            )

    @property
    def wavelength_A(self) -> float:
        """The relativistic electron wavelength lambda [A] (abTEM's, to the last digit)."""
        return electron_wavelength_A(self.energy_eV)

    @property
    def coefficients(self) -> dict[str, float]:
        """The aberrations as a dict {abTEM symbol: value} (A / rad), C10 not among them."""
        return dict(self.aberrations)

    def at_defocus(self, defocus_A: float) -> Lens:
        """The same lens at another (central) defocus, e.g. a focal series' offset."""
        return dataclasses.replace(self, defocus_A=defocus_A)

    def coherent(self) -> Lens:
        """The same lens without focal spread or spatial envelope: one coherent wave at
        `defocus_A`, through the aberrations and the aperture (what the labels see)."""
        return dataclasses.replace(
            self, focal_spread_sigma_A=0.0, focal_spread_samples=1, illumination_semiangle_mrad=0.0
        )

    def focal_samples(self) -> tuple[np.ndarray, np.ndarray, float]:
        """(defoci [A], weights summing to 1, temporal-envelope sigma [A]) of the focal spread:
        the incoherent average's samples with no envelope, or the quasi-coherent single defocus
        with the envelope's sigma."""
        if self.focal_spread_method == "incoherent":
            defoci, weights = focal_spread_defoci(
                self.defocus_A,
                self.focal_spread_sigma_A,
                self.focal_spread_samples,
                self.focal_spread_extent_sigmas,
            )
            return defoci, weights, 0.0
        return np.array([self.defocus_A]), np.array([1.0]), self.focal_spread_sigma_A

    def polar_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The nonzero aberrations (aberrations.polar_terms) as the fused lens kernel reads them:
        magnitudes C [A] (float64), powers n + 1 (int64), folds m (int64), angles [rad]."""
        terms = polar_terms(self.coefficients)
        magnitudes = np.array([c for c, _, _, _ in terms], dtype=np.float64)
        powers = np.array([n + 1 for _, n, _, _ in terms], dtype=np.int64)
        folds = np.array([m for _, _, m, _ in terms], dtype=np.int64)
        angles = np.array([a for _, _, _, a in terms], dtype=np.float64)
        return magnitudes, powers, folds, angles
