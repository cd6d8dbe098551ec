"""Particle analysis of predicted masks: each particle's Fourier transform and a zone-axis flag.

After Larsen et al., "Large-scale automated analysis of HRTEM data assisted by deep learning
neural networks" (MSD-net; shared/papers/larsen_msdnet_large_scale_hrtem_analysis.txt): the
network's particle mask crops the micrograph in real space, so that the Fourier transform shows
the lattice peaks of just that particle (not of the substrate or of its neighbours), and "the
ratio between the brightest pair of symmetric peaks to the dimmest pair of symmetric peaks"
tells particles on a zone axis, whose atomic columns are resolved, from the others.

The method, for each connected component of the mask (`analyze_particles`):

1. label the mask's 8-connected components; skip those smaller than ``min_area_A2``;
2. crop the particle's bounding box with a margin (``margin_A``); keep only this particle's
   pixels of the mask and soften its edge with a Gaussian of ``edge_sigma_A``; subtract the
   window-weighted mean of the image and multiply by that soft mask. The window is the mask,
   not a Hann window over the box: a box window keeps substrate, vacuum and neighbours in its
   corners (whose peaks the crop is there to remove) and weights the particle's rim down. A
   hard mask edge would turn every intensity step along it into streaks through the lattice
   band; the Gaussian edge damps them by exp(-(2 pi sigma k)^2 / 2) in amplitude, to below
   1e-3 of a hard edge's power from k = 0.42 / sigma on (0.28 / A for sigma = 1.5 A: the
   band's lower end);
3. zero-pad to a square (twice the box, up to PAD_LIMIT_PX: finer sampling of the peaks) and
   take the power spectrum |FFT|^2 / (n^2 sum(w^2)): a lattice fringe of amplitude a gives
   peaks of summed power a^2 / 4 (less what falls outside the summing disk), whatever the
   particle's size and the padding;
4. in the band ``k_min_per_A`` <= |k| <= ``k_max_per_A`` (spacings 1.3 to 3.5 A by default;
   see below), find local maxima (within the peak radius below) of the power spectrum,
   smoothed by a Gaussian of one frequency pixel against speckle, that exceed
   ``noise_factor`` x the median power in the band (the noise and diffuse background: the
   peaks fill a small part of the band);
5. group them into Friedel pairs (k, -k): the power spectrum of a real image is
   centrosymmetric, P(k) = P(-k) exactly, so every peak has its partner and a pair is the peak
   of the half plane k_y > 0 (or k_y = 0, k_x > 0). A pair's power (brightness) is the power
   summed over a disk around the peak whose radius is the central lobe of the particle's
   transform, 1.22 / D (D the diameter of a disk of the particle's area), and its frequency the
   power-weighted centroid over that disk: neither depends on where the peak falls between
   frequency pixels, as the peak pixel's value does (by up to a factor 2);
6. the principal pairs: the brightest pair of each lattice direction (brightest first, a pair
   counts when its direction differs by more than ``min_angle_deg`` from every brighter
   principal pair; harmonics such as {222} behind {111} do not). The ratio is the brightest
   over the dimmest of the ``ratio_directions`` brightest principal pairs, and ``zone_axis``
   = at least ``min_pairs`` principal pairs (crossed lattice fringes: a particle on a zone axis
   shows two or more sets of planes edge-on) and ratio <= ``max_ratio`` (the crossed sets are
   comparably bright; off the axis at most one set stays edge-on, much brighter than what else
   survives).

Why the ratio over the brightest principal pairs and not over every detected pair: the dimmest
of all detected pairs sits at the detection threshold (noise_factor x the noise median), so that
ratio measures the signal-to-noise ratio more than the orientation. Measured on the simulated
Au particle of tests/real/test_particles.py on [110] with noise_factor 10: 1.9 at 1000 e/A^2 but 121
at 4000 e/A^2, where a faint extra peak passed the threshold (with spacings down to 1.0 A: 8.5
and 121). It is reported as ``ratio_all_pairs``, for comparison with thresholds of that kind.

Defaults, from abTEM simulations of a 26 A Au sphere (300 kV, Cs 20 um, Scherzer defocus 75 A,
0.125 A pixels, Poisson noise at 100 to 4000 e/A^2; see tests/real/test_particles.py for the setup).
The ratio on [110] was 1.6 to 1.9, on [111] 1.0 to 1.1, on [211] (one {111} and one {220} set)
3.1 to 3.6, 2 degrees off [110] 2.0 to 2.2 and 4 degrees off 7 to 9. Tilted 6, 8, 10 and 12
degrees off [110] about 12 in-plane axes (every 15 degrees), it was >= 4.2 in 47 of the 48
orientations at 300 to 4000 e/A^2 (>= 4.9 but once); at 100 e/A^2 two more fell to 3.0 and 3.4,
where a third set sank into the noise. ``max_ratio`` = 4 sits between: 1.8x above the highest
value within 2 degrees of [110], just below the lowest tilted ones. Limits, partly of this small
particle (its lattice peaks are ~1 / 26 A broad, so planes tilted by a few degrees stay
excited): 6 degrees about the [1-10] direction (keeping {220} edge-on) gave 2.3 (flagged);
[100] gave 11 (not flagged): its third set, {220}, is 11x weaker than {200}
(``ratio_directions`` = 2 accepts [100], at the price of more false positives: the ratio of 2
sets was 1.5 to 3 for half of the 8 degree tilts). The band stops at 1.3 A because with
spacings down to 1.0 A, Au {311} (1.23 A) stays edge-on under tilts about its direction and gave
ratios of 3.2 at 8 degrees; 1.3 A keeps {111}, {200} and {220} of Au, Ag, Pt and Pd (1.38 to
1.44 A); Cu and Ni {220} (1.28 and 1.25 A) need ``k_max_per_A`` = 1 / 1.2. noise_factor 20: the
smoothed spectra of 150 pure-noise (Poisson) particles of 12 to 50 A peaked at up to 12.4x
their band median (3 % of them above 10x); at 1000 e/A^2 the [110] particle's {111} and {200}
peaks were 700x to 1300x, the faint sets of the tilted particles 50x to 100x.

The ratio is None when a particle has fewer than 2 principal pairs: there is no second lattice
direction to compare with, and neither 0 pairs (no lattice) nor one direction (one fringe set
and its harmonics) is a zone axis, so the flag needs no value; None (not inf) keeps those
particles out of ratio statistics (one inf makes a mean inf) and writes an empty CSV cell.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.fft
import scipy.ndimage

#: Defaults of analyze_particles (see the module docstring for what they mean and why).
DEFAULT_K_MIN_PER_A = 1 / 3.5  # spacings up to 3.5 A
DEFAULT_K_MAX_PER_A = 1 / 1.3  # spacings down to 1.3 A
DEFAULT_MIN_AREA_A2 = 100.0  # a disk of 11 A diameter: its peaks are 0.1 / A wide
DEFAULT_MARGIN_A = 5.0  # beyond 3 x the edge's sigma: the soft edge fits in the crop
DEFAULT_EDGE_SIGMA_A = 1.5
DEFAULT_NOISE_FACTOR = 20.0
DEFAULT_MIN_ANGLE_DEG = 15.0
DEFAULT_MIN_PAIRS = 2
DEFAULT_RATIO_DIRECTIONS = 3
DEFAULT_MAX_RATIO = 4.0
#: Crops are zero-padded to twice their size, but not beyond this (unless they are larger).
PAD_LIMIT_PX = 1024

#: Columns of write_particles_csv, in order. Lists (the pairs, brightest first) are joined by ';'.
CSV_COLUMNS = (
    "label",
    "area_px",
    "area_A2",
    "centroid_y_px",
    "centroid_x_px",
    "n_pairs",
    "n_directions",
    "ratio",
    "ratio_all_pairs",
    "zone_axis",
    "principal_spacing_A",
    "k_per_A",
    "spacing_A",
    "angle_deg",
    "power",
    "noise_power",
)


@dataclass(frozen=True)
class LatticePair:
    """One Friedel pair of lattice peaks, at (k_y, k_x) and (-k_y, -k_x) in 1/A.

    k_per_A: |k|, the spatial frequency; spacing_A = 1 / k_per_A, the lattice-plane spacing;
    angle_deg: the direction of k, in [0, 180) degrees from +x (image columns) towards +y
    (image rows); power: the power summed over the peak's disk (units of the normalised
    spectrum: a fringe of amplitude a gives about a^2 / 4); over_noise: the smoothed peak
    pixel over the band's median power."""

    k_y_per_A: float
    k_x_per_A: float
    k_per_A: float
    spacing_A: float
    angle_deg: float
    power: float
    over_noise: float


