"""Suggested `structures`, `simulations` and `images` blocks from a match report.

What was estimated replaces the template's values (config/recipes/conventional_au.yaml, the
one home of everything else: plasmons, focal spread, label, film, ...), as distributions around
the estimates; what was not (film thickness, focal spread, plasmons) stays the template's.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import yaml

from hrtem_wf.config import SCHEMA, detector_shape_px

TEMPLATE = SCHEMA.parents[2] / "config" / "recipes" / "conventional_au.yaml"
#: The defocus range is widened by this fraction of its width, and by at least DEFOCUS_MARGIN_A.
DEFOCUS_WIDEN = 0.1
DEFOCUS_MARGIN_A = 100.0
#: Doses are drawn log-uniformly over [estimate / DOSE_FACTOR, estimate x DOSE_FACTOR].
DOSE_FACTOR = 2.0
#: Crops are multiples of this (the network's poolings).
CROP_MULTIPLE_PX = 32


def _template(path: Path = TEMPLATE) -> dict:
    config = yaml.safe_load(Path(path).read_text())
    return {
        section: next(iter(config[section].values()))
        for section in ("structures", "simulations", "images")
    }


def _defocus_distribution(report: dict) -> dict:
    per_image = [r for r in report["per_image"] if r["defocus_consensus_A"] is not None]
    ambiguous = report["defocus_A"]["consensus_sign"] == 0

    def around(values):
        low, high = min(values), max(values)
        margin = max(DEFOCUS_WIDEN * (high - low), DEFOCUS_MARGIN_A)
        return {
            "distribution": "uniform",
            "low": round(low - margin, 1),
            "high": round(high + margin, 1),
        }

    best = around([r["defocus_consensus_A"] for r in per_image])
    if not ambiguous:
        return best
    # no micrograph tells the sign: both signs' best fits, half each
    mirror = around([r["mirror_defocus_A"] for r in per_image])
    return {"distribution": "mixture", "weights": [0.5, 0.5], "components": [best, mirror]}


def contrast_fit(report: dict, images_block: str, real_set: str | None, fit_contrast: bool) -> dict:
    """match.json's `contrast_fit`: what makes the simulated particles stand out of the carbon
    as far as the real ones (the particle depth, which an 8-bit export's offset and stretch
    leave unchanged, unlike the contrast ratio), whether the workflow fits it and why, and where
    its gaps before and after are. real_set: the one the workflow calibrates against (None
    without one); fit_contrast: the user asked (--fit-contrast). Only an effective dose is
    fitted: a measured one is the dose. `against` names the real set when the dose is fitted."""
    particles = report.get("particles") or {}
    fit = {
        "statistic": "particle_depth",
        "real_median": (particles.get("depth") or {}).get("median"),
        "fitted": None,
    }
    if report["dose"]["kind"] != "effective":
        fit["why"] = "the dose is measured (--counts or --mtf): kept"
    elif real_set is None:
        fit["why"] = (
            "no real set to fit against: give --masks with a folder of micrographs, without "
            "--simulated"
        )
    elif not fit_contrast:
        fit["why"] = (
            "not fitted: the dose is drawn around the effective estimate; --fit-contrast fits "
            "it to the particle depth (on the 20 real micrographs of docs/results.md that "
            "closed the depth gap but lowered the real F1)"
        )
    else:
        fit.update(
            fitted=f"images.{images_block}.dose_e_per_A2",
            against=real_set,
            why="--fit-contrast: the dose from the noise of exported gray values is only an "
            "effective one; the calibration rule scales it until the pilot's particle depth is "
            "the real set's",
            gaps=f"results/calibrations/{images_block}.json: gaps.before and gaps.after "
            "(particle_depth), dose_search",
        )
    return fit


def real_set_name(name: str) -> str:
    """The real set a suggested config scores on (the micrographs and their masks)."""
    return f"{name}_real"


def suggest_blocks(
    report: dict,
    name: str = "matched",
    cell_A: tuple[float, float] | None = None,
    template: Path = TEMPLATE,
    label_grow_A: float | dict | None = None,
    blur_A: dict | None = None,
    dose_calibrate: str | None = None,
) -> dict:
    """{structures: {name: ...}, simulations: {name_fp: ...}, images: {name_hrtem: ...}}.

    label_grow_A: the label width measured against real masks (realism's
    suggested_label_grow_A), or {calibrate: <real set>} (the workflow's calibration rule
    measures it against that set's masks); None keeps the outline where the label puts it
    (grow_A 0): the template's own calibration belongs to its real set. blur_A:
    {calibrate: <real set>}, or None to keep the template's blur. dose_calibrate: a real set
    whose particle depth the calibration rule fits the dose to, around the estimated one; None
    draws around the estimate."""
    base = _template(template)
    structures = copy.deepcopy(base["structures"])
    simulations = copy.deepcopy(base["simulations"])
    images = copy.deepcopy(base["images"])
    pixel_size_A = float(report["pixel_size"]["value_A"])
    cell_A = [float(c) for c in (cell_A or structures["cell_A"])]

    structures["material"] = report["pixel_size"]["bragg"]["material"]
    structures["lattice_constant_A"] = float(report["pixel_size"]["bragg"]["lattice_constant_A"])
    structures["cell_A"] = cell_A
    particles = report.get("particles")
    if particles and particles["diameter_A"]["n"]:
        low, high = particles["diameter_A"]["q10"] / 2, particles["diameter_A"]["q90"] / 2
        structures["radius_A"] = {
            "distribution": "uniform",
            "low": round(low, 2),
            "high": round(high, 2),
        }
        per_cell = particles["particles_per_nm2"]["median"] * cell_A[0] * cell_A[1] / 100.0
        counts = list(
            range(max(1, math.floor(0.5 * per_cell)), max(1, math.ceil(1.5 * per_cell)) + 1)
        )
        structures["particles"]["count"] = {"distribution": "choice", "values": counts}

    simulations["structures"] = name
    simulations["energy_eV"] = float(report["energy_eV"])
    sampling = min(float(simulations["exit_wave_sampling_A"]), pixel_size_A / 2)
    simulations["exit_wave_sampling_A"] = simulations["potential_sampling_A"] = round(sampling, 4)

    images["simulations"] = f"{name}_fp"
    if isinstance(label_grow_A, dict):
        images["label"]["grow_A"] = dict(label_grow_A)
    else:
        images["label"]["grow_A"] = 0.0 if label_grow_A is None else round(float(label_grow_A), 2)
    if blur_A is not None:
        images["blur_A"] = dict(blur_A)
    images["defocus_A"] = _defocus_distribution(report)
    cs = report["cs_A"]
    if cs["fitted"]:
        images["aberrations"]["coefficients"]["C30"] = {
            "distribution": "uniform",
            "low": round(0.8 * cs["min"], -3),
            "high": round(1.2 * cs["max"], -3),
        }
    else:
        images["aberrations"]["coefficients"]["C30"] = float(cs["median"])
    dose = report["dose"]["dose_e_per_A2"]["median"]
    images["dose_e_per_A2"] = {
        "distribution": "loguniform",
        "low": round(max(dose / DOSE_FACTOR, 1.0), 1),
        "high": round(max(dose * DOSE_FACTOR, 2.0), 1),
    }
    if dose_calibrate is not None:
        images["dose_e_per_A2"] = {"calibrate": dose_calibrate, "around": images["dose_e_per_A2"]}
    mtf = report["mtf"]
    images["detector"]["pixel_size_A"] = round(pixel_size_A, 4)
    images["detector"]["mtf"] = {k: round(float(mtf[k]), 4) for k in ("c1", "c2", "c3")}
    images["detector"]["mtf"]["c1"] = min(images["detector"]["mtf"]["c1"], 0.95)
    detector = detector_shape_px(cell_A, simulations["exit_wave_sampling_A"], pixel_size_A)
    side = min(detector)
    crop = side // CROP_MULTIPLE_PX * CROP_MULTIPLE_PX or side
    images["crop_px"] = [min(crop, c) for c in (images["crop_px"] or [crop, crop])]
    return {
        "structures": {name: structures},
        "simulations": {f"{name}_fp": simulations},
        "images": {f"{name}_hrtem": images},
    }


def suggested_config(
    blocks: dict,
    name: str = "matched",
    real_set: dict | None = None,
    template: Path = TEMPLATE,
) -> dict:
    """A whole runnable config: the template recipe with the suggested blocks in place of its
    own, its datasets and models blocks renamed to them, and the micrographs as the real set
    (a `pairs` block: micrographs, masks, pixel_size_A) when they came with masks."""
    config = yaml.safe_load(Path(template).read_text())
    (images_name,) = blocks["images"]
    dataset = copy.deepcopy(next(iter(config["datasets"].values())))
    dataset["images"] = [images_name]
    model = copy.deepcopy(next(iter(config["models"].values())))
    model["dataset"] = name
    config.update(copy.deepcopy(blocks))
    config["datasets"] = {name: dataset}
    config["models"] = {f"unet_{name}": model}
    config["real_sets"] = {} if real_set is None else {real_set_name(name): real_set}
    return config


def blocks_yaml(blocks: dict, report: dict) -> str:
    """The blocks as YAML, headed by comments that say what was estimated and how."""
    pixel = report["pixel_size"]
    defocus = report["defocus_A"]
    dose = report["dose"]
    lines = [
        "# Suggested by `hrtem-wf match` from "
        f"{report['n_micrographs']} micrographs at {report['energy_eV'] / 1000:g} kV.",
        f"# pixel size {pixel['value_A']:.4g} A ({pixel['source']});",
        *([f"#   unconfirmed: {pixel['ambiguity']}"] if pixel.get("ambiguity") else []),
        f"# defocus {defocus['min']:.0f}..{defocus['max']:.0f} A (median {defocus['median']:.0f};"
        f" sign by Cs in {100 * defocus['sign_determined_fraction']:.0f} % of micrographs,"
        f" votes {defocus['sign_votes']}; unknown, without Thon rings, in"
        f" {len(defocus['unknown'])});",
        f"# dose {dose['dose_e_per_A2']['median']:.4g} e/A^2 ({dose['kind']});"
        f" MTF ({report['mtf']['noise_mode']}).",
        "# Not estimated, kept from config/recipes/conventional_au.yaml: film thickness, focal",
        "# spread, plasmons, the label method. label.grow_A: measured against the masks when",
        "# `--simulated` images were given (realism.json), the image blur kept; else, with",
        "# masks, label.grow_A and blur_A {calibrate: <real set>}: the workflow's calibration",
        "# rule measures them on a pilot draw; else grow_A 0 and the recipe's blur.",
        "# With --fit-contrast, dose_e_per_A2 {calibrate: ..., around: ...}: the effective dose",
        "# scaled until the pilot's particles stand out of the carbon as the real ones do",
        "# (particle depth; match.json's contrast_fit says what was fitted, or why not).",
        "# config.yaml beside this file is a whole config with these blocks and the",
        "# micrographs as its real set; check it with `hrtem-wf plan`.",
    ]
    return "\n".join(lines) + "\n" + yaml.safe_dump(blocks, sort_keys=False, width=100)
