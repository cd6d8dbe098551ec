"""`hrtem-wf`: one subcommand per workflow stage; each Snakemake rule calls one of them.

Every subcommand takes its config block as JSON (`--spec`), the global seed and the item's
block name and index, so a job needs nothing but its inputs and its params. Stage libraries are
imported lazily: a structure job does not pay for importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import time

from hrtem_wf.config import schema_default
from hrtem_wf.memory import huge_pages_for_tensors
from hrtem_wf.sampling import derive_seed

log = logging.getLogger("hrtem_wf")


def _structures(args) -> None:
    import ase.io

    from hrtem_wf.io import atomic_path, versions
    from hrtem_wf.structures import build_structure

    seed = derive_seed(args.seed, args.block, args.index)
    atoms = build_structure(args.spec, seed)
    atoms.info.update(
        {
            "block_name": args.block,
            "index": args.index,
            "seed": seed,
            "structure_id": f"{args.block}/{args.index:05d}",
            "hrtem_wf_version": versions().get("hrtem_wf", ""),
        }
    )
    with atomic_path(args.output) as tmp:
        ase.io.write(tmp, atoms, format="extxyz")
    log.info(
        "structure %s/%05d: %d atoms (%d particle)",
        args.block,
        args.index,
        len(atoms),
        int(atoms.arrays["particle"].sum()),
    )


def _preview(args) -> None:
    import ase.io

    from hrtem_wf.preview import write_preview

    structures = [ase.io.read(path, format="extxyz") for path in args.structures]
    write_preview(structures, args.output, title=args.title)
    log.info("preview of %d structures: %s", len(structures), args.output)


def _simulations(args) -> None:
    import ase.io

    from hrtem_wf.io import versions, write_arrays
    from hrtem_wf.simulations import simulate_structure

    atoms = ase.io.read(args.structure, format="extxyz")
    seed = derive_seed(args.seed, args.block, args.index)
    result = simulate_structure(atoms, args.spec, seed)
    info = {k: v for k, v in atoms.info.items() if k not in ("block_name", "seed")}
    attrs = {
        **result["attrs"],
        "block_name": args.block,
        "config": args.spec,
        "structure_id": atoms.info["structure_id"],
        "structure": {
            "block_name": atoms.info["block_name"],
            "seed": atoms.info["seed"],
            "path": args.structure,
            "info": info,
        },
        "versions": versions(),
    }
    write_arrays(args.output, {"full": result["full"], "particle": result["particle"]}, attrs)
    log.info(
        "simulation %s/%05d: %s waves, sampling %s A",
        args.block,
        args.index,
        result["full"].shape,
        attrs["sampling_A"],
    )


def _images(args) -> None:
    import numpy as np

    from hrtem_wf.images import draw_images
    from hrtem_wf.io import read_arrays, versions, write_arrays

    waves, sim_attrs = read_arrays(
        args.simulation,
        {"full": np.complex64, "particle": np.complex64},
        items_attr="frozen_phonons",
    )
    seed = derive_seed(args.seed, args.block, args.index)
    images, masks, records = draw_images(
        waves["full"],
        waves["particle"],
        sampling_A=tuple(sim_attrs["sampling_A"]),
        energy_eV=sim_attrs["energy_eV"],
        block=args.spec,
        rng=np.random.default_rng(seed),
        material=sim_attrs["structure"]["info"].get("material"),
    )
    attrs = {
        "block_name": args.block,
        "config": args.spec,
        "seed": seed,
        "structure_id": sim_attrs["structure_id"],
        "records": records,
        "simulation": {
            "block_name": sim_attrs["block_name"],
            "seed": sim_attrs["seed"],
            "path": args.simulation,
            "config": sim_attrs["config"],
            "structure": sim_attrs["structure"],
        },
        "versions": versions(),
    }
    arrays = {"images": images, "masks": masks, **_image_targets(args, waves, sim_attrs, records)}
    write_arrays(args.output, arrays, attrs)
    log.info(
        "images %s/%05d: %d draws of %s%s",
        args.block,
        args.index,
        len(images),
        images.shape[1:],
        "".join(
            f", {name} {array.shape[1:]}" for name, array in arrays.items() if name != "images"
        ),
    )


def _image_targets(args, waves, sim_attrs, records) -> dict:
    """The arrays of the images block's `targets` (hrtem_wf.images.targets) for these draws."""
    targets = args.spec["targets"]
    sampling_A = tuple(sim_attrs["sampling_A"])
    arrays = {}
    if targets.get("columns") is not None:
        import ase.io

        from hrtem_wf.images.columns import projected_columns
        from hrtem_wf.images.targets import column_targets

        if args.structure is None:
            raise SystemExit("hrtem-wf images: targets.columns needs --structure (the .xyz)")
        spec = targets["columns"]
        columns = projected_columns(
            ase.io.read(args.structure, format="extxyz"), spec["tolerance_A"]
        )
        maps, positions = column_targets(
            columns, spec, records, sampling_A, waves["full"].shape[-2:]
        )
        arrays |= {"column_maps": maps, "column_positions": positions}
    if targets.get("exit_wave") is not None:
        from hrtem_wf.images.targets import exit_wave_targets

        arrays["exit_waves"] = exit_wave_targets(
            waves["full"], targets["exit_wave"], records, sampling_A
        )
    return arrays