@dataclass(frozen=True)
class ParticleAnalysis:
    """One particle (connected component) of the mask.

    label: its label (scipy.ndimage.label, 8-connected); area_px, area_A2: its mask area;
    centroid_yx_px: the mask's centroid (row, column); pairs: every lattice pair, brightest
    first; principal: the brightest pair of each direction, brightest first; ratio: brightest
    over dimmest of the first ratio_directions principal pairs (None with fewer than 2);
    ratio_all_pairs: brightest over dimmest of all pairs (None with fewer than 2); zone_axis:
    the flag; noise_power: the median power in the band."""

    label: int
    area_px: int
    area_A2: float
    centroid_yx_px: tuple[float, float]
    pairs: tuple[LatticePair, ...]
    principal: tuple[LatticePair, ...]
    ratio: float | None
    ratio_all_pairs: float | None
    zone_axis: bool
    noise_power: float

    @property
    def n_pairs(self) -> int:
        return len(self.pairs)

    @property
    def n_directions(self) -> int:
        return len(self.principal)

    def row(self) -> dict[str, object]:
        """The CSV row (CSV_COLUMNS): lists of the pairs' values joined by ';'."""

        def joined(values: Iterable[float], fmt: str) -> str:
            return ";".join(format(v, fmt) for v in values)

        def optional(value: float | None) -> str:
            return "" if value is None else f"{value:.6g}"

        return {
            "label": self.label,
            "area_px": self.area_px,
            "area_A2": f"{self.area_A2:.6g}",
            "centroid_y_px": f"{self.centroid_yx_px[0]:.2f}",
            "centroid_x_px": f"{self.centroid_yx_px[1]:.2f}",
            "n_pairs": self.n_pairs,
            "n_directions": self.n_directions,
            "ratio": optional(self.ratio),
            "ratio_all_pairs": optional(self.ratio_all_pairs),
            "zone_axis": self.zone_axis,
            "principal_spacing_A": joined((p.spacing_A for p in self.principal), ".4f"),
            "k_per_A": joined((p.k_per_A for p in self.pairs), ".5f"),
            "spacing_A": joined((p.spacing_A for p in self.pairs), ".4f"),
            "angle_deg": joined((p.angle_deg for p in self.pairs), ".1f"),
            "power": joined((p.power for p in self.pairs), ".5g"),
            "noise_power": f"{self.noise_power:.5g}",
        }


