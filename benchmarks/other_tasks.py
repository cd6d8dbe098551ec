"""Column detection and exit-wave reconstruction, measured: the tasks of Madsen 2018 and Larsen
2023 from config/recipes/other_families.yaml, trained and scored on simulations at a size that
fits a working session on a CPU, for the figures docs/results.md sets beside the papers'.

    python benchmarks/other_tasks.py [--structures 32] [--epochs 12] [--exit-wave-epochs 30]
                                     [--only MODEL] [--out results/other_tasks]
                                     [--on-the-fly 8] [--results docs/results/tasks.json]

It runs the workflow (real structures, abTEM exit waves, images, datasets, training and
evaluation) on the recipe's `madsen_columns_unet` (Au particles of Madsen's family, one column
class, one image) and `mos2_exit_wave_unet` (MoS2 flakes, focal series of 3, the exit wave),
their blocks as in the recipe except for what makes it fit: `--structures` per structures block
(split 75 / 12.5 / 12.5 % by structure), `--epochs` (the column network) and
`--exit-wave-epochs`, `--phonons` frozen phonons and potentials sampled at
`--potential-sampling-A`. Snakemake reruns only missing outputs here (`--rerun-triggers
mtime`): delete a model's folder under --out to retrain it, or --out to start afresh. Prints
the test split's column-detection precision, recall, F1, position RMSE and the exit wave's RMSE
beside its Y-scramble baseline, with the job times.

`--on-the-fly N` trains both networks on images drawn afresh every epoch (N per training
structure, targets drawn with them; hrtem_wf.models.on_the_fly), the learning rate decaying by
0.97 per epoch, the column network keeping the epoch of best validation column F1. The learning
curve (validation F1 or RMSE against training images seen) and the diagnosis of the column
detections (F1 by dose, by the discard threshold t of Madsen's eq. 8 and by epsilon) are
printed; `--results` appends the figures as rows {task, metric, value, seeds, date, commit,
command} to a JSON list (docs/results/tasks.json).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "config" / "recipes" / "other_families.yaml"
MODELS = {"madsen_columns_unet": "madsen_au", "mos2_exit_wave_unet": "larsen_mos2_free"}


def measurement_config(
    structures: int,
    epochs: dict[str, int],
    phonons: int,
    sampling_A: float,
    on_the_fly: int | None = None,
    column_loss: str = "mse",
    batch_size: int | None = None,
) -> dict:
    """The recipe's blocks behind MODELS, with the counts and sizes of a session."""
    recipe = yaml.safe_load(RECIPE.read_text())
    config = {"seed": recipe["seed"], "real_sets": {}}
    models = {name: dict(recipe["models"][name], epochs=epochs[name]) for name in MODELS}
    models["madsen_columns_unet"]["column_loss"] = column_loss
    if batch_size:  # more optimizer steps for the same images seen
        models["madsen_columns_unet"]["batch_size"] = batch_size
    if on_the_fly:
        for model in models.values():
            images = recipe["datasets"][model["dataset"]]["images"][0]
            fly = {"images": images, "images_per_structure": on_the_fly, "workers": 1}
            # epochs of fresh images: the learning rate decays per epoch as the GPU recipes'
            model.update(on_the_fly=fly, lr_decay_per_epoch=0.97)
            if model.get("task") == "columns":
                model.update(checkpoint="best_val_f1")
    datasets = {m["dataset"]: recipe["datasets"][m["dataset"]] for m in models.values()}
    images = {i: recipe["images"][i] for d in datasets.values() for i in d["images"]}
    simulations = {
        b["simulations"]: dict(recipe["simulations"][b["simulations"]]) for b in images.values()
    }
    for block in simulations.values():
        block.update(frozen_phonons=phonons, potential_sampling_A=sampling_A)
    structure_blocks = {
        s["structures"]: dict(recipe["structures"][s["structures"]], count=structures)
        for s in simulations.values()
    }
    return config | {
        "structures": structure_blocks,
        "simulations": simulations,
        "images": images,
        "datasets": datasets,
        "models": models,
    }


