"""The evaluations stage: what the trained models are worth, one function per rule.

evaluate       (rule `evaluations`) one model seed on a split of a dataset: pixel metrics,
               column detection or exit-wave error by the model's task ->
               results/evaluations/<N>/seed<k>.json (with provenance: this function's code
               version and library versions)
score          (rule `scores`) one model seed on a real set (`real_sets.<R>`): F1 per image and
               pooled -> results/scores/<R>/<N>/seed<k>.json
realism_gaps   (rule `realism`) a dataset's images against a real set's micrographs and masks:
               the gaps of `hrtem-wf match` -> results/realism/<R>/<D>.json and .png
report         (rule `report`) every evaluation, score and realism gap -> results/report/:
               summary.md and figures

Stage libraries are imported in the functions: each job imports what its rule needs.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

log = logging.getLogger("hrtem_wf")


def evaluate(
    model_dir: str, dataset_zarr: str, dataset_parquet: str, output: str, split: str = "test"
) -> dict:
    """Metrics of the model in `model_dir` on `split` of the dataset `dataset_zarr` and
    `dataset_parquet`, written as JSON to `output`; returns them."""
    from hrtem_wf.codeversion import provenance
    from hrtem_wf.evaluations import evaluate_model
    from hrtem_wf.io import write_json

    metrics = evaluate_model(model_dir, dataset_zarr, dataset_parquet, split=split)
    metrics["provenance"] = provenance(f"{__name__}:evaluate")
    write_json(output, metrics)
    log.info("evaluation: %s", json.dumps(metrics, default=str))
    return metrics


def score(model_dir: str, real_set: str, spec: dict, output: str) -> dict:
    """F1 of the model in `model_dir` on the real set named `real_set` (config `spec`), written
    as JSON to `output`; returns it."""
    from hrtem_wf.io import write_json
    from hrtem_wf.real.sets import score_real_set

    start = time.perf_counter()
    result = score_real_set(model_dir, real_set, spec)
    write_json(output, result)
    log.info(
        "real set %s, %s seed %s: F1 %.4f over %d images (%.1f s)",
        real_set,
        result["model"],
        result["seed"],
        result["f1"],
        result["n_images"],
        time.perf_counter() - start,
    )
    return result


def realism_gaps(
    real_set: str, spec: dict, dataset_zarr: str, output: str, max_simulated: int = 32
) -> dict:
    """The realism gaps of the first `max_simulated` images of the dataset `dataset_zarr`
    against the micrographs and masks of the real set named `real_set` (config `spec`): JSON to
    `output`, its figure beside it (.png); returns them."""
    from hrtem_wf.real.match import image_statistics, read_simulated, write_realism
    from hrtem_wf.real.sets import read_real_set

    real = [
        image_statistics(r.image, r.mask, r.pixel_size_A, int(spec["median_filter_px"]))
        for r in read_real_set(spec)
    ]
    images, masks, pixel_size_A = read_simulated(dataset_zarr, max_simulated)
    sim = [image_statistics(i, m, pixel_size_A, median_px=0) for i, m in zip(images, masks)]
    gaps = write_realism(sim, real, output, real_set=real_set, dataset=Path(dataset_zarr).stem)
    log.info(
        "realism %s vs %s: %s; labels %s A outside the masks",
        gaps["dataset"],
        real_set,
        ", ".join(f"{k} {v['gap']:.3g}" for k, v in gaps["statistics"].items() if v["gap"]),
        gaps["label_offset_A"],
    )
    labels = gaps["masks"]["sim"]
    if labels["fragments"]:
        log.warning(
            "realism: the simulated labels of %s hold %d fragments narrower than %g A (in %d of "
            "%d images) beside %d particles; the particle statistics leave them out",
            gaps["dataset"],
            labels["fragments"],
            gaps["masks"]["min_particle_diameter_A"],
            labels["images_with_fragments"],
            gaps["n_simulated"],
            labels["particles"],
        )
    return gaps


def report(
    evaluations: list[str],
    model_dirs: list[str],
    dataset_zarr: str,
    dataset_parquet: str,
    out_dir: str,
    scores: list[str] = (),
    realism: list[str] = (),
    dataset_parquets: list[str] = (),
    real_sets_spec: dict | None = None,
    calibrations: list[str] = (),
) -> None:
    """The report of the evaluation JSONs `evaluations` of the models in `model_dirs`, with the
    real-set `scores`, the `realism` gaps, the label `calibrations`, the data distributions of
    `dataset_parquets` and
    example predictions on the test split of `dataset_zarr` and on the config's real sets
    (`real_sets_spec`), into `out_dir`."""
    from hrtem_wf.evaluations import write_report

    write_report(
        evaluations,
        model_dirs,
        dataset_zarr,
        dataset_parquet,
        out_dir,
        score_jsons=scores,
        dataset_parquets=dataset_parquets,
        real_sets=real_sets_spec,
        realism_jsons=realism,
        calibration_jsons=calibrations,
    )
    log.info("report written to %s", out_dir)