def particle_spectrum(
    crop: np.ndarray, weight: np.ndarray, pixel_size_A: float
) -> tuple[np.ndarray, np.ndarray]:
    """Power spectrum of ``(crop - weighted mean) * weight``, zero-padded to a square.

    Returns (power, k_per_A): power (n, n) float64, zero frequency at [n // 2, n // 2]
    (fftshift order), normalised by n^2 sum(weight^2) (see the module docstring); k_per_A (n,)
    the spatial frequencies of its rows and columns (1/A)."""
    crop = np.asarray(crop, dtype=np.float64)
    weight = np.asarray(weight, dtype=np.float64)
    if crop.ndim != 2 or crop.shape != weight.shape:
        raise ValueError(f"crop {crop.shape} and weight {weight.shape} must be the same 2-D shape")
    total = weight.sum()
    if not total > 0:
        raise ValueError("the window is empty")
    windowed = (crop - (crop * weight).sum() / total) * weight
    side = max(crop.shape)
    n = scipy.fft.next_fast_len(max(side, min(2 * side, PAD_LIMIT_PX)))
    spectrum = scipy.fft.fft2(windowed, s=(n, n), workers=-1)
    power = spectrum.real**2 + spectrum.imag**2
    power = np.fft.fftshift(power) / (n * n * (weight**2).sum())
    return power, np.fft.fftshift(np.fft.fftfreq(n, d=pixel_size_A))