def _models(args) -> None:
    from hrtem_wf.models import train_model

    summary = train_model(
        args.spec,
        args.dataset_zarr,
        args.dataset_parquet,
        args.model_seed,
        args.out_dir,
        log=log.info,
        image_spec=args.images_spec,
        simulations_dir=args.simulations_dir,
    )
    log.info("trained: %s", json.dumps(summary, default=str))


def _evaluations(args) -> None:
    from hrtem_wf.evaluations import evaluate_model
    from hrtem_wf.io import write_json

    metrics = evaluate_model(
        args.model_dir, args.dataset_zarr, args.dataset_parquet, split=args.split
    )
    write_json(args.output, metrics)
    log.info("evaluation: %s", json.dumps(metrics, default=str))


def _scores(args) -> None:
    from hrtem_wf.evaluations.real_sets import score_real_set
    from hrtem_wf.io import write_json

    start = time.perf_counter()
    result = score_real_set(args.model_dir, args.real_set, args.spec)
    write_json(args.output, result)
    log.info(
        "real set %s, %s seed %s: F1 %.4f over %d images (%.1f s)",
        args.real_set,
        result["model"],
        result["seed"],
        result["f1"],
        result["n_images"],
        time.perf_counter() - start,
    )


def _realism(args) -> None:
    """The realism gaps of a dataset's images against a real set's micrographs and masks."""
    from pathlib import Path

    from hrtem_wf.evaluations.real_sets import read_real_set
    from hrtem_wf.match import image_statistics, read_simulated, write_realism

    real = [
        image_statistics(r.image, r.mask, r.pixel_size_A, int(args.spec["median_filter_px"]))
        for r in read_real_set(args.spec)
    ]
    images, masks, pixel_size_A = read_simulated(args.dataset_zarr, args.max_simulated)
    sim = [image_statistics(i, m, pixel_size_A, median_px=0) for i, m in zip(images, masks)]
    report = write_realism(
        sim, real, args.output, real_set=args.real_set, dataset=Path(args.dataset_zarr).stem
    )
    log.info(
        "realism %s vs %s: %s; labels %s A outside the masks",
        report["dataset"],
        args.real_set,
        ", ".join(f"{k} {v['gap']:.3g}" for k, v in report["statistics"].items() if v["gap"]),
        report["label_offset_A"],
    )


def _report(args) -> None:
    from hrtem_wf.evaluations import write_report

    write_report(
        args.evaluations,
        args.model_dirs,
        args.dataset_zarr,
        args.dataset_parquet,
        args.out_dir,
        score_jsons=args.scores,
        dataset_parquets=args.dataset_parquets,
        real_sets=args.real_sets_spec,
        realism_jsons=args.realism,
    )
    log.info("report written to %s", args.out_dir)


