"""Particle maps, atomic columns or exit waves of experimental micrographs, file by file
(`hrtem-wf predict`).

Input: a trained model (a folder with metadata.json and weights.pt) and micrograph files
(hrtem_wf.real.micrographs reads them); a model of focal series of C images takes the files C
at a time, in the order of its focal series' offsets. Output, per micrograph (or series, named
after its first file), in one folder:
segmentation  <stem>_probability.tif (the particle probability, an ImageJ TIFF with the file's
              pixel size), <stem>_mask.png (probability > threshold) and <stem>_particles.csv
              (each particle's diameter, area, centroid, aspect ratio, border flag:
              hrtem_wf.real.sizes; with `analyze` its zone-axis flag too, and
              <stem>_lattice.csv: its lattice peaks, hrtem_wf.real.particles); pooled over
              the call: particles.csv, particle_sizes.json (count, mean, sd, median,
              percentiles of the diameter, a fitted lognormal; per micrograph and pooled) and
              particle_sizes.png (size histogram with the lognormal, count per micrograph,
              an overlay);
columns       <stem>_columns.csv and <stem>_columns.png (hrtem_wf.real.task_outputs);
exit_wave     <stem>_exit_wave.npy and <stem>_exit_wave.png (hrtem_wf.real.task_outputs).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from hrtem_wf.errors import InputError
from hrtem_wf.io import staged_outputs
from hrtem_wf.real import sizes

log = logging.getLogger("hrtem_wf")


class AnalysisError(InputError):
    """A micrograph the particle analysis cannot measure (no pixel size to measure at, a lattice
    band beyond its Nyquist frequency)."""


#: The smallest micrograph side `predict` takes: a network sees a particle or a column in its
#: context (the training images are 224-512 px); fewer pixels are no micrograph to map.
MIN_MICROGRAPH_PX = 32


def predict_files(
    model_dir: str,
    micrographs: list[str],
    out: str,
    *,
    tile_px: int,
    overlap_px: int,
    median_px: int,
    threshold: float,
    device: str,
    batch_size: int,
    analyze: bool = False,
) -> None:
    """Predict every micrograph in `micrographs` with the model in `model_dir` into the folder
    `out`: tiles of `tile_px` overlapping by `overlap_px`, `batch_size` tiles per forward pass,
    a `median_px` median filter before the [0, 1] scaling (0: none), mask = probability >
    `threshold`, on `device` ("cpu" or "gpu"); with `analyze`, also each particle's lattice
    peaks.

    The model and the arguments are checked first (InputError, before any inference). Then each
    micrograph (or focal series) stands on its own: one that cannot be read, is too small, or
    that the analysis cannot measure gets one logged line naming it and the problem, and the
    others are predicted; its outputs appear all together or not at all (staged, then moved).
    At the end, InputError summarizes the failed files, if any; `out` is not left empty."""
    from tqdm import tqdm

    from hrtem_wf.models.model import TrainedModel, resolve_device
    from hrtem_wf.real.inference import check_tiling
    from hrtem_wf.real.micrographs import MICROGRAPH_EXTENSIONS

    paths = [Path(path) for path in micrographs]
    failed: dict[Path, str] = {}
    for path in paths:  # known before the model loads: reported, the others still run
        if path.suffix.lower() not in MICROGRAPH_EXTENSIONS:
            failed[path] = (
                f"unsupported format {path.suffix!r}; known: {' '.join(MICROGRAPH_EXTENSIONS)}"
            )
        elif not path.is_file():
            failed[path] = "no such file"
    stems = [path.stem for path in paths]
    duplicates = sorted({stem for stem in stems if stems.count(stem) > 1})
    if duplicates:
        raise InputError(
            f"several micrographs share the name {duplicates}; "
            f"their outputs would overwrite each other"
        )
    torch_device = resolve_device(device)
    try:
        trained = TrainedModel.read(model_dir)
        model = trained.load_network(torch_device)
        check_tiling(model, tile_px, overlap_px, batch_size)
    except (OSError, ValueError) as error:
        raise InputError(str(error)) from None
    inputs = trained.channels[0]
    if trained.task == "segmentation" and inputs != 1:
        raise InputError(
            f"{model_dir} is a {trained.task} model of {inputs} input images; predict maps "
            "particles in single micrographs"
        )
    if analyze and trained.task != "segmentation":
        raise InputError(
            f"--analyze measures particles in a particle mask; {model_dir} is a "
            f"{trained.task} model"
        )
    if len(paths) % inputs:
        offsets = (trained.metadata.get("focal_series") or {}).get("offsets_A")
        raise InputError(
            f"{model_dir} takes focal series of {inputs} micrographs (defocus offsets "
            f"{offsets} A): give the files {inputs} at a time, in that order; "
            f"{len(paths)} files given"
        )
    for path, problem in failed.items():
        log.error("%s: %s", path, problem)

    out_dir = Path(out)
    existed = out_dir.exists()
    tiling = dict(
        tile_px=tile_px,
        overlap_px=overlap_px,
        batch_size=batch_size,
        device=torch_device,
        median_px=median_px,
    )
    groups = [paths[start : start + inputs] for start in range(0, len(paths), inputs)]
    # the particles of each segmented micrograph, for the pooled statistics (one overlay kept)
    measured_sizes: dict[Path, dict] = {}
    for group in tqdm(groups, desc="micrographs", unit="input", disable=len(groups) < 2):
        if any(path in failed for path in group):
            failed.update(
                {p: "its focal series has a failed file" for p in group if p not in failed}
            )
            continue
        try:
            with staged_outputs(out_dir, group[0].stem) as stage:
                if trained.task == "segmentation":
                    measured = _predict_particles(
                        trained, model, group[0], stage, threshold, analyze, **tiling
                    )
                    if measured is not None:
                        if measured_sizes:
                            del measured["overlay"]
                        measured_sizes[group[0]] = measured
                else:
                    _predict_task(trained, model, group, stage, **tiling)
        except (InputError, ValueError, OSError) as error:
            text = str(error)
            failed[group[0]] = text.removeprefix(f"{group[0]}: ")
            log.error("%s: %s", group[0], failed[group[0]])
    if measured_sizes:
        _write_size_statistics(out_dir, measured_sizes)
    if not existed and out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()
    if failed:
        done = len(paths) - len(failed)
        listed = "; ".join(f"{path}: {problem}" for path, problem in failed.items())
        raise InputError(
            f"{len(failed)} of {len(paths)} micrograph(s) failed ({done} written to {out_dir}): "
            f"{listed}"
        )


def _read(path: Path):
    """(image, pixel size) of a micrograph, checked for the size `predict` takes; InputError
    naming the file otherwise."""
    from hrtem_wf.real.micrographs import read_micrograph

    try:
        image, pixel_size = read_micrograph(path)
    except (OSError, ValueError) as error:
        text = str(error)
        raise InputError(text if text.startswith(str(path)) else f"{path}: {text}") from None
    if min(image.shape) < MIN_MICROGRAPH_PX:
        raise InputError(
            f"{path}: {image.shape[0]} x {image.shape[1]} px is too small; predict takes "
            f"micrographs of at least {MIN_MICROGRAPH_PX} x {MIN_MICROGRAPH_PX} px"
        )
    if not np.all(np.isfinite(image)):
        raise InputError(f"{path}: the micrograph has NaN or infinite pixels")
    return image, pixel_size


def _predict_particles(trained, model, path: Path, stage: Path, threshold, analyze, **tiling):
    """Particle probability, mask (and with `analyze` the particles' table) of one micrograph
    into `stage`."""
    from hrtem_wf.real import particles as analysis
    from hrtem_wf.real.inference import pixel_size_mismatch, predict_micrograph
    from hrtem_wf.real.micrographs import write_mask_png, write_probability_tiff

    image, pixel_size = _read(path)
    mismatch = pixel_size_mismatch(
        pixel_size, trained.pixel_size_A, nominal_pixel_size_A=trained.nominal_pixel_size_A
    )
    if mismatch:
        log.warning("%s: %s", path, mismatch)
    analysis_pixel_size = pixel_size if pixel_size is not None else trained.nominal_pixel_size_A
    if analyze:  # before the inference: fail early
        if pixel_size is None:
            if analysis_pixel_size is None:
                raise AnalysisError(
                    f"{path} records no pixel size and the "
                    f"model has no nominal pixel size; the analysis needs one (lattice "
                    f"spacings in A): write it into the file"
                )
            log.info(
                "%s: no pixel size in the file; analysing at the model's nominal pixel size %.4g A",
                path,
                analysis_pixel_size,
            )
        try:
            analysis.check_band(analysis_pixel_size)
        except ValueError as error:
            raise AnalysisError(f"{path}: {error}") from None
    probability = predict_micrograph(model, image, progress=True, progress_desc=path.name, **tiling)
    mask = probability > threshold
    probability_path = stage / f"{path.stem}_probability.tif"
    mask_path = stage / f"{path.stem}_mask.png"
    write_probability_tiff(probability_path, probability, pixel_size)
    write_mask_png(mask_path, mask)
    log.info(
        "predict %s: %d x %d px, pixel size %s, particle fraction %.4f -> %s, %s",
        path,
        image.shape[0],
        image.shape[1],
        "unknown" if pixel_size is None else f"{pixel_size:.4g} A",
        float(mask.mean()),
        probability_path.name,
        mask_path.name,
    )
    zone_axis = {}
    if analyze:
        lattice = analysis.analyze_particles(image, mask, analysis_pixel_size)
        lattice_path = stage / f"{path.stem}_lattice.csv"
        analysis.write_particles_csv(lattice_path, lattice)
        zone_axis = {particle.label: particle.zone_axis for particle in lattice}
        log.info("analyze %s: %s -> %s", path, analysis.summary(lattice), lattice_path.name)
    if analysis_pixel_size is None:
        log.warning("%s: no pixel size (file or model): particle sizes not measured", path)
        return None
    particles, fragments = sizes.measure_particles(mask, analysis_pixel_size)
    rows = [p.row(path.name, zone_axis.get(p.label)) for p in particles]
    sizes.write_particles_csv(stage / f"{path.stem}_particles.csv", rows)
    summary = sizes.size_summary(particles, fragments)
    log.info(
        "sizes %s: %d particles (%d touching the border), mean diameter %s nm -> %s",
        path,
        summary["count"],
        summary["touching_border"],
        "-" if summary["mean_diameter_nm"] is None else f"{summary['mean_diameter_nm']:.3g}",
        f"{path.stem}_particles.csv",
    )
    return {
        "particles": particles,
        "fragments": fragments,
        "rows": rows,
        "summary": summary,
        "pixel_size_A": analysis_pixel_size,
        "overlay": (path.name, image, mask),
    }


def _write_size_statistics(out_dir: Path, measured: dict[Path, dict]) -> None:
    """particles.csv, particle_sizes.json and particle_sizes.png pooled over the micrographs
    predicted (`measured`: _predict_particles' results), together or not at all."""
    from hrtem_wf.io import write_json

    pooled = [p for m in measured.values() for p in m["particles"]]
    fragments = sum(m["fragments"] for m in measured.values())
    summary = {
        "pooled": sizes.size_summary(pooled, fragments),
        "per_micrograph": {str(path): m["summary"] for path, m in measured.items()},
        "pixel_size_A": {str(path): m["pixel_size_A"] for path, m in measured.items()},
        "min_particle_diameter_A": sizes.MIN_PARTICLE_DIAMETER_A,
        "note": "diameters: equivalent (2 sqrt(area / pi)), of particles not touching the border",
    }
    with staged_outputs(out_dir, "particle_sizes") as stage:
        sizes.write_particles_csv(
            stage / "particles.csv", [row for m in measured.values() for row in m["rows"]]
        )
        write_json(stage / "particle_sizes.json", summary)
        sizes.plot_sizes(
            {"network": [p.diameter_nm for p in pooled if not p.touches_border]},
            {"network": {path.stem: m["summary"]["count"] for path, m in measured.items()}},
            stage / "particle_sizes.png",
            example=next(iter(measured.values()))["overlay"],
            summaries={"network": summary["pooled"]},
        )
    log.info(
        "sizes: %d particles in %d micrograph(s), mean diameter %s nm -> particles.csv, "
        "particle_sizes.json, particle_sizes.png",
        summary["pooled"]["count"],
        len(measured),
        "-"
        if summary["pooled"]["mean_diameter_nm"] is None
        else f"{summary['pooled']['mean_diameter_nm']:.3g}",
    )


def _predict_task(trained, model, paths: list[Path], out_dir: Path, **tiling) -> None:
    """The columns or the exit wave of one micrograph (or focal series, `paths` in the model's
    order) into `out_dir` (module docstring)."""
    from hrtem_wf.real.inference import pixel_size_mismatch, predict_micrograph, preprocess
    from hrtem_wf.real.task_outputs import write_columns, write_exit_wave

    read = [_read(path) for path in paths]
    shapes = {image.shape for image, _ in read}
    if len(shapes) > 1:
        raise InputError(
            f"the focal series {[str(p) for p in paths]} holds images of different shapes "
            f"{sorted(shapes)}"
        )
    pixel_size = next((size for _, size in read if size is not None), None)
    mismatch = pixel_size_mismatch(
        pixel_size, trained.pixel_size_A, nominal_pixel_size_A=trained.nominal_pixel_size_A
    )
    if mismatch:
        log.warning("%s: %s", paths[0], mismatch)
    series = np.stack([image for image, _ in read])
    median_px = tiling.pop("median_px")
    maps = predict_micrograph(
        model,
        series if len(paths) > 1 else series[0],
        median_px=median_px,
        task=trained.task,
        **tiling,
    )
    shown = preprocess(series[0], median_px=median_px)
    stem = paths[0].stem
    if trained.task == "columns":
        names = [str(n) for n in trained.metadata["targets"]["columns"]["classes"]["names"]]
        rows = write_columns(out_dir, stem, shown, maps, names, pixel_size)
        log.info("predict %s: %d columns -> %s_columns.csv, .png", paths[0], len(rows), stem)
    else:
        write_exit_wave(out_dir, stem, shown, maps)
        log.info("predict %s: exit wave -> %s_exit_wave.npy, .png", paths[0], stem)