def lattice_pairs(
    power: np.ndarray,
    k_per_A: np.ndarray,
    peak_radius_per_A: float,
    *,
    k_min_per_A: float = DEFAULT_K_MIN_PER_A,
    k_max_per_A: float = DEFAULT_K_MAX_PER_A,
    noise_factor: float = DEFAULT_NOISE_FACTOR,
) -> tuple[list[LatticePair], float]:
    """Friedel pairs of peaks in a centred square power spectrum (see `particle_spectrum`).

    Peaks: maxima within peak_radius_per_A of the spectrum smoothed by a Gaussian of one
    frequency pixel, inside the band, above noise_factor x the band's median power. Returns the
    pairs, brightest first, and that median."""
    n = power.shape[0]
    if power.shape != (n, n) or np.shape(k_per_A) != (n,):
        raise ValueError("lattice_pairs takes a square centred spectrum and its frequencies")
    step_per_A = float(k_per_A[1] - k_per_A[0])
    k_abs = np.hypot(k_per_A[:, None], k_per_A[None, :])
    band = (k_abs >= k_min_per_A) & (k_abs <= k_max_per_A)
    if not band.any():
        raise ValueError(
            f"no frequency in the band {k_min_per_A:.3g} to {k_max_per_A:.3g} / A "
            f"(steps of {step_per_A:.3g} / A)"
        )
    noise = float(np.median(power[band]))
    smooth = scipy.ndimage.gaussian_filter(power, 1.0, mode="wrap")
    radius_px = max(1.0, float(peak_radius_per_A) / step_per_A)
    reach = int(math.ceil(radius_px))
    offsets = np.arange(-reach, reach + 1)
    disk = np.hypot(offsets[:, None], offsets[None, :]) <= radius_px
    is_max = smooth == scipy.ndimage.maximum_filter(smooth, footprint=disk, mode="wrap")
    rows, cols = np.nonzero(is_max & band & (smooth > noise_factor * noise))
    centre = n // 2
    half_plane = (rows > centre) | ((rows == centre) & (cols > centre))
    dy, dx = (o[disk] for o in np.meshgrid(offsets, offsets, indexing="ij"))
    pairs = []
    for row, col in zip(rows[half_plane], cols[half_plane]):
        values = power[(row + dy) % n, (col + dx) % n]
        excess = np.clip(values - noise, 0.0, None)  # the centroid of the peak above background
        if excess.sum() > 0:
            shift_y, shift_x = (excess @ dy) / excess.sum(), (excess @ dx) / excess.sum()
        else:
            shift_y = shift_x = 0.0
        k_y = float(k_per_A[row] + step_per_A * shift_y)
        k_x = float(k_per_A[col] + step_per_A * shift_x)
        if k_y < 0 or (k_y == 0 and k_x < 0):  # the centroid crossed into the other half plane
            k_y, k_x = -k_y, -k_x
        k = math.hypot(k_y, k_x)
        pairs.append(
            LatticePair(
                k_y_per_A=k_y,
                k_x_per_A=k_x,
                k_per_A=k,
                spacing_A=1.0 / k,
                angle_deg=math.degrees(math.atan2(k_y, k_x)) % 180.0,  # [0, 180)
                power=float(values.sum()),
                over_noise=float(smooth[row, col] / noise) if noise > 0 else math.inf,
            )
        )
    pairs.sort(key=lambda p: p.power, reverse=True)
    return pairs, noise


def angle_between_deg(a_deg: float, b_deg: float) -> float:
    """The angle between two axial directions (defined modulo 180 degrees), in [0, 90]."""
    d = abs(a_deg - b_deg) % 180.0
    return min(d, 180.0 - d)


def principal_pairs(pairs: Iterable[LatticePair], min_angle_deg: float) -> list[LatticePair]:
    """The brightest pair of each lattice direction, brightest first: going through ``pairs``
    by power, a pair is kept when its direction differs by more than min_angle_deg from every
    pair kept before it (harmonics and near neighbours of a kept pair are not)."""
    kept: list[LatticePair] = []
    for pair in sorted(pairs, key=lambda p: p.power, reverse=True):
        if all(angle_between_deg(pair.angle_deg, k.angle_deg) > min_angle_deg for k in kept):
            kept.append(pair)
    return kept


def check_band(
    pixel_size_A: float,
    k_min_per_A: float = DEFAULT_K_MIN_PER_A,
    k_max_per_A: float = DEFAULT_K_MAX_PER_A,
) -> None:
    """ValueError unless 0 <= k_min < k_max <= the Nyquist frequency of pixel_size_A pixels."""
    if not pixel_size_A > 0:
        raise ValueError(f"the pixel size must be > 0 A, not {pixel_size_A}")
    if not 0 <= k_min_per_A < k_max_per_A:
        raise ValueError(f"need 0 <= k_min_per_A < k_max_per_A, not {k_min_per_A}, {k_max_per_A}")
    if k_max_per_A > 0.5 / pixel_size_A:
        raise ValueError(
            f"the lattice band reaches {k_max_per_A:.3g} / A (spacings down to "
            f"{1 / k_max_per_A:.3g} A), beyond the Nyquist frequency {0.5 / pixel_size_A:.3g} / A "
            f"of {pixel_size_A:.4g} A pixels"
        )


