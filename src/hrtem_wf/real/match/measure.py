"""Run the estimators over a set of real micrographs and pool them: what `hrtem-wf match`
reports (match.json) and what the suggested config blocks are drawn from."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .estimate import (
    bragg_peaks,
    dose_from_noise,
    fcc_d_spacings_A,
    fit_mtf,
    fit_thon_rings,
    noise_power_spectrum,
    noise_std,
    particle_statistics,
    pixel_size_from_bragg,
    reference_lattice_constant_A,
    white_noise_variance,
)
from .spectra import radial_spectrum

log = logging.getLogger("hrtem_wf")

#: The MTF curve is reported at these q (cycles per pixel).
MTF_REPORT_Q_PER_PX = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
#: A micrograph's Thon-ring fit is evidence of its defocus when the rings carry at least this
#: much power against the background above their second zero (ring_to_background_power; the
#: fitted ring amplitude is free in sign, and a negative one is no Thon ring). Measured: the real
#: set's micrographs with visible rings 0.10-0.90, those without -0.17..0.01, smoothed noise -1.2.
MIN_RING_POWER = 0.05


@dataclass
class Micrograph:
    name: str
    image: np.ndarray  # (H, W) float32, gray values as read
    mask: np.ndarray | None  # (H, W) uint8 particle mask, or None
    pixel_size_A: float | None  # from the file's metadata, or None


#: A micrograph whose power at low spatial frequencies (0.01-0.1 cycles per pixel) is less
#: than this times its power near Nyquist (0.35-0.5) shows nothing above white noise: the real
#: set's micrographs give 131-150 (particles, carbon, Thon rings, the camera's MTF), white or
#: Poisson noise 0.9-1.0.
STRUCTURE_POWER_RATIO = 4.0
#: A micrograph with at least this fraction of its pixels at its brightest (or darkest) value
#: is saturated (or cut off): its contrast is not the sample's.
SATURATED_FRACTION = 0.5


def unreadable(image: np.ndarray) -> str | None:
    """Why a micrograph can support no estimate (blank, saturated, nothing but noise), or None
    when it can."""
    if not np.all(np.isfinite(image)):
        return "it has NaN or infinite pixels"
    low, high = float(image.min()), float(image.max())
    if high == low:
        return f"it is blank: every pixel is {low:g}"
    for value, side in ((high, "brightest"), (low, "darkest")):
        fraction = float(np.mean(image == value))
        if fraction >= SATURATED_FRACTION:
            return (
                f"it is saturated: {fraction:.0%} of its pixels are at its {side} value {value:g}"
            )
    ratio = structure_power_ratio(image)
    if ratio < STRUCTURE_POWER_RATIO:
        return (
            f"it shows nothing above the noise: its power spectrum is flat (low / high "
            f"frequencies {ratio:.2f}, below {STRUCTURE_POWER_RATIO:g})"
        )
    return None


def structure_power_ratio(image: np.ndarray) -> float:
    """Median power at 0.01-0.1 cycles per pixel over the median at 0.35-0.5."""
    centred = np.asarray(image, np.float64) - float(np.mean(image))
    power = np.abs(np.fft.rfft2(centred)) ** 2
    q = np.hypot(np.fft.fftfreq(image.shape[0])[:, None], np.fft.rfftfreq(image.shape[1])[None])
    high = float(np.median(power[(q > 0.35) & (q <= 0.5)]))
    return float(np.median(power[(q > 0.01) & (q < 0.1)])) / max(high, 1e-300)


def read_micrographs(
    sources: list[str | Path], masks: str | Path | None = None
) -> tuple[list[Micrograph], dict[str, str], dict[str, str]]:
    """Micrograph files (or every micrograph in a folder), each with masks/<stem>.png if given;
    those left out (`unreadable`: blank, saturated, nothing but noise) and those that failed
    (the file or its mask cannot be read, or they differ in shape), each by name with why.
    Every file is read on its own: one bad file does not stop the others. ValueError when none
    is left."""
    from hrtem_wf.real.micrographs import MICROGRAPH_EXTENSIONS, read_mask_png, read_micrograph

    paths: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            paths += sorted(
                p for p in source.iterdir() if p.suffix.lower() in MICROGRAPH_EXTENSIONS
            )
        else:
            paths.append(source)
    if not paths:
        raise ValueError(f"no micrographs in {[str(s) for s in sources]}")
    result, left_out, failed = [], {}, {}
    for path in paths:
        try:
            image, pixel_size = read_micrograph(path)
        except (OSError, ValueError) as error:
            failed[str(path)] = str(error).removeprefix(f"{path}: ")
            log.error("match: %s: %s", path, failed[str(path)])
            continue
        reason = unreadable(image)
        if reason is not None:
            left_out[str(path)] = reason
            log.warning("match: %s is left out: %s", path, reason)
            continue
        mask = None
        if masks is not None:
            mask_path = Path(masks) / f"{path.stem}.png"
            try:
                mask = read_mask_png(mask_path) if mask_path.is_file() else None
            except (OSError, ValueError) as error:
                problem = str(error).removeprefix(f"{mask_path}: ")
                failed[str(path)] = f"its mask {mask_path}: {problem}"
            else:
                if mask is None:
                    failed[str(path)] = f"it has no mask {mask_path}"
                elif mask.shape != image.shape:
                    failed[str(path)] = (
                        f"its mask {mask_path} is {mask.shape[0]} x {mask.shape[1]} px, the "
                        f"micrograph {image.shape[0]} x {image.shape[1]} px"
                    )
            if str(path) in failed:
                log.error("match: %s: %s", path, failed[str(path)])
                continue
        result.append(Micrograph(path.name, image, mask, pixel_size))
    if not result:
        raise ValueError(
            "no micrograph can be matched: "
            + "; ".join(f"{path}: {why}" for path, why in {**failed, **left_out}.items())
        )
    return result, left_out, failed


def gray_scale(image: np.ndarray, counts: bool) -> str:
    """What the gray values are: `counts` (the user says so), `8-bit export, clipped` (integer
    values in 0..255 that reach 0 or 255: a contrast-stretched export, its offset unknown), or
    `unknown`."""
    if counts:
        return "counts"
    image = np.asarray(image)
    integer = np.issubdtype(image.dtype, np.integer) or bool(np.all(np.mod(image, 1) == 0))
    if (
        integer
        and image.min() >= 0
        and image.max() <= 255
        and (image.min() == 0 or image.max() == 255)
    ):
        return "8-bit export, clipped"
    return "unknown"


def _summary(values) -> dict:
    values = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if not len(values):
        return {"n": 0, "median": None, "min": None, "max": None, "q10": None, "q90": None}
    return {
        "n": int(len(values)),
        "median": float(np.median(values)),
        "min": float(values.min()),
        "max": float(values.max()),
        "q10": float(np.quantile(values, 0.1)),
        "q90": float(np.quantile(values, 0.9)),
    }


def match_micrographs(
    micrographs: list[Micrograph],
    energy_eV: float,
    pixel_size_A: float | None = None,
    material: str = "Au",
    lattice_constant_A: float | None = None,
    cs_A: float = 1.0e7,
    fit_cs: bool = False,
    counts: bool = False,
    mtf_c: tuple[float, float, float] | None = None,
    defocus_range_A: tuple[float, float] = (-30000.0, 30000.0),
    median_px: int = 3,
) -> tuple[dict, dict]:
    """(report, diagnostics): every estimate per micrograph and pooled (JSON-able), and the
    spectra and fits for the figure.

    Pixel size: the user's, else the files' (when they all state one), else from Bragg spots.
    Noise: counts=True says the gray values are electron counts (gain 1, no offset: a counting
    camera, or our own simulation), so N0 = mean and the MTF's shape is fitted; mtf_c gives the
    MTF (e.g. from the camera's data sheet), so N0 is measured; with neither, both are fitted,
    degenerate, and the dose is only an effective one. median_px: the network's median filter,
    applied before the particles' depth is measured (realism.py measures simulated images so)."""
    from hrtem_wf.real.inference import preprocess

    lattice_constant_A = lattice_constant_A or reference_lattice_constant_A(material)
    spacings = fcc_d_spacings_A(lattice_constant_A)
    peaks = {m.name: bragg_peaks(m.image) for m in micrographs}
    bragg = pixel_size_from_bragg([p.q_per_px for ps in peaks.values() for p in ps], spacings)
    bragg["material"], bragg["lattice_constant_A"] = material, lattice_constant_A
    bragg["evidence"] = {
        "n_spots": bragg["n_spots"],
        "n_micrographs_with_spots": sum(bool(ps) for ps in peaks.values()),
        "strongest_spot_over_background": max(
            (p.strength for ps in peaks.values() for p in ps), default=None
        ),
        "confirmed_by_another_reflection": bool(bragg.get("confirmed_by")),
    }
    file_sizes = {m.pixel_size_A for m in micrographs}
    if pixel_size_A is not None:
        pixel, source = float(pixel_size_A), "user"
    elif None not in file_sizes and len(file_sizes) == 1:
        pixel, source = float(file_sizes.pop()), "file metadata"
    elif bragg["pixel_size_A"] is not None:
        pixel, source = float(bragg["pixel_size_A"]), f"Bragg spots ({material} {{111}})"
    else:
        raise ValueError(
            "no pixel size: the files state none and no lattice fringes were found; "
            "give --pixel-size-A"
        )

    per_image, spectra, fits, nps = [], [], [], []
    for m in micrographs:
        spectrum = radial_spectrum(m.image, m.mask)
        fit = fit_thon_rings(spectrum, pixel, energy_eV, cs_A, fit_cs=fit_cs)
        spectra.append(spectrum)
        fits.append(fit)
        nps.append(noise_power_spectrum(spectrum, fit))
    means = [s.mean for s in spectra]
    if mtf_c is not None:
        c = tuple(float(v) for v in mtf_c)
        levels = [white_noise_variance(q, n, *c) for q, n in nps]
        noise_mode = "MTF given: N0 = median NPS / MTF^2"
    else:
        fitted = fit_mtf(nps, means if counts else None)
        c, levels = (fitted.c1, fitted.c2, fitted.c3), fitted.white_noise_variances
        noise_mode = (
            "counts: N0 = mean (Poisson), MTF shape fitted"
            if counts
            else "N0 and MTF both fitted (degenerate): effective dose only"
        )
    for m, spectrum, fit, level in zip(micrographs, spectra, fits, levels):
        dose = dose_from_noise(spectrum.mean, level, pixel)
        sigma = noise_std(m.image.shape, level, *c)
        record = {
            "name": m.name,
            "shape": list(m.image.shape),
            "defocus_A": fit.defocus_A,
            "defocus_unknown_because": _defocus_unknown(fit, defocus_range_A),
            "mirror_defocus_A": fit.mirror_defocus_A,
            "sign_determined": fit.sign_determined,
            "rss_ratio_mirror_to_best": fit.mirror_rss / fit.rss,
            "cs_A": fit.cs_A,
            "ring_to_background_power": fit.ring_to_background_power,
            "mean_gray": spectrum.mean,
            "white_noise_variance_gray2": level,
            "noise_std_gray": sigma,
            **dose,
            "bragg_spots_q_per_px": [p.q_per_px for p in peaks[m.name]],
        }
        if m.mask is not None:
            record["particles"] = particle_statistics(
                m.image, m.mask, pixel, noise_std=sigma, depth_image=preprocess(m.image, median_px)
            )
            record["gray_scale"] = gray_scale(m.image, counts)
        per_image.append(record)

    # The sign: where Cs tells it (sign_determined), a micrograph keeps its own and votes; the
    # others get their fit of the majority's sign (a session rarely crosses focus).
    # Micrographs without Thon rings have no defocus (None): they neither vote nor count.
    known = [r for r in per_image if r["defocus_unknown_because"] is None]
    if not known:
        raise ValueError(
            "no micrograph shows the Thon rings of amorphous carbon, so the defocus cannot be "
            "estimated: "
            + "; ".join(f"{r['name']}: {r['defocus_unknown_because']}" for r in per_image)
        )
    for r in per_image:
        if r["defocus_unknown_because"] is not None:
            log.warning("match: %s: defocus unknown: %s", r["name"], r["defocus_unknown_because"])
    votes = [np.sign(r["defocus_A"]) for r in known if r["sign_determined"]]
    consensus = int(np.sign(np.sum(votes))) if votes and np.sum(votes) else 0
    for r in per_image:
        same = r["sign_determined"] or consensus == 0 or np.sign(r["defocus_A"]) == consensus
        r["defocus_consensus_A"] = r["defocus_A"] if same else r["mirror_defocus_A"]
        if r["defocus_unknown_because"]:
            r["defocus_consensus_A"] = None
    defoci = [r["defocus_consensus_A"] for r in known]
    with_masks = [r["particles"] for r in per_image if "particles" in r]
    q_report = np.asarray(MTF_REPORT_Q_PER_PX)
    from hrtem_wf.images.formation import mtf

    ambiguity = _pixel_size_ambiguity(bragg)
    if ambiguity and source.startswith("Bragg"):
        log.warning("match: pixel size %.4g A: %s", pixel, ambiguity)
    report = {
        "energy_eV": float(energy_eV),
        "n_micrographs": len(micrographs),
        "pixel_size": {"value_A": pixel, "source": source, "ambiguity": ambiguity, "bragg": bragg},
        "defocus_A": {
            **_summary(defoci),
            "sign_determined_fraction": float(np.mean([r["sign_determined"] for r in known])),
            "unknown": {r["name"]: why for r in per_image if (why := r["defocus_unknown_because"])},
            "min_ring_power": MIN_RING_POWER,
            "consensus_sign": consensus,
            "sign_votes": {
                "under": int(sum(v > 0 for v in votes)),
                "over": int(sum(v < 0 for v in votes)),
            },
            "note": (
                "per micrograph its best fit where Cs determines the sign, else its fit of the "
                "consensus sign (the majority of those); 0: none determined, best fits pooled; "
                "micrographs without Thon rings (ring power < min_ring_power) are unknown"
            ),
            "convention": "abTEM: positive = underfocus (C10 = -defocus)",
        },
        "cs_A": {**_summary([r["cs_A"] for r in per_image]), "fitted": bool(fit_cs)},
        "mtf": {
            "c1": c[0],
            "c2": c[1],
            "c3": c[2],
            "q_per_px": list(q_report),
            "curve": [float(v) for v in mtf(q_report, *c)],
            "noise_mode": noise_mode,
        },
        "dose": {
            "dose_e_per_A2": _summary([r["dose_e_per_A2"] for r in per_image]),
            "expected_counts_per_px": _summary([r["expected_counts_per_px"] for r in per_image]),
            "kind": "dose" if (counts or mtf_c is not None) else "effective",
            "note": (
                "Poisson: counts = mean^2 / N0. Valid for raw frames without offset; for 8-bit "
                "exports (contrast-stretched, offset unknown) or denoised images it is only an "
                "effective dose (an effective SNR)."
            ),
        },
        "snr": {
            "ring_to_background_power": _summary(
                [r["ring_to_background_power"] for r in per_image]
            ),
            "relative_noise_std": _summary(
                [r["noise_std_gray"] / r["mean_gray"] for r in per_image]
            ),
        },
        "per_image": per_image,
    }
    if with_masks:
        exports = [r["name"] for r in per_image if r.get("gray_scale") == "8-bit export, clipped"]
        report["particles"] = {
            "diameter_A": _summary([d for p in with_masks for d in p["diameters_A"]]),
            "particles_per_nm2": _summary([p["particles_per_nm2"] for p in with_masks]),
            "contrast": _summary([c for p in with_masks for c in p["contrasts"]]),
            # The ratio needs gray values proportional to counts; the depth does not.
            "contrast_comparable": not exports,
            "contrast_note": (
                f"{len(exports)} of {len(with_masks)} micrographs are 8-bit exports with clipped "
                "extremes (an unknown offset and stretch): their contrast ratio is not the "
                "sample's; compare the depth, which any affine gray scale leaves unchanged "
                "(realism.json's particle_depth)"
                if exports
                else "gray values taken as proportional to counts"
            ),
            "depth": _summary([d for p in with_masks for d in p["depths"]]),
            "contrast_to_noise": _summary([p["contrast_to_noise_median"] for p in with_masks]),
            "area_fraction": _summary([p["particle_area_fraction"] for p in with_masks]),
        }
    diagnostics = {"spectra": spectra, "fits": fits, "nps": nps, "micrographs": micrographs}
    return report, diagnostics


def _pixel_size_ambiguity(bragg: dict) -> str | None:
    """What else the Bragg spots could mean, when no second reflection tells (None when one
    does, or when there are no spots)."""
    if bragg["pixel_size_A"] is None or bragg["confirmed_by"]:
        return None
    others = ", ".join(f"{{{n}}} {a:.4g} A" for n, a in bragg["if_main_family_were"].items())
    return (
        f"the {bragg['n_spots']} Bragg spots ({bragg['evidence']['n_micrographs_with_spots']} "
        f"micrographs) form one family, taken for {{{bragg['assumed_reflection']}}}; no other "
        f"reflection confirms it: were they {others}. Give --pixel-size-A if it is known"
    )


def _defocus_unknown(fit, defocus_range_A: tuple[float, float]) -> str | None:
    """Why a Thon-ring fit is no evidence of the defocus, or None when it is."""
    if fit.ring_to_background_power < MIN_RING_POWER:
        return (
            f"no Thon rings (ring power {fit.ring_to_background_power:.3f} of the background, "
            f"below {MIN_RING_POWER:g})"
        )
    low, high = min(defocus_range_A), max(defocus_range_A)
    if not low + 0.01 * (high - low) < fit.defocus_A < high - 0.01 * (high - low):
        return f"the fit ran to the edge of the searched range {defocus_range_A} A"
    return None


def plot_match(report: dict, diagnostics: dict, path: str | Path, max_images: int = 4) -> None:
    """Thon-ring fits of the first micrographs (spectrum, fit, background, zeros), the noise
    power spectra with the MTF fit, and the particle diameters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hrtem_wf.images.formation import mtf

    n = min(max_images, len(diagnostics["fits"]))
    fig, axes = plt.subplots(2, max(n, 2), figsize=(4.5 * max(n, 2), 8), squeeze=False)
    for ax, fit, record in zip(axes[0], diagnostics["fits"], report["per_image"]):
        ax.semilogy(fit.q_per_px, fit.power, lw=0.6, label="carbon spectrum")
        ax.semilogy(fit.q_per_px, fit.model, lw=0.8, label="fit")
        ax.semilogy(fit.q_per_px, fit.background, lw=1.2, label="background")
        for zero in fit.zeros_q_per_px:
            ax.axvline(zero, color="0.8", lw=0.4, zorder=0)
        sign = "" if fit.sign_determined else f" (or {fit.mirror_defocus_A:.0f}?)"
        sign += "" if record["defocus_unknown_because"] is None else " UNKNOWN: no rings"
        ax.set(
            title=f"{record['name']}: defocus {fit.defocus_A:.0f} A{sign}", xlabel="q [cycles/px]"
        )
        ax.legend(fontsize=7)
    ax = axes[1, 0]
    c = report["mtf"]
    for (q, nps), level in zip(
        diagnostics["nps"], [r["white_noise_variance_gray2"] for r in report["per_image"]]
    ):
        ax.semilogy(q, nps / level, lw=0.5, color="0.5")
    q = np.linspace(0, 0.5, 101)
    ax.semilogy(q, mtf(q, c["c1"], c["c2"], c["c3"]) ** 2, "r", label="MTF^2 fit")
    ax.set(xlabel="q [cycles/px]", ylabel="NPS / N0", title=f"noise power ({c['noise_mode']})")
    ax.title.set_fontsize(8)
    ax.legend()
    ax = axes[1, 1]
    diameters = [
        d for r in report["per_image"] for d in r.get("particles", {}).get("diameters_A", [])
    ]
    if diameters:
        ax.hist(diameters, bins=20)
    ax.set(xlabel="equivalent diameter [A]", title="particles (whole ones)")
    for ax in axes[1, 2:]:
        ax.axis("off")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
