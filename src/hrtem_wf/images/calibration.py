"""The calibration stage: an images block's label outline measured against a real set's masks,
as the `calibration` rule measures it (`images.<I>.label.grow_A: {calibrate: <real set>}`).

Hand-drawn masks put a particle's outline somewhere on its intensity step; our labels put it
where the label method does. The edge profile (hrtem_wf.real.match.label_width) tells how far
apart the two are without knowing the microscope. The pilot: the block's images of its first
PILOT_STRUCTURES structures, drawn exactly as the images rule draws them (same spec, same item
seeds) but with grow_A 0; their edge profile against the real set's gives the offset, and
grow_A = -offset moves the labels onto the hand-drawn outline. The pilot is redrawn with that
grow_A and measured again, up to MAX_STEPS times, until the offset is within TOLERANCE_A.

Output: results/calibrations/<I>.json: real_set, grow_A (what the images rule and on-the-fly
training use), the steps (grow_A, offset measured), the realism gaps of the pilot before
(grow_A 0) and after, its size and provenance. Its figure (the realism figure of the pilot after
calibration) lies beside it (.png).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

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
    from hrtem_wf.real.match.label_width import label_offset_A, profile_of_bins
    from hrtem_wf.real.sets import read_real_set

    if len(indices) != len(simulations) or not simulations:
        raise ValueError(f"{len(indices)} indices for {len(simulations)} simulation stores")
    median_px = int(real_set_spec["median_filter_px"])
    real = [
        image_statistics(r.image, r.mask, r.pixel_size_A, median_px)
        for r in read_real_set(real_set_spec)
    ]
    pixel_size_A = nominal(spec["detector"]["pixel_size_A"])
    # One forward FFT per phonon and structure, shared by every redraw.
    pilot = []
    for index, path in zip(indices, simulations, strict=True):
        waves, attrs = read_arrays(
            path, {"full": np.complex64, "particle": np.complex64}, items_attr="frozen_phonons"
        )
        spectra = exit_wave_spectra(waves["full"], waves["particle"], spec)
        pilot.append((index, spectra, attrs))

    def draw(grow_A: float) -> list[dict]:
        block_spec = {**spec, "label": {**spec["label"], "grow_A": float(grow_A)}}
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

    def offset(stats: list[dict]) -> float:
        return label_offset_A(
            profile_of_bins(s["edge_bins"] for s in stats),
            profile_of_bins(s["edge_bins"] for s in real),
        )

    # Each step's draw, by its grow_A: the best step's is kept, not drawn again.
    grow_A, steps, drawn = 0.0, [], {0.0: draw(0.0)}
    while True:
        measured = offset(drawn[grow_A])
        steps.append({"grow_A": grow_A, "label_offset_A": measured})
        log.info("calibration %s: grow_A %.2f A, labels %.2f A outside", block, grow_A, measured)
        if abs(measured) <= TOLERANCE_A or len(steps) > MAX_STEPS:
            break
        grow_A = round(grow_A - measured, 2)
        drawn[grow_A] = draw(grow_A)
    best = min(steps, key=lambda step: abs(step["label_offset_A"]))
    grow_A, before, after = best["grow_A"], drawn[0.0], drawn[best["grow_A"]]

    def gaps(stats):
        report = realism_report(stats, real)
        return {k: v["gap"] for k, v in report["statistics"].items()}, report

    gaps_before, _ = gaps(before)
    gaps_after, report_after = gaps(after)
    plot_realism(report_after, Path(output).with_suffix(".png"))
    result = {
        "images": block,
        "real_set": real_set,
        "grow_A": grow_A,
        "label_offset_A": {"before": steps[0]["label_offset_A"], "after": best["label_offset_A"]},
        "steps": steps,
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
        "calibration %s against %s: label.grow_A %.2f A (labels %.2f A outside the masks "
        "before, %.2f A after; edge-profile gap %.3f -> %.3f)",
        block,
        real_set,
        grow_A,
        result["label_offset_A"]["before"],
        result["label_offset_A"]["after"],
        gaps_before["edge_profile"],
        gaps_after["edge_profile"],
    )
    return result