def analyze_particles(
    image: np.ndarray,
    mask: np.ndarray,
    pixel_size_A: float,
    *,
    min_area_A2: float = DEFAULT_MIN_AREA_A2,
    margin_A: float = DEFAULT_MARGIN_A,
    edge_sigma_A: float = DEFAULT_EDGE_SIGMA_A,
    k_min_per_A: float = DEFAULT_K_MIN_PER_A,
    k_max_per_A: float = DEFAULT_K_MAX_PER_A,
    noise_factor: float = DEFAULT_NOISE_FACTOR,
    min_angle_deg: float = DEFAULT_MIN_ANGLE_DEG,
    min_pairs: int = DEFAULT_MIN_PAIRS,
    ratio_directions: int = DEFAULT_RATIO_DIRECTIONS,
    max_ratio: float = DEFAULT_MAX_RATIO,
) -> list[ParticleAnalysis]:
    """Each particle of ``mask`` (a boolean particle mask of ``image``, e.g. a network's
    prediction), analysed in the Fourier domain; see the module docstring for the method, the
    reference and the defaults. ``image``: the micrograph (any intensity scale: counts or
    normalised; the ratio does not depend on it); ``pixel_size_A``: its pixel size. Returns one
    ParticleAnalysis per particle of at least ``min_area_A2``, in label order."""
    image = np.asarray(image, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if image.ndim != 2 or image.shape != mask.shape:
        raise ValueError(f"image {image.shape} and mask {mask.shape} must be the same 2-D shape")
    pixel_size_A = float(pixel_size_A)
    check_band(pixel_size_A, k_min_per_A, k_max_per_A)
    if min_pairs < 2 or ratio_directions < 2:
        raise ValueError(
            f"min_pairs and ratio_directions must be >= 2 (a ratio needs two pairs), "
            f"not {min_pairs}, {ratio_directions}"
        )
    if not np.all(np.isfinite(image)):
        raise ValueError("the image has NaN or infinite pixels")
    labels, _ = scipy.ndimage.label(mask, structure=np.ones((3, 3), bool))
    pixel_area_A2 = pixel_size_A**2
    margin_px = int(math.ceil(max(margin_A, 3 * edge_sigma_A) / pixel_size_A))
    results = []
    for label, box in enumerate(scipy.ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        own = labels[box] == label
        area_px = int(own.sum())
        if area_px * pixel_area_A2 < min_area_A2:
            continue
        rows, cols = np.nonzero(own)
        centroid = (float(rows.mean()) + box[0].start, float(cols.mean()) + box[1].start)
        y0, y1 = max(0, box[0].start - margin_px), min(mask.shape[0], box[0].stop + margin_px)
        x0, x1 = max(0, box[1].start - margin_px), min(mask.shape[1], box[1].stop + margin_px)
        weight = scipy.ndimage.gaussian_filter(
            (labels[y0:y1, x0:x1] == label).astype(np.float64),
            edge_sigma_A / pixel_size_A,
            mode="constant",
        )
        power, k_per_A = particle_spectrum(image[y0:y1, x0:x1], weight, pixel_size_A)
        diameter_A = 2.0 * math.sqrt(area_px * pixel_area_A2 / math.pi)
        pairs, noise = lattice_pairs(
            power,
            k_per_A,
            1.22 / diameter_A,
            k_min_per_A=k_min_per_A,
            k_max_per_A=k_max_per_A,
            noise_factor=noise_factor,
        )
        principal = principal_pairs(pairs, min_angle_deg)
        compared = principal[:ratio_directions]
        ratio = compared[0].power / compared[-1].power if len(compared) >= 2 else None
        ratio_all = pairs[0].power / pairs[-1].power if len(pairs) >= 2 else None
        results.append(
            ParticleAnalysis(
                label=label,
                area_px=area_px,
                area_A2=area_px * pixel_area_A2,
                centroid_yx_px=centroid,
                pairs=tuple(pairs),
                principal=tuple(principal),
                ratio=ratio,
                ratio_all_pairs=ratio_all,
                zone_axis=bool(
                    len(principal) >= min_pairs and ratio is not None and ratio <= max_ratio
                ),
                noise_power=noise,
            )
        )
    return results


def write_particles_csv(path: str | Path, analyses: Iterable[ParticleAnalysis]) -> None:
    """One row per particle (CSV_COLUMNS), written to a temporary file and then moved onto
    ``path``, so an interrupted run leaves no partial table."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    try:
        with open(partial, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            for analysis in analyses:
                writer.writerow(analysis.row())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def summary(analyses: list[ParticleAnalysis]) -> str:
    """A one-line summary: particles, how many on a zone axis, their ratios."""
    on_axis = sum(a.zone_axis for a in analyses)
    ratios = [a.ratio for a in analyses if a.ratio is not None]
    text = f"{len(analyses)} particle(s), {on_axis} on a zone axis"
    if ratios:
        text += f", ratio {min(ratios):.3g} to {max(ratios):.3g}"
    return text
