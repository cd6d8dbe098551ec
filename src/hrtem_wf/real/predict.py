"""Particle maps, atomic columns or exit waves of experimental micrographs, file by file
(`hrtem-wf predict`).

Input: a trained model (a folder with metadata.json and weights.pt) and micrograph files
(hrtem_wf.real.micrographs reads them); a model of focal series of C images takes the files C
at a time, in the order of its focal series' offsets. Output, per micrograph (or series, named
after its first file), in one folder:
segmentation  <stem>_probability.tif (the particle probability, with the file's pixel size) and
              <stem>_mask.png (probability > threshold); with `analyze`, also
              <stem>_particles.csv (each particle's lattice peaks and zone-axis flag,
              hrtem_wf.real.particles);
columns       <stem>_columns.csv and <stem>_columns.png (hrtem_wf.real.task_outputs);
exit_wave     <stem>_exit_wave.npy and <stem>_exit_wave.png (hrtem_wf.real.task_outputs).
"""

from __future__ import annotations

import logging
from pathlib import Path

from hrtem_wf.errors import InputError

log = logging.getLogger("hrtem_wf")


class AnalysisError(InputError):
    """A micrograph the particle analysis cannot measure (no pixel size to measure at, a lattice
    band beyond its Nyquist frequency)."""


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
    peaks. Every file and the model are checked before the first inference (InputError); a file
    the analysis cannot measure stops before its inference (AnalysisError)."""
    from tqdm import tqdm

    from hrtem_wf.models.model import TrainedModel, resolve_device
    from hrtem_wf.real import particles as analysis
    from hrtem_wf.real.inference import pixel_size_mismatch, predict_micrograph
    from hrtem_wf.real.micrographs import (
        MICROGRAPH_EXTENSIONS,
        read_micrograph,
        write_mask_png,
        write_probability_tiff,
    )

    paths = [Path(path) for path in micrographs]
    for path in paths:  # before loading the model: fail early
        if path.suffix.lower() not in MICROGRAPH_EXTENSIONS:
            raise InputError(
                f"{path}: unsupported format {path.suffix!r}; "
                f"known: {' '.join(MICROGRAPH_EXTENSIONS)}"
            )
        if not path.is_file():
            raise InputError(f"{path}: no such file")
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
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if trained.task != "segmentation":
        for start in tqdm(range(0, len(paths), inputs), desc="micrographs", unit="input"):
            _predict_task(
                trained,
                model,
                paths[start : start + inputs],
                out_dir,
                median_px=median_px,
                tile_px=tile_px,
                overlap_px=overlap_px,
                batch_size=batch_size,
                device=torch_device,
            )
        return

    for path in tqdm(paths, desc="micrographs", unit="file", disable=len(paths) < 2):
        image, pixel_size = read_micrograph(path)
        mismatch = pixel_size_mismatch(
            pixel_size, trained.pixel_size_A, nominal_pixel_size_A=trained.nominal_pixel_size_A
        )
        if mismatch:
            log.warning("%s: %s", path, mismatch)
        analysis_pixel_size = pixel_size
        if analyze:  # before the inference: fail early
            if analysis_pixel_size is None:
                analysis_pixel_size = trained.nominal_pixel_size_A
                if analysis_pixel_size is None:
                    raise AnalysisError(
                        f"{path} records no pixel size and the "
                        f"model has no nominal pixel size; the analysis needs one (lattice "
                        f"spacings in A): write it into the file"
                    )
                log.info(
                    "%s: no pixel size in the file; analysing at the model's nominal pixel "
                    "size %.4g A",
                    path,
                    analysis_pixel_size,
                )
            try:
                analysis.check_band(analysis_pixel_size)
            except ValueError as error:
                raise AnalysisError(f"{path}: {error}") from None
        probability = predict_micrograph(
            model,
            image,
            median_px=median_px,
            tile_px=tile_px,
            overlap_px=overlap_px,
            batch_size=batch_size,
            device=torch_device,
            progress=True,
            progress_desc=path.name,
        )
        mask = probability > threshold
        probability_path = out_dir / f"{path.stem}_probability.tif"
        mask_path = out_dir / f"{path.stem}_mask.png"
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
        if analyze:
            particles = analysis.analyze_particles(image, mask, analysis_pixel_size)
            particles_path = out_dir / f"{path.stem}_particles.csv"
            analysis.write_particles_csv(particles_path, particles)
            log.info("analyze %s: %s -> %s", path, analysis.summary(particles), particles_path.name)


def _predict_task(trained, model, paths: list[Path], out_dir: Path, **tiling) -> None:
    """The columns or the exit wave of one micrograph (or focal series, `paths` in the model's
    order) into `out_dir` (module docstring)."""
    import numpy as np

    from hrtem_wf.real.inference import pixel_size_mismatch, predict_micrograph, preprocess
    from hrtem_wf.real.micrographs import read_micrograph
    from hrtem_wf.real.task_outputs import write_columns, write_exit_wave

    read = [read_micrograph(path) for path in paths]
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
