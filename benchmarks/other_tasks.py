"""Column detection and exit-wave reconstruction, measured: the tasks of Madsen 2018 and Larsen
2023 from config/recipes/other_families.yaml, trained and scored on simulations at a size that
fits a working session on a CPU, for the figures docs/results.md sets beside the papers'.

    python benchmarks/other_tasks.py [--structures 32] [--epochs 12] [--exit-wave-epochs 30]
                                     [--only MODEL] [--out results/other_tasks]

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
    structures: int, epochs: dict[str, int], phonons: int, sampling_A: float
) -> dict:
    """The recipe's blocks behind MODELS, with the counts and sizes of a session."""
    recipe = yaml.safe_load(RECIPE.read_text())
    config = {"seed": recipe["seed"], "real_sets": {}}
    models = {name: dict(recipe["models"][name], epochs=epochs[name]) for name in MODELS}
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
    args = parser.parse_args(argv)

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    epochs = {"madsen_columns_unet": args.epochs, "mos2_exit_wave_unet": args.exit_wave_epochs}
    config = measurement_config(args.structures, epochs, args.phonons, args.potential_sampling_A)
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

    columns, waves = (
        json.loads((out / target).read_text()) for target in targets
    )  # the order of MODELS
    print(f"\nOther tasks, {args.structures} structures per block, epochs {epochs}")
    print(f"wall time of this run: {wall / 60:.1f} min (finished jobs are not rerun)")
    for stage in ("structures", "simulations", "images", "models"):
        print(f"  {stage}: {_job_seconds(out, stage) / 60:.1f} job-minutes")
    print(
        f"\ncolumns ({columns['model']}, {columns['n_images']} test images, "
        f"{columns['n_true']} true columns): precision {columns['precision']:.3f}, recall "
        f"{columns['recall']:.3f}, F1 {columns['f1']:.3f}, position RMSE "
        f"{columns['position_rmse_A']:.3f} A (match radius {columns['match_radius_A']} A)"
    )
    print(
        f"exit waves ({waves['model']}, {waves['n_images']} test images): RMSE "
        f"{waves['rmse']:.4f} (real {waves['rmse_real']:.4f}, imaginary "
        f"{waves['rmse_imag']:.4f}); Y-scramble {waves['y_scramble_rmse']:.4f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
