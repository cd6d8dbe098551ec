"""Particle sizes and counts from masks: the size distribution a nanoparticle paper shows.

Each 8-connected part of a mask (the network's prediction or a hand mask) at least
`MIN_PARTICLE_DIAMETER_A` across is a particle (the smaller ones are fragments, counted apart;
the realism statistics, hrtem_wf.real.match.estimate, use the same minimum). Per particle
(`measure_particles`): its area, equivalent diameter 2 sqrt(area / pi), centroid, aspect ratio
(the square root of the ratio of the principal second moments of its pixels, each pixel a unit
square: 1 for a disk, 2 for a 2:1 ellipse) and whether it touches the border. Particles cut by
the border are smaller than they are: `size_summary` leaves them out of the size statistics by
default but counts them. Lengths in nm (the unit of particle papers), areas in nm^2.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.ndimage

#: A connected part of a mask narrower than this (equivalent diameter) is a fragment of a label
#: (a speck of a smoothed threshold, a stray stroke of a hand mask), not a particle: the
#: particle statistics leave it out and count it as `n_fragments`. The study's smallest Au
#: particles are 2 nm across; the demo's simulated labels held 120 specks of about 2 A.
MIN_PARTICLE_DIAMETER_A = 10.0
#: The per-particle table's columns (`write_particles_csv`).
CSV_COLUMNS = (
    "micrograph",
    "label",
    "diameter_nm",
    "area_nm2",
    "area_px",
    "centroid_y_px",
    "centroid_x_px",
    "centroid_y_nm",
    "centroid_x_nm",
    "aspect_ratio",
    "touches_border",
    "zone_axis",
)
PERCENTILES = (10, 25, 75, 90)


@dataclass(frozen=True)
class ParticleSize:
    label: int  # scipy.ndimage.label of the mask, 8-connected (as particles.analyze_particles)
    area_px: int
    area_nm2: float
    diameter_nm: float  # equivalent: 2 sqrt(area / pi)
    centroid_y_px: float
    centroid_x_px: float
    pixel_size_A: float
    aspect_ratio: float  # >= 1
    touches_border: bool

    def row(self, micrograph: str, zone_axis: bool | None = None) -> dict:
        nm = self.pixel_size_A / 10.0
        return {
            "micrograph": micrograph,
            "label": self.label,
            "diameter_nm": f"{self.diameter_nm:.4f}",
            "area_nm2": f"{self.area_nm2:.4f}",
            "area_px": self.area_px,
            "centroid_y_px": f"{self.centroid_y_px:.2f}",
            "centroid_x_px": f"{self.centroid_x_px:.2f}",
            "centroid_y_nm": f"{self.centroid_y_px * nm:.3f}",
            "centroid_x_nm": f"{self.centroid_x_px * nm:.3f}",
            "aspect_ratio": f"{self.aspect_ratio:.3f}",
            "touches_border": self.touches_border,
            "zone_axis": "" if zone_axis is None else zone_axis,
        }


def measure_particles(
    mask: np.ndarray, pixel_size_A: float, min_diameter_A: float = MIN_PARTICLE_DIAMETER_A
) -> tuple[list[ParticleSize], int]:
    """(particles, number of fragments) of a 2-D mask at `pixel_size_A`: every 8-connected part
    at least `min_diameter_A` across is a particle, in label order; the smaller ones are
    counted as fragments."""
    mask = np.asarray(mask) != 0
    if mask.ndim != 2:
        raise ValueError(f"a mask of shape {mask.shape} is not a 2-D image")
    if not pixel_size_A or pixel_size_A <= 0:
        raise ValueError(f"pixel size {pixel_size_A} A: particle sizes need a positive one")
    labels, _ = scipy.ndimage.label(mask, structure=np.ones((3, 3), bool))
    area_nm2_per_px = (pixel_size_A / 10.0) ** 2
    particles, fragments = [], 0
    for label, box in enumerate(scipy.ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        rows, cols = np.nonzero(labels[box] == label)
        area_px = len(rows)
        diameter_nm = 2.0 * math.sqrt(area_px * area_nm2_per_px / math.pi)
        if diameter_nm * 10.0 < min_diameter_A:
            fragments += 1
            continue
        rows, cols = rows + box[0].start, cols + box[1].start
        # second moments of the pixels (each a unit square: + 1/12 on the diagonal)
        covariance = np.cov(np.stack([rows, cols]).astype(np.float64)) if area_px > 1 else 0
        covariance = np.atleast_2d(covariance) * (area_px - 1) / area_px + np.eye(2) / 12.0
        low, high = np.linalg.eigvalsh(covariance)
        touches = (
            box[0].start == 0
            or box[1].start == 0
            or box[0].stop == mask.shape[0]
            or box[1].stop == mask.shape[1]
        )
        particles.append(
            ParticleSize(
                label=label,
                area_px=int(area_px),
                area_nm2=area_px * area_nm2_per_px,
                diameter_nm=diameter_nm,
                centroid_y_px=float(rows.mean()),
                centroid_x_px=float(cols.mean()),
                pixel_size_A=float(pixel_size_A),
                aspect_ratio=float(math.sqrt(high / low)),
                touches_border=bool(touches),
            )
        )
    return particles, fragments


def size_summary(
    particles: Iterable[ParticleSize], fragments: int = 0, include_border: bool = False
) -> dict:
    """Count and diameter statistics [nm] of particles (those touching the border counted, but
    left out of the sizes unless `include_border`), with a lognormal fitted to the diameters
    (scipy.stats.lognorm, location 0: `lognormal_median_nm` = exp(mu), `lognormal_sigma`), and
    the number of `fragments` left out (measure_particles). JSON-able."""
    import scipy.stats

    particles = list(particles)
    border = sum(p.touches_border for p in particles)
    sized = [p.diameter_nm for p in particles if include_border or not p.touches_border]
    summary: dict = {
        "count": len(particles),
        "fragments": int(fragments),
        "touching_border": border,
        "sized": len(sized),
        "border_included_in_sizes": bool(include_border),
    }
    values = np.asarray(sized, dtype=np.float64)
    have = len(values) > 0
    summary["mean_diameter_nm"] = float(values.mean()) if have else None
    summary["sd_diameter_nm"] = float(values.std(ddof=1)) if len(values) > 1 else None
    summary["median_diameter_nm"] = float(np.median(values)) if have else None
    for q in PERCENTILES:
        summary[f"p{q}_diameter_nm"] = float(np.percentile(values, q)) if have else None
    areas = [p.area_nm2 for p in particles if include_border or not p.touches_border]
    summary["mean_area_nm2"] = float(np.mean(areas)) if areas else None
    if len(values) > 1 and np.ptp(values) > 0:
        sigma, _, scale = scipy.stats.lognorm.fit(values, floc=0)
        summary["lognormal_median_nm"], summary["lognormal_sigma"] = float(scale), float(sigma)
    else:
        summary["lognormal_median_nm"] = summary["lognormal_sigma"] = None
    return summary


def relative_errors(network: dict, hand: dict) -> dict:
    """The network's count and mean diameter against the hand masks' (size_summary each), as
    (network - hand) / hand; None where the hand masks have none."""

    def error(key):
        if network[key] is None or not hand[key]:
            return None
        return (network[key] - hand[key]) / hand[key]

    return {"count_error": error("count"), "mean_diameter_error": error("mean_diameter_nm")}


def write_particles_csv(path: str | Path, rows: Iterable[dict]) -> None:
    """One row per particle (CSV_COLUMNS; `ParticleSize.row`)."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def plot_sizes(
    diameters_nm: dict[str, list[float]],
    counts: dict[str, dict[str, int]],
    path: str | Path,
    example: tuple[str, np.ndarray, np.ndarray] | None = None,
    summaries: dict[str, dict] | None = None,
) -> None:
    """The size histogram of each set (`diameters_nm`: label -> diameters, e.g. the network's
    and the hand masks') with its fitted lognormal (`summaries`: label -> size_summary), the
    particle count per micrograph (`counts`: label -> {micrograph: count}) and, with `example`
    (name, image, mask), an overlay of the mask's outline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import scipy.stats

    panels = 3 if example is not None else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4))
    ax = axes[0]
    every = [d for values in diameters_nm.values() for d in values]
    bins = np.linspace(0, max(every) * 1.1, 25) if every else 10
    for name, values in diameters_nm.items():
        if not values:
            continue
        ax.hist(values, bins=bins, density=True, alpha=0.45, label=f"{name} (n={len(values)})")
        fit = (summaries or {}).get(name) or {}
        if fit.get("lognormal_median_nm"):
            x = np.linspace(max(bins[1] / 10, 1e-3), bins[-1], 200)
            pdf = scipy.stats.lognorm.pdf(
                x, fit["lognormal_sigma"], scale=fit["lognormal_median_nm"]
            )
            ax.plot(x, pdf, lw=1.5, label=f"lognormal, median {fit['lognormal_median_nm']:.2f} nm")
    ax.set(xlabel="equivalent diameter [nm]", ylabel="density", title="particle sizes")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    ax = axes[1]
    names = list(dict.fromkeys(n for series in counts.values() for n in series))
    width = 0.8 / max(len(counts), 1)
    for index, (label, series) in enumerate(counts.items()):
        x = np.arange(len(names)) + index * width
        ax.bar(x, [series.get(n, 0) for n in names], width, label=label)
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=90, fontsize=6)
    if len(counts) > 1:
        ax.legend(fontsize=7)
    ax.set(ylabel="particles", title="particles per micrograph")
    if example is not None:
        name, image, mask = example
        ax = axes[2]
        ax.imshow(image, cmap="gray")
        ax.contour(np.asarray(mask) != 0, levels=[0.5], colors="tab:orange", linewidths=0.8)
        ax.set(title=name)
        ax.axis("off")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
