"""How far simulated micrographs are from real ones: the same statistics of both, one gap each.

Statistics (per micrograph, pooled per set):
  psd_shape            radial power spectrum of the carbon (particles masked), divided by its mean
                       over q 0.03-0.45 cycles/px, on k [1/A] (cycles/px when a pixel size is
                       missing); gap: RMS over the common k range of log10(sim / real) of the
                       two sets' median spectra [decades]
  nps_slope            d log P / d log q of the carbon's spectrum over q 0.25-0.5 cycles/px (the
                       detector's roll-off: MTF, median filter); gap: |median sim - median real|
  contrast             per particle (carbon - particle) / carbon (estimate.particle_statistics);
                       gap: |median sim - median real| / |median real|. Gray values must be
                       proportional to counts: an offset (8-bit exports) biases it
  particle_depth       per particle (carbon - particle) / the carbon's standard deviation
                       around it, on the image as the network sees it (median filter); the
                       same for any affine gray scale; gap as the contrast's
  particle_diameter_A  equivalent diameters of whole particles (fragments narrower than
                       estimate.MIN_PARTICLE_DIAMETER_A, 10 A, left out and counted in the
                       report's `masks`); gap: 1-D Wasserstein distance of the two sets'
                       diameters / median real diameter
  intensity            pixel values after the network's preprocessing (real: 3 x 3 median, then
                       min-max to [0, 1]; simulated: min-max, their median filter is the
                       detector's); gap: 1-D Wasserstein distance of the pooled values
  edge_profile         the intensity across the masks' outlines, carbon 0 and particle core 1
                       (label_width.py; needs masks and pixel sizes on both sides); gap: RMS
                       difference of the two median profiles over +-3 A
A gap of 0 means the statistic matches; each is dimensionless. With edge profiles the report
also gives `label_offset_A`: how far the simulated labels' outline lies outside the real masks'
(`images.<I>.label.grow_A` = -offset moves it there).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.stats

from hrtem_wf.sampling import nominal

from .estimate import MIN_PARTICLE_DIAMETER_A, particle_statistics
from .label_width import edge_bins, label_offset_A, profile_gap, profile_of_bins
from .spectra import radial_spectrum

PSD_NORMALIZATION_Q_PER_PX = (0.03, 0.45)
NPS_SLOPE_Q_PER_PX = (0.25, 0.5)
#: Pixels kept per micrograph for the intensity histogram (every n-th, for speed).
INTENSITY_STRIDE_PX = 4


def image_statistics(
    image: np.ndarray, mask: np.ndarray | None, pixel_size_A: float | None, median_px: int
) -> dict:
    """The realism statistics of one micrograph (see the module docstring)."""
    from hrtem_wf.real.inference import preprocess

    spectrum = radial_spectrum(image, mask)
    q, power = spectrum.q_per_px, spectrum.power
    band = (q >= PSD_NORMALIZATION_Q_PER_PX[0]) & (q <= PSD_NORMALIZATION_Q_PER_PX[1])
    high = (q >= NPS_SLOPE_Q_PER_PX[0]) & (q <= NPS_SLOPE_Q_PER_PX[1])
    slope = float(np.polyfit(np.log(q[high]), np.log(power[high]), 1)[0])
    seen = preprocess(image, median_px)  # what the network sees
    stats = {
        "q_per_px": q[band],
        "psd_shape": power[band] / power[band].mean(),
        "pixel_size_A": pixel_size_A,
        "nps_slope": slope,
        "intensity": seen[::INTENSITY_STRIDE_PX, ::INTENSITY_STRIDE_PX].ravel(),
        "contrasts": [],
        "depths": [],
        "diameters_A": [],
        "n_particles": 0,
        "n_fragments": 0,
        "edge_bins": None,
    }
    if mask is not None and np.any(mask) and pixel_size_A:
        stats["edge_bins"] = edge_bins(image, mask, pixel_size_A)
    if mask is not None and np.any(mask):
        particles = particle_statistics(image, mask, pixel_size_A or 1.0, depth_image=seen)
        stats["contrasts"], stats["depths"] = particles["contrasts"], particles["depths"]
        stats["diameters_A"] = particles["diameters_A"] if pixel_size_A else []
        stats["n_particles"], stats["n_fragments"] = (
            particles["n_particles"],
            particles["n_fragments"],
        )
    return stats


def _median_psd(stats: list[dict], k_grid: np.ndarray, physical: bool) -> np.ndarray:
    curves = []
    for s in stats:
        x = s["q_per_px"] / s["pixel_size_A"] if physical else s["q_per_px"]
        curves.append(np.interp(k_grid, x, s["psd_shape"], left=np.nan, right=np.nan))
    return np.nanmedian(np.asarray(curves), axis=0)


def realism_report(sim: list[dict], real: list[dict]) -> dict:
    """Gaps between two sets of image_statistics (simulated, real), JSON-able, plus the curves."""
    physical = all(s["pixel_size_A"] for s in sim + real)
    scales = [s["pixel_size_A"] if physical else 1.0 for s in sim + real]
    span = [(s["q_per_px"][0] / a, s["q_per_px"][-1] / a) for s, a in zip(sim + real, scales)]
    k_grid = np.linspace(max(a for a, _ in span), min(b for _, b in span), 200)
    psd_sim, psd_real = _median_psd(sim, k_grid, physical), _median_psd(real, k_grid, physical)
    both = np.isfinite(psd_sim) & np.isfinite(psd_real) & (psd_sim > 0) & (psd_real > 0)
    psd_gap = float(np.sqrt(np.mean(np.log10(psd_sim[both] / psd_real[both]) ** 2)))

    def pooled(key):
        return [v for s in sim for v in s[key]], [v for s in real for v in s[key]]

    slopes = [s["nps_slope"] for s in sim], [s["nps_slope"] for s in real]
    contrasts, depths, diameters = pooled("contrasts"), pooled("depths"), pooled("diameters_A")
    intensity = (
        np.concatenate([s["intensity"] for s in sim]),
        np.concatenate([s["intensity"] for s in real]),
    )

    def median(values):
        return float(np.median(values)) if len(values) else None

    def entry(sim_value, real_value, gap, definition):
        finite = gap is not None and np.isfinite(gap)
        return {
            "sim": sim_value,
            "real": real_value,
            "gap": float(gap) if finite else None,
            "definition": definition,
        }

    c_sim, c_real = median(contrasts[0]), median(contrasts[1])
    depth_sim, depth_real = median(depths[0]), median(depths[1])
    d_sim, d_real = median(diameters[0]), median(diameters[1])
    statistics = {
        "psd_shape": entry(
            None, None, psd_gap, "RMS of log10(sim / real) of the median normalized carbon spectra"
        ),
        "nps_slope": entry(
            median(slopes[0]),
            median(slopes[1]),
            abs(median(slopes[0]) - median(slopes[1])),
            f"|difference of median d log P / d log q| over q {NPS_SLOPE_Q_PER_PX} cycles/px",
        ),
        "contrast": entry(
            c_sim,
            c_real,
            abs(c_sim - c_real) / abs(c_real) if c_sim is not None and c_real else None,
            "|difference of median particle contrasts| / |real median| (biased by any gray "
            "offset: an 8-bit export's stretch changes it, see particle_depth)",
        ),
        "particle_depth": entry(
            depth_sim,
            depth_real,
            abs(depth_sim - depth_real) / abs(depth_real)
            if depth_sim is not None and depth_real
            else None,
            "|difference of median particle depths| / |real median|; depth: (carbon - "
            "particle) / the carbon's standard deviation around it, after the network's "
            "preprocessing (the same for any affine gray scale)",
        ),
        "particle_diameter_A": entry(
            d_sim,
            d_real,
            scipy.stats.wasserstein_distance(*diameters) / d_real
            if d_sim is not None and d_real
            else None,
            "1-D Wasserstein distance of the diameters / real median diameter",
        ),
        "intensity": entry(
            float(np.median(intensity[0])),
            float(np.median(intensity[1])),
            scipy.stats.wasserstein_distance(*intensity),
            "1-D Wasserstein distance of min-max normalized pixel values",
        ),
    }
    edges = None
    if any(s["edge_bins"] is not None for s in sim) and any(
        s["edge_bins"] is not None for s in real
    ):
        edges = (
            profile_of_bins(s["edge_bins"] for s in sim),
            profile_of_bins(s["edge_bins"] for s in real),
        )
    statistics["edge_profile"] = entry(
        None,
        None,
        None if edges is None else profile_gap(*edges),
        "RMS difference of the median edge profiles (carbon 0, core 1) over +-3 A",
    )
    offset_A = None if edges is None else label_offset_A(*edges)

    def masks(stats):  # the labels checked: particles, and fragments left out of the statistics
        return {
            "particles": sum(s["n_particles"] for s in stats),
            "fragments": sum(s["n_fragments"] for s in stats),
            "images_with_fragments": sum(s["n_fragments"] > 0 for s in stats),
        }

    return {
        "label_offset_A": offset_A,
        "masks": {
            "min_particle_diameter_A": MIN_PARTICLE_DIAMETER_A,
            "sim": masks(sim),
            "real": masks(real),
        },
        "suggested_label_grow_A": None if offset_A is None else -offset_A,
        "n_simulated": len(sim),
        "n_real": len(real),
        "frequency_axis": "k [1/A]" if physical else "q [cycles/px]",
        "statistics": statistics,
        "curves": {
            "k": k_grid.tolist(),
            "psd_shape_sim": psd_sim.tolist(),
            "psd_shape_real": psd_real.tolist(),
            "edge_distance_A": None if edges is None else edges[1].distances_A.tolist(),
            "edge_profile_sim": None if edges is None else _finite(edges[0].levels),
            "edge_profile_real": None if edges is None else _finite(edges[1].levels),
        },
        "_pooled": {
            "contrasts": contrasts,
            "diameters": diameters,
            "intensity": intensity,
            "slopes": slopes,
        },
    }


def _finite(values: np.ndarray) -> list[float | None]:
    """JSON-able: nan (a bin without pixels) as null."""
    return [float(v) if np.isfinite(v) else None for v in values]


def read_simulated(
    path: str | Path, max_images: int = 32, pixel_size_A: float | None = None
) -> tuple[np.ndarray, np.ndarray, float | None]:
    """(images, masks, pixel size [A]) of an images store or a dataset (Zarr: `images`,
    `masks`), the first max_images. The pixel size: given, else the images store's
    detector config, else the dataset's Parquet table beside it (<name>.parquet)."""
    from hrtem_wf.io import open_arrays

    arrays, attrs = open_arrays(path, {"images": np.float32, "masks": np.uint8})
    count = min(len(arrays["images"]), int(max_images))
    items = list(range(count))
    images, masks = arrays["images"].read(items), arrays["masks"].read(items)
    if pixel_size_A is None:
        detector = (attrs.get("config") or {}).get("detector") or {}
        if detector.get("pixel_size_A") is not None:
            pixel_size_A = nominal(detector["pixel_size_A"])
    table = Path(path).with_suffix(".parquet")
    if pixel_size_A is None and table.is_file():
        import pandas as pd

        sizes = pd.read_parquet(table, columns=["image.pixel_size_A"])["image.pixel_size_A"]
        pixel_size_A = float(sizes.iloc[:count].median())
    return images, masks, None if pixel_size_A is None else float(pixel_size_A)


