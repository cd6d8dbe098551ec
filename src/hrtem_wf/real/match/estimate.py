"""Estimators of what a simulation must reproduce, from real micrographs (`hrtem-wf match`).

Each estimator is a plain function of one micrograph (and its particle mask); units are in the
names; q is in cycles per pixel, k = q / pixel_size_A in 1/A (see spectra.py). The microscope
model is the project's (hrtem_wf.images): chi(k) from aberrations.aberration_phase with
C10 = -defocus (abTEM: positive defocus = underfocus) and C30 = Cs, Poisson counts at
dose x pixel area, then the detector MTF of formation.mtf.

    pixel_size_from_bragg    lattice fringes: Bragg spots in the power spectrum -> pixel size
    fit_thon_rings           the carbon's Thon rings -> defocus (and Cs), with the sign's evidence
    fit_mtf                  noise power spectra -> MTF(c1, c2, c3) (and the white noise levels)
    white_noise_variance     noise power spectrum + known MTF -> the white noise level
    dose_from_noise          mean and noise level -> counts per pixel, dose, gain (Poisson)
    particle_statistics      masks -> equivalent diameters, density, contrast
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.ndimage
import scipy.optimize

from hrtem_wf.images.aberrations import aberration_phase, wavelength_A
from hrtem_wf.images.formation import mtf
from hrtem_wf.real.sizes import MIN_PARTICLE_DIAMETER_A

from .spectra import (
    KERNEL_SUBSAMPLES,
    MASK_MARGIN_PX,
    RadialSpectrum,
    frequencies_per_px,
    periodogram,
)

# ---------------------------------------------------------------------------------------------
# Pixel size from lattice fringes


def fcc_d_spacings_A(lattice_constant_A: float) -> dict[str, float]:
    """Plane spacings d_hkl = a / sqrt(h^2 + k^2 + l^2) of the strongest FCC reflections."""
    a = float(lattice_constant_A)
    return {"111": a / np.sqrt(3.0), "200": a / 2.0, "220": a / np.sqrt(8.0)}


def reference_lattice_constant_A(material: str) -> float:
    """An FCC element's lattice constant [A] from ASE's reference states."""
    from ase.data import atomic_numbers, reference_states

    if material not in atomic_numbers:
        raise ValueError(f"unknown element {material!r}; give the lattice constant instead")
    state = reference_states[atomic_numbers[material]] or {}
    if state.get("symmetry") != "fcc":
        raise ValueError(f"{material} is not FCC in ASE's reference states; give the spacing")
    return float(state["a"])


@dataclass
class BraggPeak:
    q_per_px: float  # |q| of the spot, sub-pixel (centroid)
    angle_rad: float  # direction of q in [0, pi) (the Friedel mate is left out)
    strength: float  # spot power over the radial median at its |q|


def bragg_peaks(
    image: np.ndarray,
    q_range_per_px: tuple[float, float] = (0.08, 0.5),
    min_strength: float = 20.0,
) -> list[BraggPeak]:
    """Bragg spots of lattice fringes in the power spectrum of the whole micrograph.

    Assumptions: fringes are sharp spots (a crystal of many periods), the amorphous carbon and
    the Thon rings are isotropic. The periodogram (Hann window) is averaged over 3 x 3 Fourier
    pixels (an average of ~9 exponential variables: spurious spots above 8x the median are
    improbable) and divided by the median of its ring of equal |q|, which removes the rings;
    local maxima above `min_strength` inside q_range_per_px are spots, refined to sub-pixel by
    the power-weighted centroid of their 5 x 5 neighbourhood. The axes (|q_x| or |q_y| < 2 px)
    are left out: a non-periodic image puts streaks there."""
    ny, nx = image.shape
    power, _ = periodogram(image, np.outer(np.hanning(ny), np.hanning(nx)))
    power = np.fft.fftshift(power)
    smooth = scipy.ndimage.uniform_filter(power, 3, mode="wrap")
    q = np.fft.fftshift(frequencies_per_px(image.shape))
    ring = np.floor(q * max(ny, nx) + 0.5).astype(np.int64)
    medians = np.zeros(ring.max() + 1)
    order = np.argsort(ring.ravel(), kind="stable")
    bounds = np.searchsorted(ring.ravel()[order], np.arange(ring.max() + 2))
    values = smooth.ravel()[order]
    for r in range(ring.max() + 1):
        if bounds[r + 1] > bounds[r]:
            medians[r] = np.median(values[bounds[r] : bounds[r + 1]])
    ratio = smooth / np.maximum(medians[ring], 1e-300)
    y0, x0 = ny // 2, nx // 2
    yy, xx = np.indices((ny, nx))
    usable = (q >= q_range_per_px[0]) & (q <= q_range_per_px[1])
    usable &= (np.abs(yy - y0) > 2) & (np.abs(xx - x0) > 2)
    usable &= (yy > y0) | ((yy == y0) & (xx > x0))  # one of each Friedel pair
    peaks_at = (ratio == scipy.ndimage.maximum_filter(ratio, 5)) & (ratio > min_strength) & usable
    peaks = []
    for y, x in zip(*np.nonzero(peaks_at)):
        ys, xs = slice(max(y - 2, 0), y + 3), slice(max(x - 2, 0), x + 3)
        excess = np.clip(power[ys, xs] - medians[ring[ys, xs]], 0.0, None)
        if excess.sum() <= 0:
            continue
        cy = (excess * yy[ys, xs]).sum() / excess.sum() - y0
        cx = (excess * xx[ys, xs]).sum() / excess.sum() - x0
        qy, qx = cy / ny, cx / nx
        peaks.append(
            BraggPeak(
                q_per_px=float(np.hypot(qy, qx)),
                angle_rad=float(np.arctan2(qy, qx) % np.pi),
                strength=float(ratio[y, x]),
            )
        )
    return peaks


def pixel_size_from_bragg(
    q_per_px: list[float], d_spacings_A: dict[str, float], tolerance: float = 0.03
) -> dict:
    """Pixel size [A] from the |q| of Bragg spots (of one or many micrographs of one pixel size).

    The spots are grouped into families of equal |q| (within `tolerance`, relative). The most
    populated family is taken for the first reflection of d_spacings_A (for an FCC metal {111},
    the one seen in most orientations): pixel_size_A = d_111 x q (d = 1 / q pixels per fringe).
    The other families are then named by the reflection whose spacing they match under that
    pixel size (a {200} family at q_200 / q_111 = 1.155 confirms the choice). The answer if the
    main family were each other reflection is reported too: one family alone cannot tell."""
    if not len(q_per_px):
        return {"pixel_size_A": None, "n_spots": 0, "families": []}
    values = np.sort(np.asarray(q_per_px, dtype=np.float64))
    families, current = [], [values[0]]
    for value in values[1:]:
        if value <= current[-1] * (1 + tolerance):
            current.append(value)
        else:
            families.append(current)
            current = [value]
    families.append(current)
    main = max(families, key=len)
    q_main = float(np.median(main))
    names = list(d_spacings_A)
    pixel_size = d_spacings_A[names[0]] * q_main
    described = []
    for family in families:
        q_family = float(np.median(family))
        spacing_A = pixel_size / q_family
        match = [n for n in names if abs(spacing_A / d_spacings_A[n] - 1) < tolerance]
        described.append(
            {
                "q_per_px": q_family,
                "n_spots": len(family),
                "spacing_A": spacing_A,
                "reflection": match[0] if match else None,
            }
        )
    return {
        "pixel_size_A": pixel_size,
        "assumed_reflection": names[0],
        "main_family_q_per_px": q_main,
        "n_spots": int(len(values)),
        "confirmed_by": sorted(
            {f["reflection"] for f in described if f["reflection"] not in (None, names[0])}
        ),
        "families": described,
        "if_main_family_were": {n: d_spacings_A[n] * q_main for n in names[1:]},
    }


# ---------------------------------------------------------------------------------------------
# Defocus (and Cs) from the Thon rings of the carbon

#: The opposite sign's best fit must leave this much more residual for the sign to count as
#: determined (the rings' zeros alone are even in defocus; only Cs breaks the symmetry).
SIGN_RSS_RATIO = 1.10


@dataclass
class ThonFit:
    defocus_A: float  # abTEM sign: positive = underfocus
    cs_A: float  # C30 used (fixed) or fitted
    cs_fitted: bool
    rss: float  # weighted residual sum of squares of the best fit
    mirror_defocus_A: float  # the best fit of the opposite sign
    mirror_rss: float
    sign_determined: bool  # mirror_rss > SIGN_RSS_RATIO x rss
    ring_to_background_power: float  # sum of the ring signal / sum of the background, above
    # the second zero
    zeros_q_per_px: np.ndarray = field(repr=False)  # zeros of sin^2 chi in the fitted range
    q_per_px: np.ndarray = field(repr=False)  # the fitted bins
    power: np.ndarray = field(repr=False)  # their measured power
    background: np.ndarray = field(repr=False)  # the non-oscillating part: noise x MTF^2 + ...
    model: np.ndarray = field(repr=False)  # background + ring amplitude x <sin^2 chi>


def ctf_phase_terms(k_per_A: np.ndarray, energy_eV: float, cs_A: float):
    """(chi at zero defocus, d chi / d defocus) [rad] at |k| (1/A): the round aberrations of
    aberrations.aberration_phase, C10 = -defocus and C30 = Cs; chi is linear in defocus."""
    wavelength = wavelength_A(energy_eV)
    zeros = np.zeros_like(k_per_A)
    chi_cs = aberration_phase(k_per_A, zeros, wavelength, {"C30": float(cs_A)})
    chi_per_defocus = aberration_phase(k_per_A, zeros, wavelength, {"C10": -1.0})
    return chi_cs, chi_per_defocus


def ring_zeros_q_per_px(
    q_per_px: np.ndarray,
    pixel_size_A: float,
    energy_eV: float,
    defocus_A: float,
    cs_A: float,
    resolution_per_px: float,
) -> np.ndarray:
    """The q (cycles/px) where sin^2 chi = 0 (chi crosses a multiple of pi) within q_per_px's
    range, on a grid 20 times finer than resolution_per_px."""
    q = np.arange(q_per_px[0], q_per_px[-1], resolution_per_px / 20)
    chi_cs, chi_d = ctf_phase_terms(q / pixel_size_A, energy_eV, cs_A)
    turns = np.floor((chi_cs + defocus_A * chi_d) / np.pi)
    return q[1:][np.diff(turns) != 0]


def _spline_basis(q: np.ndarray, n_basis: int) -> np.ndarray:
    from scipy.interpolate import BSpline

    inner = np.linspace(q[0], q[-1], n_basis - 2)
    knots = np.concatenate([[q[0]] * 3, inner, [q[-1]] * 3])
    return BSpline.design_matrix(q, knots, 3).toarray()


class _RingModel:
    """y = P / R ~ b(q) + a(q) <sin^2 chi(k)>_bin, b and a cubic splines, fitted by weighted
    linear least squares for each (defocus, Cs): the spline coefficients are projected out."""

    def __init__(self, spectrum, pixel_size_A, energy_eV, q_range_per_px, n_basis):
        q, power, pixels = spectrum.q_per_px, spectrum.power, spectrum.pixels
        keep = (q >= q_range_per_px[0]) & (q <= q_range_per_px[1]) & (power > 0)
        if keep.sum() < 4 * n_basis:
            raise ValueError(f"too few spectrum bins in q {q_range_per_px} for a Thon-ring fit")
        self.q, self.power = q[keep], power[keep]
        # a smooth reference (log-polynomial) so that the splines fit numbers near 1
        log_fit = np.polyfit(np.log(self.q), np.log(self.power), 4, w=np.sqrt(pixels[keep]))
        self.reference = np.exp(np.polyval(log_fit, np.log(self.q)))
        self.y = self.power / self.reference
        self.weight = np.sqrt(pixels[keep])
        self.basis = _spline_basis(self.q, n_basis)
        # chi on a grid KERNEL_SUBSAMPLES times finer than the bins, wide enough for the kernel:
        # sin^2 chi is smeared by the window's kernel, then averaged over each bin's width
        self.subsamples = KERNEL_SUBSAMPLES
        self.kernel = (
            spectrum.kernel if spectrum.kernel is not None else np.ones(1)
        )  # no window: no smearing
        margin = len(self.kernel) // 2
        width = spectrum.bin_width_per_px
        fine = (np.arange(-margin, len(self.q) * self.subsamples + margin) + 0.5) / self.subsamples
        self.k_sub = np.abs(self.q[0] - width / 2 + fine * width) / pixel_size_A
        self.margin = margin
        self.energy_eV = energy_eV

    def terms(self, cs_A):
        return ctf_phase_terms(self.k_sub, self.energy_eV, cs_A)

    def solve(self, defoci_A: np.ndarray, cs_A: float, chi=None):
        """(rss per defocus, coefficients, <sin^2 chi> per bin) for a batch of defoci."""
        chi_cs, chi_d = self.terms(cs_A) if chi is None else chi
        defoci = np.atleast_1d(np.asarray(defoci_A, dtype=np.float64))
        rings = np.sin(chi_cs[None] + defoci[:, None] * chi_d[None]) ** 2
        if len(self.kernel) > 1:
            rings = scipy.ndimage.convolve1d(rings, self.kernel, axis=1, mode="nearest")
        rings = rings[:, self.margin : rings.shape[1] - self.margin]
        rings = rings.reshape(len(defoci), len(self.q), self.subsamples).mean(axis=-1)
        design = (
            np.concatenate(
                [
                    np.broadcast_to(self.basis, (len(defoci), *self.basis.shape)),
                    self.basis * rings[..., None],
                ],
                axis=-1,
            )
            * self.weight[None, :, None]
        )
        target = self.y * self.weight
        normal = np.einsum("mni,mnj->mij", design, design)
        ridge = 1e-9 * np.trace(normal, axis1=1, axis2=2)[:, None, None] * np.eye(normal.shape[-1])
        rhs = np.einsum("mni,n->mi", design, target)[..., None]
        coefficients = np.linalg.solve(normal + ridge, rhs)[..., 0]
        residual = target[None] - np.einsum("mni,mi->mn", design, coefficients)
        return (residual**2).sum(axis=1), coefficients, rings

    def scan(self, cs_A: float, defocus_range_A: tuple[float, float], chunk: int = 512):
        """rss on a defocus grid fine enough that chi moves < 0.25 rad at the highest k."""
        chi = self.terms(cs_A)
        step = 0.25 / float(np.abs(chi[1]).max())
        grid = np.arange(defocus_range_A[0], defocus_range_A[1] + step, step)
        rss = np.concatenate(
            [self.solve(grid[i : i + chunk], cs_A, chi)[0] for i in range(0, len(grid), chunk)]
        )
        return grid, rss, step

    def refine(self, cs_A: float, grid, rss, step, sign: int) -> tuple[float, float]:
        """The best defocus of one sign (+1: underfocus, -1: overfocus), refined off the grid."""
        same = sign * grid > 0
        if not same.any():
            return float("nan"), float("inf")
        best = grid[same][np.argmin(rss[same])]
        chi = self.terms(cs_A)
        result = scipy.optimize.minimize_scalar(
            lambda d: float(self.solve([d], cs_A, chi)[0][0]),
            bounds=(best - 2 * step, best + 2 * step),
            method="bounded",
            options={"xatol": step / 50},
        )
        return float(result.x), float(result.fun)


def fit_thon_rings(
    spectrum: RadialSpectrum,
    pixel_size_A: float,
    energy_eV: float,
    cs_A: float,
    q_range_per_px: tuple[float, float] = (0.03, 0.45),
    defocus_range_A: tuple[float, float] = (-30000.0, 30000.0),
    fit_cs: bool = False,
    cs_range_A: tuple[float, float] = (0.0, 3.0e7),
    n_basis: int = 8,
) -> ThonFit:
    """Defocus [A] (and optionally Cs) from the radially averaged power spectrum of the carbon.

    Assumptions: the carbon is a weak phase object, so its image spectrum is
    P(q) = b(q) + a(q) sin^2 chi(k) (Kirkland's CTF; amplitude contrast, ~5 % for carbon, is
    neglected: it shifts the zeros slightly towards lower k); b (noise x MTF^2, inelastic and
    amplitude background) and a (the carbon's spectrum times the coherence envelopes and MTF^2)
    are smooth: cubic splines of n_basis coefficients each, found by linear least squares for
    every trial lens, so only chi is searched. Astigmatism is neglected (the radial average of
    elliptic rings blurs them). chi(k) = pi/2 Cs lambda^3 k^4 - pi lambda defocus k^2 as in
    aberrations.py, k = q / pixel_size_A: an error of x % in the pixel size is one of ~2x % in
    the defocus. The defocus is scanned on a grid over defocus_range_A, then refined.

    Sign: sin^2 chi is even in chi, and without Cs the rings of +defocus and -defocus coincide;
    only the Cs term tells under- from overfocus, well only where it is a sizable part of chi.
    The best fit of each sign is reported; the sign counts as determined when the other sign's
    residual is SIGN_RSS_RATIO times larger. fit_cs: Cs is scanned over cs_range_A too (13
    values) and refined with the defocus; otherwise it is fixed to cs_A (the user's value)."""
    model = _RingModel(spectrum, pixel_size_A, energy_eV, q_range_per_px, n_basis)
    cs_values = np.linspace(*cs_range_A, 13) if fit_cs else [float(cs_A)]
    best = None
    for cs in cs_values:
        grid, rss, step = model.scan(cs, defocus_range_A)
        index = int(np.argmin(rss))
        if best is None or rss[index] < best[0]:
            best = (float(rss[index]), float(cs), grid, rss, step)
    _, cs_best, grid, rss, step = best
    if fit_cs:
        cs_scale = (cs_range_A[1] - cs_range_A[0]) / 12

        def objective(x):
            cs = float(np.clip(x[1] * cs_scale, *cs_range_A))
            return float(model.solve([x[0] * step], cs)[0][0])

        start = [grid[int(np.argmin(rss))] / step, cs_best / cs_scale]
        result = scipy.optimize.minimize(objective, start, method="Nelder-Mead")
        cs_best = float(np.clip(result.x[1] * cs_scale, *cs_range_A))
        grid, rss, step = model.scan(cs_best, defocus_range_A)
    fits = {sign: model.refine(cs_best, grid, rss, step, sign) for sign in (1, -1)}
    sign = 1 if fits[1][1] <= fits[-1][1] else -1
    (defocus, rss_best), (mirror, rss_mirror) = fits[sign], fits[-sign]
    _, coefficients, rings = model.solve([defocus], cs_best)
    n_basis_b = model.basis.shape[1]
    background = model.basis @ coefficients[0, :n_basis_b] * model.reference
    ring_amplitude = model.basis @ coefficients[0, n_basis_b:] * model.reference
    signal = ring_amplitude * rings[0]
    zeros = ring_zeros_q_per_px(
        model.q, pixel_size_A, energy_eV, defocus, cs_best, spectrum.bin_width_per_px
    )
    above = model.q >= (zeros[1] if len(zeros) > 1 else model.q[0])
    return ThonFit(
        defocus_A=defocus,
        cs_A=cs_best,
        cs_fitted=bool(fit_cs),
        rss=rss_best,
        mirror_defocus_A=mirror,
        mirror_rss=rss_mirror,
        sign_determined=bool(rss_mirror > SIGN_RSS_RATIO * rss_best),
        ring_to_background_power=float(np.sum(signal[above]) / np.sum(background[above])),
        zeros_q_per_px=zeros,
        q_per_px=model.q,
        power=model.power,
        background=background,
        model=background + signal,
    )


# ---------------------------------------------------------------------------------------------
# Noise power spectrum, MTF and dose


@dataclass
class MTFFit:
    c1: float
    c2: float
    c3: float
    white_noise_variances: list[float]  # N0 per spectrum: noise variance before the MTF (gray^2)
    noise_levels_fitted: bool  # False: N0 was given (counts: N0 = mean), only the shape fitted
    rms_log_residual: float
    q_range_per_px: tuple[float, float]

    def mtf(self, q_per_px):
        return mtf(q_per_px, self.c1, self.c2, self.c3)


def noise_std(shape_yx: tuple[int, int], white_noise_variance: float, c1, c2, c3) -> float:
    """Per-pixel standard deviation (gray) of white noise N0 after the MTF: sqrt(N0 <MTF^2>)."""
    transfer = np.mean(mtf(frequencies_per_px(shape_yx), c1, c2, c3) ** 2)
    return float(np.sqrt(white_noise_variance * transfer))


def noise_power_spectrum(spectrum: RadialSpectrum, thon: ThonFit) -> tuple[np.ndarray, np.ndarray]:
    """(q, NPS) [per px, gray^2]: the Thon fit's background from the rings' second zero on (below
    it, the first broad ring and the background cannot be told apart), the measured spectrum
    above the fitted range (up to Nyquist), where the carbon's signal is taken to have died out.

    Shot noise is white before the detector, so NPS = N0 MTF(q)^2 (Larsen et al. fitted it on
    vacuum). Most micrographs hold carbon, not vacuum: its phase contrast oscillates with
    sin^2 chi and vanishes at the rings' zeros, so the non-oscillating background under the rings
    is the noise (plus whatever smooth signal there is: amplitude contrast, inelastic
    scattering, mostly at low q)."""
    start = thon.zeros_q_per_px[1] if len(thon.zeros_q_per_px) > 1 else thon.q_per_px[0]
    fitted = thon.q_per_px >= start
    above = (spectrum.q_per_px > thon.q_per_px[-1]) & (spectrum.q_per_px <= 0.5)
    q = np.concatenate([thon.q_per_px[fitted], spectrum.q_per_px[above]])
    nps = np.concatenate([thon.background[fitted], spectrum.power[above]])
    return q, nps


def fit_mtf(
    spectra: list[tuple[np.ndarray, np.ndarray]],
    white_noise_variances: list[float] | None = None,
    q_range_per_px: tuple[float, float] = (0.03, 0.5),
) -> MTFFit:
    """One MTF(q; c1, c2, c3) (one camera) fitted to the noise power spectra (q, NPS) of several
    micrographs, NPS_i = N0_i MTF^2, by least squares in log space.

    MTF is formation.mtf (Madsen et al. 2018): (1 - c1) / (1 + (q / c2)^c3) + c1, MTF(0) = 1.
    Assumes white noise before the MTF (Poisson counts; a median filter, resampling or denoising
    after the camera shape the spectrum too). white_noise_variances: N0_i when known (raw
    counts: N0 = the mean count, Poisson); then only the MTF's shape is fitted, and it is
    determined. Without them N0_i are fitted too, and the fit is degenerate: the noise spectrum
    is measured only above the second Thon-ring zero, so a higher N0 with an MTF that drops
    already at low q fits as well (seen on simulated micrographs: N0 off by up to 70 %). The
    c-parameters trade off among themselves; compare MTF curves, not parameters."""
    selected = []
    for q, nps in spectra:
        keep = (q >= q_range_per_px[0]) & (q <= q_range_per_px[1]) & (nps > 0)
        selected.append((q[keep], np.log(nps[keep])))
    n = len(selected)
    given = None if white_noise_variances is None else np.log(np.asarray(white_noise_variances))

    def residual(x):
        levels = x[3:] if given is None else given
        return np.concatenate(
            [lv + 2 * np.log(mtf(q, *x[:3])) - y for lv, (q, y) in zip(levels, selected)]
        )

    extra = [] if given is None else None
    lower, upper = [0.0, 0.02, 0.5], [0.95, 5.0, 12.0]
    if extra is not None:
        lower, upper = lower + [-np.inf] * n, upper + [np.inf] * n
    best = None
    for start in ((0.1, 0.5, 2.5), (0.3, 0.2, 2.0), (0.02, 1.0, 3.0), (0.5, 0.1, 1.5)):
        x0 = list(start) + ([] if extra is None else [float(y[:5].mean()) for _, y in selected])
        result = scipy.optimize.least_squares(residual, x0, bounds=(lower, upper))
        if best is None or result.cost < best.cost:
            best = result
    x = best.x
    levels = np.exp(x[3:] if given is None else given)
    return MTFFit(
        c1=float(x[0]),
        c2=float(x[1]),
        c3=float(x[2]),
        white_noise_variances=[float(v) for v in levels],
        noise_levels_fitted=given is None,
        rms_log_residual=float(np.sqrt(np.mean(best.fun**2))),
        q_range_per_px=tuple(float(v) for v in q_range_per_px),
    )


def white_noise_variance(q_per_px: np.ndarray, nps: np.ndarray, c1, c2, c3) -> float:
    """N0 (gray^2, before the MTF) of a noise power spectrum with a known MTF: the median of
    NPS / MTF^2 (the noise-transfer correction)."""
    return float(np.median(nps / mtf(q_per_px, c1, c2, c3) ** 2))


def dose_from_noise(mean_gray: float, white_noise_variance: float, pixel_size_A: float) -> dict:
    """Counts per pixel, dose [e/A^2] and gain [gray per count] from Poisson statistics.

    Poisson counts have variance = mean before the MTF; a camera writing gray = gain x counts
    gives mean m = gain mu and white variance N0 = gain^2 mu, so mu = m^2 / N0 and
    dose = mu / pixel area. Valid for raw (gain-normalized or not) frames with no offset. An
    8-bit export (contrast-stretched: gray = a counts + b, b unknown), a median filter or any
    denoising breaks it: the result is then only an effective dose, that is an effective
    SNR (mu = (m / noise)^2 with this m), and is flagged so by the caller."""
    counts = float(mean_gray) ** 2 / float(white_noise_variance)
    return {
        "expected_counts_per_px": counts,
        "dose_e_per_A2": counts / float(pixel_size_A) ** 2,
        "gain_gray_per_count": float(white_noise_variance) / float(mean_gray),
    }


# ---------------------------------------------------------------------------------------------
# Particles from masks


def particle_statistics(
    image: np.ndarray,
    mask: np.ndarray,
    pixel_size_A: float,
    noise_std: float | None = None,
    carbon_ring_px: int = 8,
    min_diameter_A: float = MIN_PARTICLE_DIAMETER_A,
    depth_image: np.ndarray | None = None,
) -> dict:
    """Equivalent diameters [A], density, contrast of the particles of a mask (connected parts
    of at least `min_diameter_A` equivalent diameter; the smaller ones are fragments).

    Diameter: 2 sqrt(area / pi), of particles not touching the border (cut ones are smaller
    than they are). Density: particles per nm^2 of the field, a border-touching particle
    counting 1/2 (about half of it lies outside). Contrast per particle: (carbon - particle) /
    carbon with the particle's mean inside it (eroded by 2 px, off its edge) and the carbon's in
    a ring carbon_ring_px wide, MASK_MARGIN_PX off any particle; gray values are taken as
    proportional to counts (an offset, as in contrast-stretched 8-bit exports, biases it).
    With noise_std: the contrast-to-noise ratio (carbon - particle) / noise_std too.
    Depth per particle: (carbon - particle) / the carbon ring's standard deviation, the same
    regions on `depth_image` (default: `image`; e.g. the median-filtered image the network
    sees): how far the particle stands out of the carbon's texture and noise. Unlike the
    contrast it is the same for any affine gray scale (an 8-bit export's offset and stretch)."""
    depth_image = image if depth_image is None else np.asarray(depth_image, dtype=np.float64)
    labels, n = scipy.ndimage.label(mask != 0)
    image = np.asarray(image, dtype=np.float64)
    grown_all = scipy.ndimage.binary_dilation(mask != 0, iterations=MASK_MARGIN_PX)
    diameters_A, contrasts, cnrs, depths = [], [], [], []
    n_border = n_fragments = 0
    pad = MASK_MARGIN_PX + carbon_ring_px + 1
    for index, box in enumerate(scipy.ndimage.find_objects(labels), start=1):
        ys, xs = box
        region = labels[box] == index
        if 2 * np.sqrt(region.sum() / np.pi) * pixel_size_A < min_diameter_A:
            n_fragments += 1
            continue
        border = (
            ys.start == 0 or xs.start == 0 or ys.stop == mask.shape[0] or xs.stop == mask.shape[1]
        )
        if border:
            n_border += 1
        else:
            diameters_A.append(2 * np.sqrt(region.sum() / np.pi) * pixel_size_A)
        wide = (
            slice(max(ys.start - pad, 0), ys.stop + pad),
            slice(max(xs.start - pad, 0), xs.stop + pad),
        )
        particle = labels[wide] == index
        inner = scipy.ndimage.binary_erosion(particle, iterations=2)
        inner = inner if inner.any() else particle
        ring = scipy.ndimage.binary_dilation(particle, iterations=MASK_MARGIN_PX + carbon_ring_px)
        ring &= ~grown_all[wide]
        if ring.sum() < 10:
            continue
        carbon, inside = image[wide][ring].mean(), image[wide][inner].mean()
        contrasts.append((carbon - inside) / carbon)
        around, within = depth_image[wide][ring], depth_image[wide][inner]
        if around.std() > 0:
            depths.append((around.mean() - within.mean()) / around.std())
        if noise_std:
            cnrs.append((carbon - inside) / noise_std)
    area_nm2 = mask.size * (pixel_size_A / 10.0) ** 2
    n -= n_fragments
    return {
        "n_particles": int(n),
        "n_fragments": int(n_fragments),
        "min_diameter_A": float(min_diameter_A),
        "n_touching_border": int(n_border),
        "particles_per_nm2": (n - 0.5 * n_border) / area_nm2,
        "particle_area_fraction": float(np.mean(mask != 0)),
        "diameters_A": [float(d) for d in diameters_A],
        "contrasts": [float(c) for c in contrasts],
        "depths": [float(d) for d in depths],
        "contrast_median": float(np.median(contrasts)) if contrasts else None,
        "contrast_to_noise_median": float(np.median(cnrs)) if cnrs else None,
    }
