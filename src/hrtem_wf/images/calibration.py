"""The calibration stage: an images block's label outline, image blur and dose measured against a
real set's micrographs and hand-drawn masks, as the `calibration` rule measures them
(`images.<I>.label.grow_A`, `images.<I>.blur_A`: `{calibrate: <real set>}`;
`images.<I>.dose_e_per_A2`: `{calibrate: <real set>, around: <distribution>}`).

Hand-drawn masks put a particle's outline somewhere on its intensity step; our labels put it
where the label method does. The edge profile (hrtem_wf.real.match.label_width) tells how far
apart the two are, and how much softer one step is than the other, without knowing the
microscope. The pilot: the block's images of its first PILOT_STRUCTURES structures, drawn
exactly as the images rule draws them (same spec, same item seeds).

- blur_A (vibration, drift, whatever softens the particles' edges in the real micrographs): the
  pilot is drawn at each blur of BLUR_CENTRES_A (images blurred uniformly within +-BLUR_SPREAD_A
  of it) and the one whose edge profile, shifted to fit best, is closest in shape to the real
  set's wins. A network trained on edges sharper than the real ones puts its outline at their
  foot, outside the hand-drawn one.
- grow_A: at that blur, the shift of the pilot's profile (grow_A 0) that fits the real one is the
  offset, and grow_A = -offset moves the labels onto the hand-drawn outline; the pilot is redrawn
  with it and measured again, up to MAX_STEPS times, until within TOLERANCE_A.
- dose_e_per_A2 (the particles' contrast against the carbon's texture and noise): at that blur
  and outline, the pilot is drawn with `around` scaled by each factor of DOSE_FACTORS, and the
  one whose particles stand out of the carbon as far as the real set's wins (the median particle
  depth, (carbon - particle) / the carbon's standard deviation, on the image as the network sees
  it: the same for any affine gray scale, so an 8-bit export's is the sample's). The dose
  `hrtem-wf match` estimates from the noise of 8-bit exports is only an effective one; the
  depth tells how much noise the particles really stand out of.

Output: results/calibrations/<I>.json: real_set, grow_A, blur_A and dose_e_per_A2 (what the images
rule and on-the-fly training draw with; the block's own value where it asks for no calibration), the
blur search (each blur's fitted shift and residual), the grow steps (grow_A, offset measured), the
dose search (each factor's particle depth, the real set's), the realism gaps of the pilot before
(grow_A 0; where blur_A is calibrated, the least blur tried: 0-1 A; where the dose is, `around`
itself) and after, its size and provenance. Its figure (the realism figure of the pilot after
calibration) lies beside it (.png). The images stage resolves the block with it
(hrtem_wf.images.draw.calibrated_spec).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from hrtem_wf.calibration_keys import calibrations_asked
from hrtem_wf.codeversion import provenance
from hrtem_wf.images.draw import draw_images_from_spectra, exit_wave_spectra
from hrtem_wf.io import read_arrays, write_json
from hrtem_wf.sampling import derive_seed, nominal

log = logging.getLogger("hrtem_wf")

#: Structures of the block drawn for the pilot (its first ones), and images kept from them.
PILOT_STRUCTURES = 8
PILOT_IMAGES = 32
#: The calibration stops when the labels lie within this of the hand-drawn outline [A] ...
TOLERANCE_A = 0.1
#: ... or after this many redraws.
MAX_STEPS = 3
#: The image blurs tried [A] and the spread of the images' blur around each: every one is a
#: uniform distribution, so every pilot draw takes the same random numbers for all else.
BLUR_CENTRES_A = tuple(np.round(np.arange(0.5, 5.0001, 0.25), 2).tolist())
BLUR_SPREAD_A = 0.5
#: The factors tried on the block's `around` dose: quarter octaves from x1/4 to x16.
DOSE_FACTORS = tuple(2.0 ** (k / 4) for k in range(-8, 17))


def blur_distribution(centre_A: float) -> dict:
    """The images' blur_A for a calibrated blur: uniform within +-BLUR_SPREAD_A of it."""
    low = max(0.0, round(centre_A - BLUR_SPREAD_A, 4))
    return {"distribution": "uniform", "low": low, "high": round(centre_A + BLUR_SPREAD_A, 4)}


