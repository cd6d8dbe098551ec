"""`hrtem-wf match` from files to files: real micrographs in; the estimates, suggested blocks, a
whole config and (with simulated micrographs) the realism gaps out.

Output, in one folder: match.json and match.png (the estimates, measure.py), suggested.yaml (the
blocks drawn around them, suggest.py), config.yaml (a whole config of those blocks, with the
micrographs as a real set when their masks are given) and, with `simulated`, realism.json and
realism.png (realism.py).
"""

from __future__ import annotations

import logging
from pathlib import Path

from hrtem_wf.errors import InputError
from hrtem_wf.io import staged_outputs

log = logging.getLogger("hrtem_wf")


def match_files(
    micrographs: list[str],
    out: str,
    *,
    masks: str | None,
    voltage_kV: float,
    pixel_size_A: float | None,
    material: str,
    lattice_constant_A: float | None,
    cs_mm: float,
    fit_cs: bool,
    counts: bool,
    mtf: list[float] | None,
    cell_A: list[float] | None,
    name: str,
    simulated: str | None,
    simulated_pixel_size_A: float | None,
    max_simulated: int,
    median_px: int,
    fit_contrast: bool = False,
) -> dict:
    """Estimate from `micrographs` (files or folders; `masks`: a folder of <stem>.png particle
    masks) what a simulation must reproduce, at `voltage_kV` with spherical aberration `cs_mm`
    (fitted too with `fit_cs`), for particles of `material`; `pixel_size_A`,
    `lattice_constant_A` and the camera's `mtf` (c1, c2, c3) when known, else estimated;
    `counts`: gray values are electron counts. Suggest blocks named `name` (structures of
    `cell_A`) and write everything into the folder `out`; with `simulated` (an images store or
    dataset of pixel size `simulated_pixel_size_A`, else the store's), also the gaps between the
    first `max_simulated` of its images and the micrographs (median-filtered by `median_px`).
    Returns the estimates (match.json). fit_contrast: the suggested config has the workflow's
    calibration fit the dose to the real particles' depth too (needs `masks`, a folder of
    micrographs, no `simulated`; an effective dose only: a measured one is kept).

    Each file stands on its own. Blank, saturated and noise-only micrographs are left out, and
    micrographs without Thon rings get no defocus (a warning each; match.json's `left_out` and
    `defocus_A.unknown`): the run goes on. A file that cannot be read (or its mask) gets one
    line naming it; the others are matched and written, then InputError lists the failed ones
    (exit status 1). When the essentials cannot be estimated (no micrograph left, no pixel
    size, no Thon rings anywhere): InputError saying what to give, and nothing is written. The
    outputs appear together (staged, then moved into `out`) or not at all.
    """
    import yaml

    from hrtem_wf.io import write_json
    from hrtem_wf.real.match import (
        blocks_yaml,
        image_statistics,
        match_micrographs,
        plot_match,
        read_micrographs,
        read_simulated,
        suggest_blocks,
        suggested_config,
        write_realism,
    )
    from hrtem_wf.real.match.suggest import contrast_fit, real_set_name

    one_folder = len(micrographs) == 1 and Path(micrographs[0]).is_dir()
    if fit_contrast and (simulated or not masks or not one_folder):
        raise InputError(
            "--fit-contrast: the workflow fits the dose against the micrographs as a real set: "
            "give one folder of micrographs with --masks, and no --simulated"
        )
    if simulated:  # read first: a bad store is known before the micrographs are measured
        try:
            images, sim_masks, sim_pixel = read_simulated(
                simulated, max_simulated, simulated_pixel_size_A
            )
        except (OSError, ValueError, KeyError) as error:
            raise InputError(f"--simulated {simulated}: {error}") from None
        if sim_pixel is None:
            raise InputError(
                f"--simulated {simulated}: its pixel size is stated nowhere; "
                "give --simulated-pixel-size-A"
            )
    try:
        read, left_out, failed = read_micrographs(micrographs, masks)
        report, diagnostics = match_micrographs(
            read,
            energy_eV=voltage_kV * 1e3,
            pixel_size_A=pixel_size_A,
            material=material,
            lattice_constant_A=lattice_constant_A,
            cs_A=cs_mm * 1e7,
            fit_cs=fit_cs,
            counts=counts,
            mtf_c=mtf,
            median_px=median_px,
        )
    except (OSError, ValueError) as error:
        raise InputError(str(error)) from None
    report["left_out"] = left_out  # blank, saturated or noise-only micrographs, with why
    report["failed"] = failed  # files (or masks) that cannot be read, with why
    real_set = None
    if masks and one_folder:
        real_set = {
            "format": "pairs",
            "micrographs": str(Path(micrographs[0]).resolve()),
            "masks": str(Path(masks).resolve()),
            "pixel_size_A": round(float(report["pixel_size"]["value_A"]), 4),
        }
    # The label width: measured here against --simulated images (at the recipe's blur), else,
    # with the blur, by the workflow's calibration rule against the micrographs' masks (the real
    # set), else 0 (and the recipe's blur). The dose, with --fit-contrast: an effective one
    # (8-bit exports) is fitted there too, to the particles' depth; a measured one is kept.
    calibrating = simulated is None and real_set is not None
    report["contrast_fit"] = contrast_fit(
        report, f"{name}_hrtem", real_set_name(name) if calibrating else None, fit_contrast
    )
    out = Path(out)
    with staged_outputs(out, "match") as stage:
        write_json(stage / "match.json", report)
        plot_match(report, diagnostics, stage / "match.png")
        realism = None
        if simulated:
            sim = [
                image_statistics(i, m, sim_pixel, median_px=0) for i, m in zip(images, sim_masks)
            ]
            real = [
                image_statistics(m.image, m.mask, report["pixel_size"]["value_A"], median_px)
                for m in read
            ]
            realism = write_realism(sim, real, stage / "realism.json")
            for statistic, entry in realism["statistics"].items():
                log.info("realism gap %s: %s", statistic, entry["gap"])
            log.info("realism: labels %s A outside the masks", realism["label_offset_A"])
        grow_A = None if realism is None else realism["suggested_label_grow_A"]
        blur_A = None
        if calibrating:
            grow_A = blur_A = {"calibrate": real_set_name(name)}
        blocks = suggest_blocks(
            report,
            name=name,
            cell_A=cell_A,
            label_grow_A=grow_A,
            blur_A=blur_A,
            dose_calibrate=report["contrast_fit"].get("against"),
        )
        (stage / "suggested.yaml").write_text(blocks_yaml(blocks, report))
        config = suggested_config(blocks, name, real_set)
        (stage / "config.yaml").write_text(
            f"# A whole config from `hrtem-wf match` (see suggested.yaml beside it). Run it:\n"
            f"#   snakemake --profile profiles/local --configfile {out / 'config.yaml'} "
            f"--replace-workflow-config\n" + yaml.safe_dump(config, sort_keys=False, width=100)
        )
    log.info(
        "match: pixel size %.4g A (%s), defocus %.0f..%.0f A, dose %.4g e/A^2 (%s) -> %s",
        report["pixel_size"]["value_A"],
        report["pixel_size"]["source"],
        report["defocus_A"]["min"],
        report["defocus_A"]["max"],
        report["dose"]["dose_e_per_A2"]["median"],
        report["dose"]["kind"],
        out,
    )
    if failed:
        listed = "; ".join(f"{path}: {problem}" for path, problem in failed.items())
        raise InputError(
            f"{len(failed)} file(s) failed, matched without them ({len(read)} micrographs, "
            f"written to {out}): {listed}"
        )
    return report