def plot_realism(report: dict, path: str | Path) -> None:
    """A 2 x 3 figure: spectra, detector roll-off, intensities, diameters, contrasts, gaps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pooled, curves, stats = report["_pooled"], report["curves"], report["statistics"]
    fig, axes = plt.subplots(2, 4, figsize=(20, 8.5))
    ax = axes[0, 0]
    ax.semilogy(curves["k"], curves["psd_shape_real"], label="real (median)")
    ax.semilogy(curves["k"], curves["psd_shape_sim"], label="simulated (median)")
    ax.set(
        xlabel=report["frequency_axis"], ylabel="carbon power / mean", title="power spectrum shape"
    )
    ax.legend()
    ax = axes[0, 1]
    ax.hist([pooled["slopes"][1], pooled["slopes"][0]], bins=15, label=["real", "simulated"])
    ax.set(xlabel="d log P / d log q, q 0.25-0.5 cycles/px", title="detector roll-off (NPS slope)")
    ax.legend()
    ax = axes[0, 2]
    bins = np.linspace(0, 1, 51)
    ax.hist(pooled["intensity"][1], bins, density=True, histtype="step", label="real")
    ax.hist(pooled["intensity"][0], bins, density=True, histtype="step", label="simulated")
    ax.set(xlabel="normalized intensity", title="intensity histogram")
    ax.legend()
    for ax, key, xlabel, title in (
        (axes[1, 0], "diameters", "equivalent diameter [A]", "particle size"),
        (axes[1, 1], "contrasts", "(carbon - particle) / carbon", "particle contrast"),
    ):
        simulated, real = pooled[key]
        if simulated or real:
            ax.hist([real, simulated], bins=15, label=["real", "simulated"])
            ax.legend()
        ax.set(xlabel=xlabel, title=title)
    ax = axes[0, 3]
    if curves["edge_distance_A"] is not None:
        for key, label in (("edge_profile_real", "real"), ("edge_profile_sim", "simulated")):
            levels = np.array([np.nan if v is None else v for v in curves[key]], dtype=float)
            good = np.isfinite(levels)
            ax.plot(np.asarray(curves["edge_distance_A"])[good], levels[good], label=label)
        ax.axvline(0.0, color="grey", lw=0.5)
        ax.legend()
        offset = report["label_offset_A"]
        ax.set_title(f"across the outline (labels {offset:+.2f} A out)")
    else:
        ax.set_title("across the outline (needs masks and pixel sizes)")
    ax.set(xlabel="distance from the outline [A] (> 0 inside)", ylabel="carbon 0, core 1")
    axes[1, 3].axis("off")
    ax = axes[1, 2]
    names = [n for n, s in stats.items() if s["gap"] is not None]
    ax.barh(names, [stats[n]["gap"] for n in names])
    ax.set(xlabel="gap (0 = match; see realism.json for definitions)", title="gaps")
    fig.suptitle(f"simulated ({report['n_simulated']}) vs real ({report['n_real']}) micrographs")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_realism(sim: list[dict], real: list[dict], json_path: str | Path, **extra) -> dict:
    """realism_report of two sets of image_statistics, its figure beside json_path (.png) and
    the JSON (without the pooled values, plus `extra` keys); returns what was written."""
    from hrtem_wf.io import write_json

    report = realism_report(sim, real)
    plot_realism(report, Path(json_path).with_suffix(".png"))
    report.pop("_pooled")
    report.update(extra)
    write_json(json_path, report)
    return report