def scaled_distribution(spec, factor: float):
    """A distribution (hrtem_wf.sampling) of `factor` times its values: drawn with the same random
    numbers, each value is `factor` times the one `spec` gives."""
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return float(spec) * factor
    kind, spec = spec["distribution"], dict(spec)
    if kind == "mixture":
        spec["components"] = [scaled_distribution(c, factor) for c in spec["components"]]
        return spec
    for key in ("value", "low", "high", "mean", "sd", "min", "max", "jitter_sd"):
        if key in spec:
            spec[key] = float(spec[key]) * factor
    if "values" in spec:
        spec["values"] = [float(v) * factor for v in spec["values"]]
    return spec


def median_depth(stats: list[dict]) -> float | None:
    """The median particle depth of image_statistics (realism.py's particle_depth)."""
    depths = [d for s in stats for d in s["depths"]]
    return float(np.median(depths)) if depths else None


def run(
    spec: dict,
    seed: int,
    block: str,
    indices: list[int],
    simulations: list[str],
    real_set: str,
    real_set_spec: dict,
    output: str,
) -> dict:
    """Calibrate images block `block` (config `spec`, global seed `seed`) against the real set
    `real_set` (its real_sets block `real_set_spec`) on the simulation stores `simulations` of
    items `indices`; writes `output` (JSON) and its figure beside it. Returns what was written."""
    from hrtem_wf.real.match import image_statistics, plot_realism, realism_report
    from hrtem_wf.real.match.label_width import profile_fit, profile_of_bins
    from hrtem_wf.real.sets import read_real_set

    if len(indices) != len(simulations) or not simulations:
        raise ValueError(f"{len(indices)} indices for {len(simulations)} simulation stores")
    asked = calibrations_asked(spec)
    grow_asked, blur_asked = "label.grow_A" in asked, "blur_A" in asked
    dose_asked = "dose_e_per_A2" in asked
    if not asked:
        raise ValueError(f"images block {block} asks for no calibration")
    median_px = int(real_set_spec["median_filter_px"])
    real = [
        image_statistics(r.image, r.mask, r.pixel_size_A, median_px)
        for r in read_real_set(real_set_spec)
    ]
    real_profile = profile_of_bins(s["edge_bins"] for s in real)
    pixel_size_A = nominal(spec["detector"]["pixel_size_A"])
    # One forward FFT per phonon and structure, shared by every redraw.
    pilot = []
    for index, path in zip(indices, simulations, strict=True):
        waves, attrs = read_arrays(
            path, {"full": np.complex64, "particle": np.complex64}, items_attr="frozen_phonons"
        )
        spectra = exit_wave_spectra(waves["full"], waves["particle"], spec)
        pilot.append((index, spectra, attrs))

    def draw(grow_A: float, blur_A, dose) -> list[dict]:
        block_spec = {
            **spec,
            "blur_A": blur_A,
            "dose_e_per_A2": dose,
            "label": {**spec["label"], "grow_A": grow_A},
        }
        stats = []
        for index, (full, particle), attrs in pilot:
            images, masks, _ = draw_images_from_spectra(
                full,
                particle,
                tuple(attrs["sampling_A"]),
                attrs["energy_eV"],
                block_spec,
                np.random.default_rng(derive_seed(seed, block, index)),
                attrs["structure"]["info"].get("material"),
            )
            stats += [
                image_statistics(i, m, pixel_size_A, median_px=0)
                for i, m in zip(images, masks, strict=True)
            ]
        return stats[:PILOT_IMAGES]

    def fit(stats: list[dict]) -> tuple[float, float]:
        return profile_fit(profile_of_bins(s["edge_bins"] for s in stats), real_profile)

    start_grow_A = 0.0 if grow_asked else float(spec["label"]["grow_A"])
    start_dose = spec["dose_e_per_A2"]["around"] if dose_asked else spec["dose_e_per_A2"]
    # The blur: the one whose edge profile, best shifted, has the real profile's shape.
    blur_search, blur_A = None, spec["blur_A"]
    if blur_asked:
        # Kept: the least blur's draw (the "before") and the best one's so far.
        blur_search, before, best, best_stats = [], None, None, None
        for centre_A in BLUR_CENTRES_A:
            stats = draw(start_grow_A, blur_distribution(centre_A), start_dose)
            shift_A, residual = fit(stats)
            step = {"blur_A": centre_A, "label_offset_A": shift_A, "residual": residual}
            blur_search.append(step)
            log.info("calibration %s: blur %.2f A, edge residual %.4f", block, centre_A, residual)
            before = stats if before is None else before
            if best is None or residual < best["residual"]:
                best, best_stats = step, stats
        blur_A = blur_distribution(best["blur_A"])
        drawn = {start_grow_A: best_stats}
    else:
        before = draw(start_grow_A, blur_A, start_dose)
        drawn = {start_grow_A: before}
    # The outline at that blur: grow_A = -offset, redrawn until within TOLERANCE_A.
    grow_A, steps = start_grow_A, []
    while True:
        measured = fit(drawn[grow_A])[0]
        steps.append({"grow_A": grow_A, "label_offset_A": measured})
        log.info("calibration %s: grow_A %.2f A, labels %.2f A outside", block, grow_A, measured)
        if not grow_asked or abs(measured) <= TOLERANCE_A or len(steps) > MAX_STEPS:
            break
        grow_A = round(grow_A - measured, 2)
        drawn[grow_A] = draw(grow_A, blur_A, start_dose)
    best = min(steps, key=lambda step: abs(step["label_offset_A"]))
    grow_A, after = best["grow_A"], drawn[best["grow_A"]]
    # The dose at that blur and outline: the factor on `around` whose particles stand out of the
    # carbon as far as the real set's.
    dose, dose_search, real_depth = start_dose, None, median_depth(real)
    if dose_asked:
        if real_depth is None:
            raise ValueError(
                f"real set {real_set}: no particle with a carbon ring around it in its masks, so "
                "no particle depth to calibrate the dose against"
            )
        dose_search, closest = [], None
        for factor in DOSE_FACTORS:
            stats = draw(grow_A, blur_A, scaled_distribution(start_dose, factor))
            step = {"factor": factor, "particle_depth": median_depth(stats)}
            dose_search.append(step)
            log.info(
                "calibration %s: dose x %.3g, particle depth %s (real %.3f)",
                block,
                factor,
                step["particle_depth"],
                real_depth,
            )
            if step["particle_depth"] is None:
                continue
            miss = abs(step["particle_depth"] - real_depth)
            if closest is None or miss < abs(closest["particle_depth"] - real_depth):
                closest, after = step, stats
        if closest is None:
            raise ValueError(f"images block {block}: no pilot particle has a measurable depth")
        dose = scaled_distribution(start_dose, closest["factor"])

    def gaps(stats):
        report = realism_report(stats, real)
        return {k: v["gap"] for k, v in report["statistics"].items()}, report

    gaps_before, _ = gaps(before)
    gaps_after, report_after = gaps(after)
    plot_realism(report_after, Path(output).with_suffix(".png"))
    result = {
        "images": block,
        "real_set": real_set,
        "calibrated": [
            k
            for k, on in (
                ("grow_A", grow_asked),
                ("blur_A", blur_asked),
                ("dose_e_per_A2", dose_asked),
            )
            if on
        ],
        "grow_A": grow_A,
        "blur_A": blur_A,
        "dose_e_per_A2": dose,
        "label_offset_A": {"before": fit(before)[0], "after": fit(after)[0]},
        "steps": steps,
        "blur_search": blur_search,
        "blur_spread_A": BLUR_SPREAD_A,
        "dose_search": dose_search,
        "particle_depth_real": real_depth,
        "tolerance_A": TOLERANCE_A,
        "gaps": {"before": gaps_before, "after": gaps_after},
        "pilot": {
            "structures": [int(i) for i in indices],
            "images": len(after),
            "real_micrographs": len(real),
        },
        "provenance": provenance(f"{__name__}:run"),
    }
    write_json(output, result)
    log.info(
        "calibration %s against %s: label.grow_A %.2f A, blur_A %s, dose_e_per_A2 %s (labels "
        "%.2f A outside the masks before, %.2f A after; edge-profile gap %.3f -> %.3f; "
        "particle-depth gap %s -> %s)",
        block,
        real_set,
        grow_A,
        blur_A,
        dose,
        result["label_offset_A"]["before"],
        result["label_offset_A"]["after"],
        gaps_before["edge_profile"],
        gaps_after["edge_profile"],
        gaps_before["particle_depth"],
        gaps_after["particle_depth"],
    )
    return result