def _predict(args) -> None:
    """Particle probability maps and masks of experimental micrographs, one pair per file; with
    --analyze also each particle's lattice peaks and zone-axis flag (hrtem_wf.analysis)."""
    from pathlib import Path

    from tqdm import tqdm

    from hrtem_wf import analysis
    from hrtem_wf.inference import pixel_size_mismatch, predict_micrograph
    from hrtem_wf.micrographs import (
        MICROGRAPH_EXTENSIONS,
        read_micrograph,
        write_mask_png,
        write_probability_tiff,
    )
    from hrtem_wf.models.model import TrainedModel, resolve_device

    if not 0.0 <= args.threshold <= 1.0:
        raise SystemExit(f"hrtem-wf predict: --threshold must be in [0, 1], not {args.threshold}")
    paths = [Path(path) for path in args.micrographs]
    for path in paths:  # before loading the model: fail early
        if path.suffix.lower() not in MICROGRAPH_EXTENSIONS:
            raise SystemExit(
                f"hrtem-wf predict: {path}: unsupported format {path.suffix!r}; "
                f"known: {' '.join(MICROGRAPH_EXTENSIONS)}"
            )
        if not path.is_file():
            raise SystemExit(f"hrtem-wf predict: {path}: no such file")
    stems = [path.stem for path in paths]
    duplicates = sorted({stem for stem in stems if stems.count(stem) > 1})
    if duplicates:
        raise SystemExit(
            f"hrtem-wf predict: several micrographs share the name {duplicates}; "
            f"their outputs would overwrite each other"
        )
    device = resolve_device(args.device)
    try:
        trained = TrainedModel.read(args.model_dir)
        model = trained.load_network(device)
    except (OSError, ValueError) as error:
        raise SystemExit(f"hrtem-wf predict: {error}") from None
    if trained.task != "segmentation" or trained.channels[0] != 1:
        raise SystemExit(
            f"hrtem-wf predict: {args.model_dir} is a {trained.task} model of "
            f"{trained.channels[0]} input image(s); predict maps particles in single micrographs "
            "(a segmentation model)"
        )
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    for path in tqdm(paths, desc="micrographs", unit="file", disable=len(paths) < 2):
        image, pixel_size = read_micrograph(path)
        mismatch = pixel_size_mismatch(
            pixel_size, trained.pixel_size_A, nominal_pixel_size_A=trained.nominal_pixel_size_A
        )
        if mismatch:
            log.warning("%s: %s", path, mismatch)
        analysis_pixel_size = pixel_size
        if args.analyze:  # before the inference: fail early
            if analysis_pixel_size is None:
                analysis_pixel_size = trained.nominal_pixel_size_A
                if analysis_pixel_size is None:
                    raise SystemExit(
                        f"hrtem-wf predict --analyze: {path} records no pixel size and the "
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
                raise SystemExit(f"hrtem-wf predict --analyze: {path}: {error}") from None
        probability = predict_micrograph(
            model,
            image,
            median_px=args.median_px,
            tile_px=args.tile_px,
            overlap_px=args.overlap_px,
            batch_size=args.batch_size,
            device=device,
            progress=True,
            progress_desc=path.name,
        )
        mask = probability > args.threshold
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
        if args.analyze:
            particles = analysis.analyze_particles(image, mask, analysis_pixel_size)
            particles_path = out_dir / f"{path.stem}_particles.csv"
            analysis.write_particles_csv(particles_path, particles)
            log.info("analyze %s: %s -> %s", path, analysis.summary(particles), particles_path.name)


def _match(args) -> None:
    """Estimates from real micrographs, suggested config blocks, and (with --simulated) the gaps
    between simulated and real micrographs."""
    from pathlib import Path

    import yaml

    from hrtem_wf.io import write_json
    from hrtem_wf.match import (
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

    try:
        micrographs = read_micrographs(args.micrographs, args.masks)
        report, diagnostics = match_micrographs(
            micrographs,
            energy_eV=args.voltage_kV * 1e3,
            pixel_size_A=args.pixel_size_A,
            material=args.material,
            lattice_constant_A=args.lattice_constant_A,
            cs_A=args.cs_mm * 1e7,
            fit_cs=args.fit_cs,
            counts=args.counts,
            mtf_c=args.mtf,
        )
    except (OSError, ValueError) as error:
        raise SystemExit(f"hrtem-wf match: {error}") from None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "match.json", report)
    plot_match(report, diagnostics, out / "match.png")
    realism = None
    if args.simulated:
        images, masks, sim_pixel = read_simulated(
            args.simulated, args.max_simulated, args.simulated_pixel_size_A
        )
        sim = [image_statistics(i, m, sim_pixel, median_px=0) for i, m in zip(images, masks)]
        real = [
            image_statistics(m.image, m.mask, report["pixel_size"]["value_A"], args.median_px)
            for m in micrographs
        ]
        realism = write_realism(sim, real, out / "realism.json")
        for name, entry in realism["statistics"].items():
            log.info("realism gap %s: %s", name, entry["gap"])
        log.info("realism: labels %s A outside the masks", realism["label_offset_A"])
    grow_A = None if realism is None else realism["suggested_label_grow_A"]
    blocks = suggest_blocks(report, name=args.name, cell_A=args.cell_A, label_grow_A=grow_A)
    (out / "suggested.yaml").write_text(blocks_yaml(blocks, report))
    real_set = None
    if args.masks and len(args.micrographs) == 1 and Path(args.micrographs[0]).is_dir():
        real_set = {
            "format": "pairs",
            "micrographs": str(Path(args.micrographs[0]).resolve()),
            "masks": str(Path(args.masks).resolve()),
            "pixel_size_A": round(float(report["pixel_size"]["value_A"]), 4),
        }
    config = suggested_config(blocks, args.name, real_set)
    (out / "config.yaml").write_text(
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


def _plan(args) -> None:
    from hrtem_wf.plan import run

    run(args)


def _gpu_probe(args) -> None:
    """Diagnostic: record which GPU this job was bound to (tests prove binding without a GPU)."""
    import os
    import socket
    from pathlib import Path

    start = time.time()
    time.sleep(args.seconds)  # hold the slot, so concurrent jobs overlap
    record = {
        "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "start": start,
        "end": time.time(),
        "failed": args.fail,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(record, indent=2) + "\n")
    if args.fail:  # a failing GPU job: its slot must be freed all the same
        log.error("gpu-probe: failing on purpose (--fail)")
        raise SystemExit(1)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hrtem-wf", description=__doc__.splitlines()[0])
    parser.add_argument("--log", help="append progress to this file (default: stderr)")
    parser.add_argument(
        "--bind-gpu",
        action="store_true",
        help="take one free GPU of the node for this job (sets CUDA_VISIBLE_DEVICES; "
        "for several GPU jobs in one allocation, see hrtem_wf.gpu)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def item(name, func, help_, imports):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--spec", type=json.loads, required=True, help="the block's config as JSON")
        p.add_argument("--seed", type=int, required=True, help="the config's global seed")
        p.add_argument("--block", required=True, help="the block's name")
        p.add_argument("--index", type=int, required=True, help="the item's index in its block")
        p.add_argument("--output", required=True)
        # imported before the clock starts: the log's "done in" is the item's work alone
        p.set_defaults(func=func, imports=imports)
        return p

    item(
        "structures", _structures, "build one structure (extxyz)", ("ase.io", "hrtem_wf.structures")
    )
    item(
        "simulations",
        _simulations,
        "simulate one structure (Zarr)",
        ("ase.io", "hrtem_wf.simulations"),
    ).add_argument("--structure", required=True)
    p = item(
        "images",
        _images,
        "draw the images of one simulation (Zarr)",
        ("hrtem_wf.io", "hrtem_wf.images"),
    )
    p.add_argument("--simulation", required=True)
    p.add_argument("--structure", help="the simulated structure (extxyz): for targets.columns")

    p = sub.add_parser("preview", help="PNG of a few structures: top and side views")
    p.add_argument("--structures", nargs="+", required=True, help="extxyz files")
    p.add_argument("--title", default="")
    p.add_argument("--output", required=True)
    p.set_defaults(func=_preview)

    p = sub.add_parser("models", help="train one model (weights, history, metadata)")
    p.add_argument("--spec", type=json.loads, required=True)
    p.add_argument("--model-seed", type=int, required=True)
    p.add_argument("--dataset-zarr", required=True)
    p.add_argument("--dataset-parquet", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument(
        "--images-spec",
        type=json.loads,
        help="on_the_fly: the images block (JSON) that draws the training images",
    )
    p.add_argument("--simulations-dir", help="on_the_fly: the folder of its simulation stores")
    p.set_defaults(func=_models)

    p = sub.add_parser("evaluations", help="metrics of one model on a dataset split (JSON)")
    p.add_argument("--model-dir", required=True)
    p.add_argument("--dataset-zarr", required=True)
    p.add_argument("--dataset-parquet", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--output", required=True)
    p.set_defaults(func=_evaluations)

    p = sub.add_parser("scores", help="F1 of one model on a real set (JSON)")
    p.add_argument("--model-dir", required=True)
    p.add_argument("--real-set", required=True, help="the real set's name")
    p.add_argument("--spec", type=json.loads, required=True, help="the real_sets block as JSON")
    p.add_argument("--output", required=True)
    p.set_defaults(func=_scores)

    p = sub.add_parser(
        "realism", help="gaps between a dataset's images and a real set's micrographs (JSON, PNG)"
    )
    p.add_argument("--real-set", required=True, help="the real set's name")
    p.add_argument("--spec", type=json.loads, required=True, help="the real_sets block as JSON")
    p.add_argument("--dataset-zarr", required=True, help="its Parquet table lies beside it")
    p.add_argument("--max-simulated", type=int, default=32, help="simulated images read (32)")
    p.add_argument("--output", required=True, help="JSON; the figure beside it (.png)")
    p.set_defaults(func=_realism)

    p = sub.add_parser("report", help="summary table and figures for all models")
    p.add_argument("--evaluations", nargs="+", required=True)
    p.add_argument("--scores", nargs="*", default=[], help="real-set score JSONs")
    p.add_argument("--realism", nargs="*", default=[], help="realism JSONs (real set, dataset)")
    p.add_argument("--model-dirs", nargs="+", required=True)
    p.add_argument("--dataset-zarr", required=True)
    p.add_argument("--dataset-parquet", required=True)
    p.add_argument(
        "--dataset-parquets",
        nargs="*",
        default=[],
        help="every training dataset's table (data distributions)",
    )
    p.add_argument(
        "--real-sets-spec",
        type=json.loads,
        default={},
        help="the config's real_sets section as JSON (example predictions)",
    )
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=_report)

    p = sub.add_parser("predict", help="particle probability and mask of experimental micrographs")
    p.add_argument(
        "model_dir", metavar="MODEL_DIR", help="a trained model: metadata.json and weights.pt"
    )
    p.add_argument(
        "micrographs",
        nargs="+",
        metavar="MICROGRAPH",
        help=".dm3 .dm4 .ser .emd .tif .tiff .npy .png",
    )
    p.add_argument(
        "--out",
        required=True,
        help="writes <stem>_probability.tif, <stem>_mask.png (and <stem>_particles.csv) here",
    )
    p.add_argument("--tile-px", type=int, default=512, help="tile size (default: 512)")
    p.add_argument(
        "--overlap-px", type=int, default=256, help="overlap of neighbouring tiles (default: 256)"
    )
    median_px = schema_default("real_sets", "median_filter_px")  # the study's preprocessing
    p.add_argument(
        "--median-px",
        type=int,
        default=median_px,
        help=f"median filter before scaling to [0, 1]; 0 for none (default: {median_px})",
    )
    p.add_argument(
        "--threshold", type=float, default=0.5, help="mask = probability > threshold (default: 0.5)"
    )
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--batch-size", type=int, default=4, help="tiles per forward pass (default: 4)")
    p.add_argument(
        "--analyze",
        action="store_true",
        help="also each particle's Fourier peaks and zone-axis flag (Larsen et al.'s brightest / "
        "dimmest peak-pair ratio): <stem>_particles.csv; needs the pixel size (the file's, "
        "else the model's nominal one)",
    )
    p.set_defaults(func=_predict)

    p = sub.add_parser(
        "match",
        help="estimate pixel size, defocus, MTF, dose, particles from real micrographs; "
        "suggest config blocks; compare simulated micrographs with them",
    )
    p.add_argument(
        "micrographs", nargs="+", metavar="MICROGRAPH", help="files or folders (.dm3 ... .png)"
    )
    p.add_argument("--masks", help="folder with a <stem>.png particle mask per micrograph")
    p.add_argument("--voltage-kV", type=float, default=200.0, help="beam energy (default: 200)")
    p.add_argument("--pixel-size-A", type=float, help="default: the files', else lattice fringes")
    p.add_argument("--material", default="Au", help="FCC element of the particles (default: Au)")
    p.add_argument("--lattice-constant-A", type=float, help="default: ASE's for --material")
    p.add_argument("--cs-mm", type=float, default=1.0, help="spherical aberration (default: 1)")
    p.add_argument("--fit-cs", action="store_true", help="fit Cs too (0-3 mm)")
    p.add_argument(
        "--counts",
        action="store_true",
        help="gray values are electron counts (gain 1, no offset): the dose is the mean count",
    )
    p.add_argument(
        "--mtf", type=float, nargs=3, metavar=("C1", "C2", "C3"), help="the camera's MTF if known"
    )
    p.add_argument(
        "--cell-A", type=float, nargs=2, help="cell of the suggested structures (default: 102.4 A)"
    )
    p.add_argument("--name", default="matched", help="name of the suggested blocks")
    p.add_argument("--simulated", help="images store or dataset (Zarr) to compare with")
    p.add_argument("--simulated-pixel-size-A", type=float, help="default: from the store")
    p.add_argument("--max-simulated", type=int, default=32, help="simulated images read (32)")
    p.add_argument(
        "--median-px",
        type=int,
        default=median_px,
        help=f"median filter of the real micrographs before the histogram (default: {median_px})",
    )
    p.add_argument(
        "--out",
        required=True,
        help="writes match.json, match.png, suggested.yaml, config.yaml (+ realism.json/png)",
    )
    p.set_defaults(func=_match)

    p = sub.add_parser("plan", help="what a run would do: jobs per stage and block, and why")
    p.add_argument("--directory", default=".", help="the workflow directory (default: .)")
    p.add_argument("--configfile", help="passed to snakemake (merged over config/config.yaml)")
    p.add_argument("--rulegraph", metavar="PNG", help="also draw the rule graph into this PNG")
    p.add_argument(
        "--snakemake-args",
        nargs=argparse.REMAINDER,
        default=[],
        help="everything after this goes to snakemake (e.g. --forceall)",
    )
    p.set_defaults(func=_plan)

    p = sub.add_parser("gpu-probe", help="diagnostic: write the GPU binding of this job as JSON")
    p.add_argument("--output", required=True)
    p.add_argument("--seconds", type=float, default=0.0, help="hold the GPU this long")
    p.add_argument("--fail", action="store_true", help="exit 1 after writing the JSON")
    p.set_defaults(func=_gpu_probe)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler = logging.FileHandler(args.log) if args.log else logging.StreamHandler(sys.stderr)
    logging.basicConfig(
        level=logging.INFO, handlers=[handler], format="%(asctime)s %(levelname)s %(message)s"
    )
    if args.bind_gpu:
        # Before any stage imports CuPy or torch: CUDA reads CUDA_VISIBLE_DEVICES once, at init.
        from hrtem_wf.gpu import bind_gpu

        log.info("--bind-gpu: this job uses GPU %s (CUDA_VISIBLE_DEVICES set to it)", bind_gpu())
    huge_pages_for_tensors()  # before torch is imported (hrtem_wf.memory)
    start = time.perf_counter()
    for module in getattr(args, "imports", ()):
        importlib.import_module(module)
    imported = time.perf_counter()
    args.func(args)
    log.info(
        "%s done in %.3f s (after %.3f s of imports)",
        args.command,
        time.perf_counter() - imported,
        imported - start,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