def _job_seconds(out: Path, stage: str) -> float:
    """Total wall seconds of a stage's jobs (their Snakemake benchmark files)."""
    files = list((out / "results" / "benchmarks" / stage).rglob("*.tsv"))
    return float(sum(pd.read_csv(f, sep="\t")["s"].iloc[0] for f in files))


def learning_curve(out: Path, model: str) -> pd.DataFrame:
    """Epoch, training images seen, validation loss and F1 of a trained model's history."""
    folder = out / "results" / "models" / model / "seed0"
    history = pd.read_csv(folder / "history.csv")
    if "images_seen" not in history:  # histories written before it
        per_epoch = json.loads((folder / "metadata.json").read_text())["n_train"]
        history["images_seen"] = history["epoch"] * per_epoch
    return history[["epoch", "images_seen", "val_loss", "val_f1", "seconds"]]


def column_diagnosis(
    out: Path,
    model: str,
    thresholds=(0.05, 0.1, 0.2, 0.5),
    epsilons=(0.995, 0.9, 0.7, 0.5),
) -> dict:
    """The test split's column precision, recall and F1 by the discard threshold t (eq. 8, at
    epsilon 0.995) and by epsilon (the background level below which a pixel can belong to a
    column, at t = 0.1), and the per-image F1 by dose (from the evaluation), of a trained column
    model."""
    import numpy as np

    from hrtem_wf.evaluations.columns import column_counts, column_metrics, find_columns
    from hrtem_wf.evaluations.evaluate import predict_maps
    from hrtem_wf.models.data import read_split
    from hrtem_wf.models.model import TrainedModel

    results = out / "results"
    trained = TrainedModel.read(results / "models" / model / "seed0")
    dataset = results / "datasets" / str(trained.dataset)
    split = read_split(f"{dataset}.zarr", f"{dataset}.parquet", "test", "columns")
    network = trained.load_network()
    spec = split.attrs["targets"]["columns"]
    maps = np.concatenate(
        [
            predict_maps(network, split.images[split.rows[i : i + 4]], "columns")
            for i in range(0, len(split), 4)
        ]
    )
    pixel = split.table["image.pixel_size_A"].to_numpy(float)

    def scores(epsilon: float, t: float) -> dict:
        pooled = None
        for index, image_maps in enumerate(maps):
            row = int(split.table["row"].iloc[index])
            true = split.column_positions[split.column_positions[:, 0] == row]
            counts = column_counts(
                find_columns(image_maps, epsilon=epsilon, t=t),
                true[:, 1:3],
                true[:, 3].astype(int),
                spec["match_radius_A"] / pixel[index],
                len(spec["classes"]["names"]),
            )
            pooled = counts if pooled is None else pooled + counts
        metrics = column_metrics(pooled, float(np.median(pixel)))
        return {k: round(float(metrics[k]), 4) for k in ("precision", "recall", "f1")}

    by_t = {t: scores(0.995, t) for t in thresholds}
    by_epsilon = {epsilon: scores(epsilon, 0.1) for epsilon in epsilons}
    evaluation = json.loads((results / "evaluations" / model / "seed0.json").read_text())
    doses = split.table.set_index("row")["image.dose_e_per_A2"]
    per_image = pd.DataFrame(evaluation["per_image"])
    per_image["dose"] = doses.loc[per_image["row"]].to_numpy()
    bins = [0, 100, 1000, float("inf")]
    per_image["dose_bin"] = pd.cut(per_image["dose"], bins, labels=["<100", "100-1000", ">1000"])
    by_dose = per_image.groupby("dose_bin", observed=True)["f1"].agg(["count", "median"])
    return {
        "by_t": by_t,
        "by_epsilon": by_epsilon,
        "by_dose": by_dose.reset_index().to_dict("records"),
    }


def append_results(path: Path, rows: list[dict]) -> None:
    """Append rows to a JSON list (created when missing)."""
    existing = json.loads(path.read_text()) if path.exists() else []
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(existing + rows, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--structures", type=int, default=32, help="per structures block")
    parser.add_argument("--epochs", type=int, default=12, help="of the column network")
    parser.add_argument("--exit-wave-epochs", type=int, default=30)
    parser.add_argument("--only", choices=sorted(MODELS), help="run this model's jobs only")
    parser.add_argument("--phonons", type=int, default=2)
    parser.add_argument("--potential-sampling-A", type=float, default=0.1)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "results" / "other_tasks"))
    parser.add_argument("--on-the-fly", type=int, metavar="N", help="images per structure")
    parser.add_argument("--results", help="append the figures to this JSON list")
    parser.add_argument("--column-loss", choices=("mse", "cross_entropy"), default="mse")
    parser.add_argument("--batch-size", type=int, help="of the column network (recipe: 16)")
    args = parser.parse_args(argv)

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    epochs = {"madsen_columns_unet": args.epochs, "mos2_exit_wave_unet": args.exit_wave_epochs}
    config = measurement_config(
        args.structures,
        epochs,
        args.phonons,
        args.potential_sampling_A,
        args.on_the_fly,
        args.column_loss,
        args.batch_size,
    )
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    targets = [f"results/evaluations/{model}/seed0.json" for model in MODELS]
    run = [t for t, m in zip(targets, MODELS) if args.only in (None, m)]
    command = [
        *(str(Path(sys.executable).parent / "snakemake"), "--snakefile", str(ROOT / "Snakefile")),
        *("--cores", str(args.cores), "--configfile", str(out / "config.yaml")),
        *("--replace-workflow-config", "--directory", str(out), "--rerun-incomplete"),
        *("--rerun-triggers=mtime", *run),
    ]
    start = time.perf_counter()
    bin_dir = str(Path(sys.executable).parent)  # hrtem-wf beside this Python
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(command, check=True, cwd=ROOT, env=env)
    wall = time.perf_counter() - start

    print(f"\nOther tasks, {args.structures} structures per block, epochs {epochs}")
    print(f"wall time of this run: {wall / 60:.1f} min (finished jobs are not rerun)")
    for stage in ("structures", "simulations", "images", "models"):
        print(f"  {stage}: {_job_seconds(out, stage) / 60:.1f} job-minutes")
    rows, command = [], "python benchmarks/other_tasks.py " + " ".join(argv or sys.argv[1:])
    fly = f", on the fly {args.on_the_fly} per structure" if args.on_the_fly else ""
    for target, model in zip(targets, MODELS):
        if target not in run:
            continue
        result = json.loads((out / target).read_text())
        curve = learning_curve(out, model)
        print(f"\n{model}: learning curve (validation){fly}")
        print(curve.to_string(index=False))
        seconds = float(curve["seconds"].sum())
        if result["task"] == "columns":
            print(
                f"columns ({result['n_images']} test images, {result['n_true']} true columns): "
                f"precision {result['precision']:.3f}, recall {result['recall']:.3f}, F1 "
                f"{result['f1']:.3f}, position RMSE {result['position_rmse_A']:.3f} A "
                f"(match radius {result['match_radius_A']} A)"
            )
            diagnosis = column_diagnosis(out, model)
            print("by the discard threshold t (epsilon 0.995):", json.dumps(diagnosis["by_t"]))
            print("by epsilon (t 0.1):", json.dumps(diagnosis["by_epsilon"]))
            print("per-image F1 by dose (e/A^2):", json.dumps(diagnosis["by_dose"]))
            metrics = ("f1", "precision", "recall", "position_rmse_A")
            task = "madsen_columns"
        else:
            print(
                f"exit waves ({result['n_images']} test images): RMSE {result['rmse']:.4f} "
                f"(real {result['rmse_real']:.4f}, imaginary {result['rmse_imag']:.4f}); "
                f"Y-scramble {result['y_scramble_rmse']:.4f}"
            )
            metrics, task = ("rmse", "y_scramble_rmse"), "mos2_exit_wave"
        rows += [{"task": task, "metric": m, "value": result[m]} for m in metrics] + [
            {
                "task": task,
                "metric": "training_images_seen",
                "value": int(curve["images_seen"].iloc[-1]),
            },
            {"task": task, "metric": "training_minutes", "value": round(seconds / 60, 1)},
        ]
    if args.results:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip()
        stamp = {"seeds": [0], "date": time.strftime("%Y-%m-%d"), "commit": commit}
        append_results(Path(args.results), [row | stamp | {"command": command} for row in rows])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
